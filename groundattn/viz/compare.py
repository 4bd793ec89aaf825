"""Several models side by side for the same phrase (compare mode).

Typically the four supervision methods (none, indirect, direct, semi-direct)
fine-tuned from the same backbone, on one sample and one phrase: one column
per model, the head-averaged attention of a layer on the first row and,
optionally, the attention rollout on a second row. All panels share one
colour scale by default, so that a sharper model looks sharper.
Shapes: L layers, H heads, R regions (r0 included).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from groundattn.viz.panels import (
    ArrayLike,
    as_array,
    draw_regions,
    panel_figure,
    panel_title,
    resolve_vmax,
)

LayerChoice = int | Literal["last", "rollout"]


def plot_compare(
    image: Image.Image,
    boxes: ArrayLike,
    weights: Mapping[str, ArrayLike],
    *,
    layer: LayerChoice = "last",
    rollouts: Mapping[str, ArrayLike] | None = None,
    phrase: str | None = None,
    panel_size: float = 2.4,
    **draw: Any,
) -> Figure:
    """One column per model: the phrase's attention over the regions on the image.

    Args:
        image: the picture.
        boxes: (R, 4) pixel boxes x1 y1 x2 y2, r0 first.
        weights: model name → (L, H, R) phrase attention over regions
            (:func:`~groundattn.viz.phrase_region_attention`), in column order.
        layer: the layer whose head average is drawn (``"last"`` or an index),
            or ``"rollout"`` to draw the last layer of ``rollouts`` only.
        rollouts: model name → (L, R) phrase attention in the rollout; with a
            layer, its last layer is drawn on a second row.
        phrase: the phrase, for the title.
        panel_size: width of one panel in inches.
        **draw: options of :func:`~groundattn.viz.draw_regions`; ``vmax`` as in
            :func:`~groundattn.viz.panels.resolve_vmax` (default: one scale
            for all panels).

    Returns:
        The figure: ``len(weights)`` columns, one or two rows.
    """
    if not weights:
        raise ValueError("plot_compare needs at least one model")
    names = list(weights)
    rows: list[tuple[str, list[np.ndarray]]] = []
    if layer != "rollout":
        rows.append(_head_average_row(weights, layer))
    if rollouts is not None or layer == "rollout":
        rows.append(_rollout_row(names, rollouts))

    width, height = image.size
    title = f"“{phrase}”" if phrase else "phrase attention over regions"
    fig, axes = panel_figure(
        len(rows), len(names), height / width, panel_size,
        title=title, row_labels=[label for label, _ in rows],
    )  # fmt: skip
    draw = resolve_vmax(draw, [w for _, row in rows for w in row])
    for i, (_, row) in enumerate(rows):
        for j, (name, region_weights) in enumerate(zip(names, row, strict=True)):
            draw_regions(axes[i, j], image, boxes, region_weights, **draw)
            panel_title(axes[i, j], name, fontsize=9)
    return fig


def _head_average_row(
    weights: Mapping[str, ArrayLike], layer: int | str
) -> tuple[str, list[np.ndarray]]:
    """(R,) head averages of one layer for every model, and the row's label."""
    row = []
    for name, values in weights.items():
        values = as_array(values, f"weights[{name!r}]")
        if values.ndim != 3:
            raise ValueError(f"weights[{name!r}] must be (L, H, R), got shape {values.shape}")
        L = values.shape[0]
        index = L - 1 if layer == "last" else int(layer)
        if not -L <= index < L:
            raise ValueError(f"layer {layer} out of range for {name!r} with {L} layers")
        row.append(values[index].mean(0))  # (R,)
    label = "last layer" if layer == "last" else f"layer {layer}"
    return f"{label}, head mean", row


def _rollout_row(
    names: list[str], rollouts: Mapping[str, ArrayLike] | None
) -> tuple[str, list[np.ndarray]]:
    """(R,) last-layer rollout for every model, and the row's label."""
    if rollouts is None or set(rollouts) != set(names):
        raise ValueError(f"rollouts must give an (L, R) rollout for every model: {names}")
    row = []
    for name in names:
        values = as_array(rollouts[name], f"rollouts[{name!r}]")
        if values.ndim != 2:
            raise ValueError(f"rollouts[{name!r}] must be (L, R), got shape {values.shape}")
        row.append(values[-1])  # (R,)
    return "rollout, last layer", row
