"""Region feature extractors: what turns an image and its boxes into one vector per box.

Two kinds, behind one interface (:class:`RegionExtractor`):

- ``pixels``: the hand-made colour and silhouette statistics of
  :mod:`groundattn.data.extractor` (64 values, no weights), right for the
  embedded scenes;
- a pretrained CNN (:class:`CNNRegionExtractor`): the image is resized so that
  its longer side is ``image_size`` and padded to a square, the network's last
  feature map is pooled over each box with RoIAlign (as VL-BERT pools a ResNet's)
  and the bins are averaged: one vector of the map's width per box. Every image
  is prepared alone and padded to the same size, so its features do not depend
  on the batch it is in.

:data:`BACKBONES` names the extractors the CLI offers; :func:`build_backbone`
makes one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn

from groundattn.config import ConfigError
from groundattn.data.extractor import FEATURE_DIM, extract_regions
from groundattn.data.roi_align import roi_align

log = logging.getLogger(__name__)


class RegionExtractor(Protocol):
    """Features of the boxes of a batch of images."""

    name: str
    feature_dim: int

    def extract(
        self, images: Sequence[Image.Image], boxes: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """Per image, ``(K, feature_dim)`` float32 features of its ``(K, 4)`` pixel boxes."""
        ...


class PixelRegionExtractor:
    """The hand-made pixel statistics (:func:`groundattn.data.extractor.extract_regions`)."""

    name = "pixels"
    feature_dim = FEATURE_DIM

    def extract(
        self, images: Sequence[Image.Image], boxes: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        return [extract_regions(image, own) for image, own in zip(images, boxes, strict=True)]


class CNNRegionExtractor:
    """A CNN's feature map pooled over each box with RoIAlign, bins averaged.

    Args:
        name: what the store's users call it (``efficientnet_lite0``).
        feature_map: ``(B, 3, S, S)`` normalised pixels -> ``(B, C, ceil(S/stride), …)``.
        feature_dim: C.
        stride: input pixels per feature-map cell.
        image_size: S, the longer side images are resized to (then padded to S × S).
        pixel_mean, pixel_std: per channel, on pixels in 0..255.
        device: where the network runs.
        output_size: RoIAlign's bins per side (averaged afterwards).
        sampling_ratio: RoIAlign's sample points per bin and axis.
    """

    def __init__(
        self,
        name: str,
        feature_map: nn.Module,
        *,
        feature_dim: int,
        stride: int,
        image_size: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        device: str | torch.device = "cpu",
        output_size: int = 7,
        sampling_ratio: int = 2,
    ):
        if image_size < stride:
            raise ConfigError(f"--image-size: at least {stride} pixels, got {image_size}")
        self.name, self.feature_dim, self.stride = name, feature_dim, stride
        self.image_size, self.output_size, self.sampling_ratio = (
            image_size,
            output_size,
            sampling_ratio,
        )
        self.device = torch.device(device)
        self.feature_map = feature_map.eval().to(self.device)
        self.mean = torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1)

    def _prepare(self, image: Image.Image) -> tuple[torch.Tensor, np.ndarray]:
        """``(3, S, S)`` normalised pixels (the image top-left, zeros after) and the box scale.

        The scale ``(4,)`` multiplies ``x1 y1 x2 y2``: the factors really applied along
        each axis, which rounding makes differ slightly.
        """
        image = image.convert("RGB")
        w, h = image.size
        scale = self.image_size / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        resized = np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32)  # (h', w', 3)
        pixels = (torch.from_numpy(resized).permute(2, 0, 1) - self.mean) / self.std  # (3, h', w')
        canvas = torch.zeros(3, self.image_size, self.image_size)
        canvas[:, : size[1], : size[0]] = pixels
        sx, sy = size[0] / w, size[1] / h
        return canvas, np.array([sx, sy, sx, sy], np.float32)

    @torch.inference_mode()
    def extract(
        self, images: Sequence[Image.Image], boxes: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box arrays")
        if not images:
            return []
        prepared = [self._prepare(image) for image in images]
        pixels = torch.stack([p for p, _ in prepared]).to(self.device)  # (B, 3, S, S)
        feature_map = self.feature_map(pixels)  # (B, C, S/stride, S/stride)
        scaled = [
            torch.as_tensor(np.asarray(own, np.float32).reshape(-1, 4) * scale, device=self.device)
            for own, (_, scale) in zip(boxes, prepared, strict=True)
        ]
        pooled = roi_align(
            feature_map.float(),
            scaled,
            self.output_size,
            spatial_scale=1.0 / self.stride,
            sampling_ratio=self.sampling_ratio,
        )  # (sum K, C, P, P)
        vectors = pooled.mean(dim=(2, 3)).cpu().numpy()  # (sum K, C)
        counts = np.cumsum([len(s) for s in scaled])[:-1]
        return [v.astype(np.float32) for v in np.split(vectors, counts)]


def _pixels(device: str, image_size: int | None) -> PixelRegionExtractor:
    if image_size is not None:
        raise ConfigError("--image-size: the pixels backbone describes boxes at their own size")
    return PixelRegionExtractor()


def _efficientnet_lite0(device: str, image_size: int | None) -> CNNRegionExtractor:
    from groundattn.data import efficientnet

    network = efficientnet.load_efficientnet_lite0().fold_batch_norms()
    return CNNRegionExtractor(
        "efficientnet_lite0",
        _FeatureMap(network),
        feature_dim=efficientnet.HEAD_CHANNELS,
        stride=efficientnet.STRIDE,
        image_size=image_size or 448,
        pixel_mean=(efficientnet.PIXEL_MEAN,) * 3,
        pixel_std=(efficientnet.PIXEL_STD,) * 3,
        device=device,
    )


class _FeatureMap(nn.Module):
    """A network's ``feature_map`` method as a module's forward."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.network.feature_map(pixels)


BACKBONES: dict[str, Callable[[str, int | None], RegionExtractor]] = {
    "pixels": _pixels,
    "efficientnet_lite0": _efficientnet_lite0,
}
"""Name -> factory ``(device, image_size or None for the default) -> extractor``."""


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` where a GPU is visible, else ``cpu``; an unusable device is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device: expected cpu, cuda, cuda:N or auto, got {device!r}") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is visible to torch here")
    return device


def build_backbone(
    name: str, device: str = "cpu", image_size: int | None = None
) -> RegionExtractor:
    """The extractor registered as ``name`` (see :data:`BACKBONES`)."""
    if name not in BACKBONES:
        raise ConfigError(f"--backbone: expected one of {', '.join(BACKBONES)}, got {name!r}")
    extractor = BACKBONES[name](resolve_device(device), image_size)
    log.info("backbone %s: %d values per box", name, extractor.feature_dim)
    return extractor
