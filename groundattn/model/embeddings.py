"""Token embeddings of the VL-BERT layout (METHOD §2).

Parameter names extend Hugging Face BERT's ``embeddings.*`` so that a text
BERT's weights load unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from groundattn.model.config import EncoderConfig
from groundattn.model.inputs import VLBatch

GEOMETRY_DIM = 6

# The whole-image embedding r0 is added to every word piece (METHOD §2). A layer-normed
# vector at the words' own per-dimension scale has the norm of a word embedding: added at
# that scale it would move every word as far from itself as another word is. It starts at a
# tenth of that and grows where the task wants it (a learned log-scale). Region tokens have
# no word to protect: their visual embedding starts at the words' scale. The rule holds for
# a pretrained BERT (whose language model would otherwise start from text it has never
# seen) and for random weights alike.
# Measured (README, "Why it did not learn"), MiniLM-L6: RefCOCO+ ground-truth val 0.30 /
# 0.41 / 0.45 / 0.46 at steps 50-200 at the words' scale, 0.40 / 0.47 / 0.50 / 0.50 at a
# tenth. For random weights the same argument holds (the image would blur which word is
# which) but no gain was measured: a plain transformer learns "is the shape <colour>?" at
# step 1,750 / 1,750 with the image at the words' scale, > 2,000 / 1,500 at a tenth
# (benchmarks/verification.py, seeds 0 / 1). One rule for both keeps one place to read it.
TEXT_IMAGE_SHARE = 0.1


def box_geometry(boxes: Tensor) -> Tensor:
    """(…, 4) normalised x1 y1 x2 y2 → (…, GEOMETRY_DIM) x1 y1 x2 y2 w h."""
    wh = boxes[..., 2:] - boxes[..., :2]
    return torch.cat([boxes, wh], dim=-1)


def _moments(rows: Tensor) -> tuple[Tensor, Tensor]:
    """(N, D) → the float32 (D,) mean and population standard deviation (computed in float64)."""
    rows = rows.double()
    return rows.mean(0).float(), rows.std(0, correction=0).float()


@torch.no_grad()
def _set_statistics(mean_buffer: Tensor, std_buffer: Tensor, mean: Tensor, std: Tensor, what: str):
    """Copies a (D,) mean and standard deviation into the buffers; a std below 1e-6 becomes 1."""
    if mean.shape != mean_buffer.shape or std.shape != std_buffer.shape:
        raise ValueError(
            f"{what} statistics of shape {tuple(mean.shape)}, {tuple(std.shape)}; "
            f"expected ({mean_buffer.shape[0]},)"
        )
    if not (torch.isfinite(mean).all() and torch.isfinite(std).all()):
        raise ValueError(f"{what} statistics are not finite")
    mean_buffer.copy_(mean)
    std_buffer.copy_(torch.where(std < 1e-6, torch.ones_like(std), std))


class VisualEmbedding(nn.Module):
    """LayerNorm(projected standardised region feature + projected standardised box geometry).

    Region features and box geometries are standardised per dimension with
    statistics of the training data (``feature_mean``, ``feature_std``,
    ``geometry_mean``, ``geometry_std``: buffers, saved with the weights) before
    their projections. Raw features share a large common part (histograms,
    ReLU outputs, pixel means are all non-negative): projected as they are,
    every image maps to nearly the same vector, the LayerNorm keeps only a
    small image-specific remainder, and the encoder learns to read regions
    hundreds of steps late, or never in a short run. The geometry, in [0, 1]
    with a spread of a few tenths, is the same case at a smaller scale: beside
    unit-variance features its projection is a twentieth of the sum, and an
    encoder that learns "the red shape" in 400 steps never learns "the shape at
    the top left" (``tests/train/test_learning.py``). Standardised, each part
    enters with the variance its own number of inputs gives it.

    A layer-normed vector has unit scale per dimension while a pretrained BERT's
    word embeddings have about 0.04: added as it is, the whole-image embedding
    would drown every word. As in VL-BERT, two learned scalars scale it, one
    where it joins the text and one for region tokens; for a pretrained BERT
    (:meth:`start_at_word_scale`, for a pretrained BERT and random weights alike)
    the region scale starts at the scale of the word embeddings and the text
    scale at a tenth of it (:data:`TEXT_IMAGE_SHARE`: at the words' own scale the
    image would move every word as far as another word is).
    They are learned as logarithms: Adam moves a parameter by about its learning
    rate per step whatever its size, so a plain scalar of 0.02 reaches 0 in a
    few dozen steps of 1e-3 while the regions are still noise to the model, and
    the visual pathway is switched off for good. In log space every step
    changes the scale by a factor of about 1 ± lr.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        F = config.visual_feature_dim
        self.register_buffer("feature_mean", torch.zeros(F))
        self.register_buffer("feature_std", torch.ones(F))
        self.register_buffer("geometry_mean", torch.zeros(GEOMETRY_DIM))
        self.register_buffer("geometry_std", torch.ones(GEOMETRY_DIM))
        self.feature_projection = nn.Linear(F, config.hidden_size)
        self.geometry_projection = nn.Linear(GEOMETRY_DIM, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.log_text_scale = nn.Parameter(torch.tensor(math.log(config.initializer_range)))
        self.log_region_scale = nn.Parameter(torch.tensor(math.log(config.initializer_range)))

    @property
    def text_scale(self) -> Tensor:
        """() the scale of the whole-image embedding added to the text tokens."""
        return self.log_text_scale.exp()

    @property
    def region_scale(self) -> Tensor:
        """() the scale of the visual embedding of the region tokens."""
        return self.log_region_scale.exp()

    @torch.no_grad()
    def set_scales(self, text: float, region: float) -> None:
        """Sets both scales (positive numbers)."""
        if not (text > 0 and region > 0):
            raise ValueError(f"visual scales must be positive, got {text} and {region}")
        self.log_text_scale.fill_(math.log(text))
        self.log_region_scale.fill_(math.log(region))

    def start_at_word_scale(self, word_scale: float) -> None:
        """Starts the region scale at the words' per-dimension scale and the text scale at
        :data:`TEXT_IMAGE_SHARE` of it."""
        self.set_scales(TEXT_IMAGE_SHARE * word_scale, word_scale)

    def set_feature_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Sets the per-dimension (F,) mean and standard deviation that standardise features.

        Dimensions that never vary (std below 1e-6) are only centred.
        """
        _set_statistics(self.feature_mean, self.feature_std, mean, std, "feature")

    def set_geometry_statistics(self, mean: Tensor, std: Tensor) -> None:
        """The same for the (6,) box geometry of :func:`box_geometry`."""
        _set_statistics(self.geometry_mean, self.geometry_std, mean, std, "geometry")

    def fit_geometry_statistics(self, boxes: Tensor) -> None:
        """Sets the geometry statistics from a sample of (N, 4) normalised boxes, e.g. those of
        :meth:`groundattn.data.store.FeatureStore.statistics`."""
        self.set_geometry_statistics(*_moments(box_geometry(boxes)))

    def forward(self, features: Tensor, boxes: Tensor) -> Tensor:
        # (B, R, F), (B, R, 4) -> (B, R, D), before the scales
        features = (features - self.feature_mean) / self.feature_std  # (B, R, F)
        geometry = (box_geometry(boxes) - self.geometry_mean) / self.geometry_std  # (B, R, 6)
        return self.LayerNorm(
            self.feature_projection(features) + self.geometry_projection(geometry)
        )


class VLEmbeddings(nn.Module):
    """Word, visual, position and segment embeddings, summed and layer-normed."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        D = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, D, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, D)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, D)
        self.image_token_embedding = nn.Parameter(torch.zeros(D))  # the learned "[IMG]" word
        self.end_token_embedding = nn.Parameter(torch.zeros(D))  # the learned "[END]" word
        self.visual = VisualEmbedding(config)
        self.LayerNorm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, batch: VLBatch) -> Tensor:
        B, N = batch.input_ids.shape
        text = batch.text_mask[..., None]  # (B, N, 1)
        tokens = self.word_embeddings(batch.input_ids) * text  # (B, N, D)
        if batch.region_valid.shape[1]:
            visual = self.visual(batch.region_features, batch.region_boxes)  # (B, R, D)
            region_tokens = (self.image_token_embedding + self.visual.region_scale * visual)[
                batch.region_valid
            ]  # (ΣR, D)
            # The k-th region slot of a sample goes to its k-th region position.
            tokens = tokens.masked_scatter(batch.region_mask[..., None], region_tokens)
            # Text carries the whole image r0, never its grounded box (METHOD §2).
            has_image = batch.region_valid[:, :1, None]  # (B, 1, 1)
            tokens = tokens + self.visual.text_scale * visual[:, :1] * (text & has_image)
            tokens = tokens + self.end_token_embedding * batch.end_mask[..., None]
        x = (
            tokens
            + self.position_embeddings(batch.position_ids)
            + self.token_type_embeddings(batch.segment_ids)
        )
        return self.dropout(self.LayerNorm(x))  # (B, N, D)
