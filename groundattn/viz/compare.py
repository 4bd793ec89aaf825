"""Several models side by side for the same phrase (compare mode).

Typically the four supervision methods (none, indirect, direct, semi-direct)
fine-tuned from the same backbone, on one sample and one phrase: one column
per model, the head-averaged attention of a layer on the first row and,
optionally, the attention rollout on a second row. All panels share one
absolute colour scale (:mod:`groundattn.viz.heat_key`), so that a sharper model
looks sharper and uniform attention looks faint; the rows name their layer by
number and the heads averaged.
Shapes: L layers, H heads, R regions (r0 included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from groundattn.viz.heat_key import CMAP, add_heat_key, numbered
from groundattn.viz.panels import (
    ArrayLike,
    as_array,
    draw_regions,
    index_list,
    panel_figure,
    panel_title,
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
    heads: Sequence[int] | None = None,
    image_id: str | None = None,
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
        heads: the models' heads that ``weights`` holds, for the row label
            (default: 0 … H − 1).
        image_id: the image, for the title.
        panel_size: width of one panel in inches.
        **draw: options of :func:`~groundattn.viz.draw_regions` (one absolute
            scale for all panels, :mod:`groundattn.viz.heat_key`).

    Returns:
        The figure: ``len(weights)`` columns, one or two rows, a colour bar and a legend.
    """
    if not weights:
        raise ValueError("plot_compare needs at least one model")
    names = list(weights)
    rows: list[tuple[str, list[np.ndarray]]] = []
    if layer != "rollout":
        rows.append(_head_average_row(weights, layer, heads))
    if rollouts is not None or layer == "rollout":
        rows.append(_rollout_row(names, rollouts))

    width, height = image.size
    first = " · ".join(
        part for part in (phrase and f"phrase “{phrase}”", image_id and f"image {image_id}") if part
    )
    what = "attention over the regions, one column per model"
    title = f"{first}\n{what}" if first else what
    grid = panel_figure(
        len(rows), len(names), height / width, panel_size,
        title=title, row_labels=[label for label, _ in rows], key=True,
    )  # fmt: skip
    for i, (_, row) in enumerate(rows):
        for j, (name, region_weights) in enumerate(zip(names, row, strict=True)):
            draw_regions(grid.axes[i, j], image, boxes, region_weights, **draw)
            panel_title(grid.axes[i, j], f"model {name}", fontsize=9)
    num_regions = len(as_array(boxes, "boxes").reshape(-1, 4))
    annotated = draw.get("annotate")
    add_heat_key(
        grid, num_regions=num_regions,
        annotated=numbered(num_regions) if annotated is None else bool(annotated),
        outline=bool(len(draw.get("outline", ()))), vmax=draw.get("vmax", 1.0),
        cmap=draw.get("cmap", CMAP),
    )  # fmt: skip
    return grid.figure


def _head_average_row(
    weights: Mapping[str, ArrayLike], layer: int | str, heads: Sequence[int] | None
) -> tuple[str, list[np.ndarray]]:
    """(R,) head averages of one layer for every model, and the row's label."""
    row, indices = [], set()
    for name, values in weights.items():
        values = as_array(values, f"weights[{name!r}]")
        if values.ndim != 3:
            raise ValueError(f"weights[{name!r}] must be (L, H, R), got shape {values.shape}")
        L = values.shape[0]
        index = L - 1 if layer == "last" else int(layer)
        if not -L <= index < L:
            raise ValueError(f"layer {layer} out of range for {name!r} with {L} layers")
        indices.add(index % L)
        row.append(values[index].mean(0))  # (R,)
        heads = range(values.shape[1]) if heads is None else heads
    (shown,) = indices if len(indices) == 1 else (None,)
    label = "last layer" if shown is None else f"layer {shown}"
    return f"{label}, mean of {index_list('heads', heads)}", row


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
    return "rollout up to the last layer", row
