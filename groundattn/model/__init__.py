"""The single-stream VL encoder (VL-BERT layout) and its weights."""

from groundattn.model.capture import AttentionCapture, AttentionNotCaptured, EncoderOutput
from groundattn.model.config import PRESETS, EncoderConfig, preset
from groundattn.model.embeddings import box_geometry
from groundattn.model.encoder import VLEncoder
from groundattn.model.inputs import VLBatch, pack
from groundattn.model.loading import (
    LoadReport,
    default_bert_path,
    from_pretrained,
    load_tokenizer,
    load_vlbert_checkpoint,
    map_vlbert_keys,
)

__all__ = [
    "PRESETS",
    "AttentionCapture",
    "AttentionNotCaptured",
    "EncoderConfig",
    "EncoderOutput",
    "LoadReport",
    "VLBatch",
    "VLEncoder",
    "box_geometry",
    "default_bert_path",
    "from_pretrained",
    "load_tokenizer",
    "load_vlbert_checkpoint",
    "map_vlbert_keys",
    "pack",
    "preset",
]
