"""groundattn: visually grounded supervision of self-attention in VL transformers.

Notation used in every shape comment of the package:

    B  batch            L  layers           H  heads
    N  sequence length (text + regions + [END] + padding)
    T  text tokens      R  regions (r0, the whole image, included)
    Q  supervised attention rows          D  hidden size
    F  region feature size

Sequences follow the VL-BERT layout ``[CLS] c1 [SEP] c2 [SEP] r0 r1 … rK [END]``;
each sample's regions follow its own text, so text and region positions are
always located per sample through boolean masks, never by offsets shared
across the batch.
"""

__version__ = "0.1.0"
