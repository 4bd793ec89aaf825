"""A phrase's attention over the regions, drawn as box heat on the image (METHOD §8).

Three views of one phrase: a layer × head grid, the head average per layer,
and the attention rollout per layer (METHOD §5). How a panel is drawn (box
heat, the whole image r0 as a frame) is described in
:mod:`groundattn.viz.panels`; every figure has the same absolute scale, with a
colour bar and a legend (:mod:`groundattn.viz.heat_key`), and its title names
the model, the phrase, and the layers and heads shown by number.

Shapes: L layers, H heads, N sequence, R regions (r0 included), P phrase tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from groundattn.viz.heat_key import CMAP, add_heat_key, numbered
from groundattn.viz.panels import (
    ArrayLike,
    as_array,
    draw_regions,
    index_list,
    panel_figure,
    panel_title,
)

logger = logging.getLogger(__name__)


def phrase_region_attention(
    attention: Tensor, phrase_positions: Sequence[int], region_positions: Sequence[int]
) -> Tensor:
    """A phrase's attention over the regions.

    The mean over the phrase's tokens of their attention rows, restricted to
    the region columns and renormalised to sum to 1 over them. (Averaging the
    raw rows weighs each token by how much it looks at regions at all; it is
    not the mean of the per-token renormalised rows of METHOD §4.)

    Args:
        attention: (…, N, N) attention of one sample: (L, H, N, N)
            probabilities, or an (L, N, N) rollout.
        phrase_positions: the P positions of the phrase's tokens.
        region_positions: the R positions of the regions (r0 included).

    Returns:
        (…, R): (L, H, R) or (L, R).
    """
    if not len(phrase_positions) or not len(region_positions):
        raise ValueError("phrase_positions and region_positions must not be empty")
    rows = attention[..., list(phrase_positions), :]  # (…, P, N)
    mean = rows.mean(-2)[..., list(region_positions)]  # (…, R)
    return mean / mean.sum(-1, keepdim=True).clamp_min(1e-12)


def draw_phrase_attention(
    image: Image.Image,
    boxes: ArrayLike,
    region_weights: ArrayLike,
    *,
    phrase: str | None = None,
    model: str | None = None,
    panel_size: float = 2.0,
    **draw: Any,
) -> Figure:
    """The image with box heat: one panel for (R,) weights, a row of layers for
    (L, R), a layer × head grid for (L, H, R).

    Args:
        image: the picture.
        boxes: (R, 4) pixel boxes x1 y1 x2 y2, r0 first.
        region_weights: (R,), (L, R) or (L, H, R).
        phrase: the phrase, for the title.
        model: the model's name, for the title.
        panel_size: width of one panel in inches.
        **draw: options of :func:`draw_regions`.
    """
    weights = as_array(region_weights, "region_weights")
    named = {"phrase": phrase, "model": model, "panel_size": panel_size}
    if weights.ndim == 3:
        return plot_head_grid(image, boxes, weights, **named, **draw)
    if weights.ndim == 2:
        panels = [(f"layer {l}", w) for l, w in enumerate(weights)]
        title = _title(model, phrase, "attention over the regions, per layer")
        return _plot_panels(image, boxes, panels, title, panel_size, **draw)
    title = _title(model, phrase, "attention over the regions")
    return _plot_panels(image, boxes, [("", weights)], title, panel_size, **draw)


def plot_head_grid(
    image: Image.Image,
    boxes: ArrayLike,
    weights: ArrayLike,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    phrase: str | None = None,
    model: str | None = None,
    panel_size: float = 1.6,
    **draw: Any,
) -> Figure:
    """One panel per (layer, head): rows are layers, columns heads.

    Args:
        image: the picture.
        boxes: (R, 4) pixel boxes, r0 first.
        weights: (L, H, R), e.g. :func:`phrase_region_attention` of the attention.
        layers: layers to show (default: all).
        heads: heads to show (default: all).
        phrase: the phrase, for the title.
        model: the model's name, for the title.
        panel_size: width of one panel in inches.
        **draw: options of :func:`draw_regions`.
    """
    weights = as_array(weights, "weights")
    if weights.ndim != 3:
        raise ValueError(f"weights must be (L, H, R), got shape {weights.shape}")
    L, H, _ = weights.shape
    layers = list(range(L)) if layers is None else list(layers)
    heads = list(range(H)) if heads is None else list(heads)
    panels = [(f"layer {l} head {h}", weights[l, h]) for l in layers for h in heads]
    title = _title(model, phrase, "attention over the regions, per layer and head")
    return _plot_panels(image, boxes, panels, title, panel_size, ncols=len(heads), **draw)


def plot_layer_average(
    image: Image.Image,
    boxes: ArrayLike,
    weights: ArrayLike,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    phrase: str | None = None,
    model: str | None = None,
    ncols: int | None = None,
    panel_size: float = 2.0,
    **draw: Any,
) -> Figure:
    """One panel per layer: the mean over heads of the (L, H, R) distributions.

    Args:
        image: the picture.
        boxes: (R, 4) pixel boxes, r0 first.
        weights: (L, H, R), or (L, R) already averaged.
        layers: layers to show (default: all); panels keep their layer index.
        heads: the model's heads that ``weights`` holds, for the title
            (default: 0 … H − 1).
        phrase: the phrase, for the title.
        model: the model's name, for the title.
        ncols: panels per row (default: all layers in one row).
        panel_size: width of one panel in inches.
        **draw: options of :func:`draw_regions`.
    """
    weights = as_array(weights, "weights")
    if weights.ndim == 3:
        heads = range(weights.shape[1]) if heads is None else heads
        weights = weights.mean(1)  # (L, R)
    averaged = f"mean of {index_list('heads', heads)}" if heads is not None else "mean of the heads"
    shown = range(len(weights)) if layers is None else layers
    panels = [(f"layer {l}, head mean", weights[l]) for l in shown]
    title = _title(model, phrase, f"attention over the regions, {averaged}, per layer")
    return _plot_panels(image, boxes, panels, title, panel_size, ncols=ncols, **draw)


def plot_rollout(
    image: Image.Image,
    boxes: ArrayLike,
    weights: ArrayLike,
    *,
    layers: Sequence[int] | None = None,
    phrase: str | None = None,
    model: str | None = None,
    ncols: int | None = None,
    panel_size: float = 2.0,
    **draw: Any,
) -> Figure:
    """One panel per layer of the attention rollout (METHOD §5).

    Args:
        image: the picture.
        boxes: (R, 4) pixel boxes, r0 first.
        weights: (L, R): :func:`phrase_region_attention` of the (L, N, N) rollout.
        layers: layers to show (default: all); panels keep their layer index.
        phrase: the phrase, for the title.
        model: the model's name, for the title.
        ncols: panels per row (default: all layers in one row).
        panel_size: width of one panel in inches.
        **draw: options of :func:`draw_regions`.
    """
    weights = as_array(weights, "weights")
    if weights.ndim != 2:
        raise ValueError(f"rollout weights must be (L, R), got shape {weights.shape}")
    shown = range(len(weights)) if layers is None else layers
    panels = [(f"rollout up to layer {l}", weights[l]) for l in shown]
    title = _title(model, phrase, "attention rollout (mean of all heads) over the regions")
    return _plot_panels(image, boxes, panels, title, panel_size, ncols=ncols, **draw)


def save_figure(fig: Figure, path: str | Path, dpi: float = 150) -> Path:
    """Saves ``fig`` (format from the suffix) at ``dpi``; the file is the
    figure size × ``dpi`` pixels (no tight cropping). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    logger.info("wrote %s", path)
    return path


def _plot_panels(
    image: Image.Image,
    boxes: ArrayLike,
    panels: list[tuple[str, np.ndarray]],
    title: str,
    panel_size: float,
    *,
    ncols: int | None = None,
    **draw: Any,
) -> Figure:
    """A grid of :func:`draw_regions` panels, row by row, with the colour bar and legend."""
    ncols = min(ncols or len(panels), len(panels))
    nrows = -(-len(panels) // ncols)
    width, height = image.size
    grid = panel_figure(nrows, ncols, height / width, panel_size, title=title, key=True)
    num_regions = len(as_array(boxes, "boxes").reshape(-1, 4))
    annotated = draw.get("annotate")
    annotated = numbered(num_regions) if annotated is None else annotated
    for ax, (name, weights) in zip(grid.axes.flat, panels, strict=False):
        draw_regions(ax, image, boxes, weights, **draw)
        panel_title(ax, name)
    for ax in grid.axes.flat[len(panels) :]:
        ax.remove()
    add_heat_key(
        grid, num_regions=num_regions, annotated=bool(annotated),
        outline=bool(len(draw.get("outline", ()))), vmax=draw.get("vmax", 1.0),
        cmap=draw.get("cmap", CMAP),
    )  # fmt: skip
    return grid.figure


def _title(model: str | None, phrase: str | None, what: str) -> str:
    """``model direct · phrase “a dog”`` on one line, what the panels show on the next."""
    first = " · ".join(
        part for part in (model and f"model {model}", phrase and f"phrase “{phrase}”") if part
    )
    return f"{first}\n{what}" if first else what
