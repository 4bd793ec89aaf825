"""Image panels with box heat, and the fixed-grid figures that hold them.

A region's box is filled with a colour of ``cmap`` and an opacity both given by
its weight on a fixed, absolute scale: :func:`~groundattn.viz.heat_key.heat_norm`,
0 … ``vmax`` (1 by default) through a square root, so that 0 is transparent,
uniform attention over R regions (1 / R) is faint and only a weight near 1 is
drawn at full colour. Lower weights are drawn first. Either every box carries
its weight as a number or none does (``annotate``). The whole image r0
(``whole_image_index``, 0 in the VL-BERT layout) is not filled, as its box
would cover every other one: it is drawn as a frame around its box (the image
border) in the colour of its weight, thicker the larger the weight, with
``r0 <weight>`` written at the bottom left whenever the boxes are numbered.
The colour bar and the legend of a figure are :mod:`groundattn.viz.heat_key`.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: nothing
is displayed and nothing is kept by a global figure manager.
Shapes: R regions (r0 included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torch import Tensor

from groundattn.viz.heat_key import (
    CMAP,
    COLORBAR_INCHES,
    LEGEND_INCHES,
    MAX_ALPHA,
    OUTLINE_COLOUR,
    heat_norm,
    numbered,
)

ArrayLike = Tensor | np.ndarray | Sequence[float]
TITLE_INCHES_PER_CHAR = 0.08
"""Width a figure title needs per character (10 pt), to keep it inside the figure."""


def draw_regions(
    ax: Axes,
    image: Image.Image,
    boxes: ArrayLike,
    weights: ArrayLike,
    *,
    whole_image_index: int | None = 0,
    vmax: float = 1.0,
    cmap: str = CMAP,
    max_alpha: float = MAX_ALPHA,
    annotate: bool | None = None,
    top_k: int | None = None,
    fontsize: float = 6.0,
    max_side: int = 512,
    outline: Sequence[int] = (),
) -> PolyCollection:
    """Draws the image and one box heat per region on ``ax``.

    Args:
        ax: the axes to draw on.
        image: the picture (any PIL mode).
        boxes: (R, 4) pixel boxes x1 y1 x2 y2 in ``image``'s coordinates.
        weights: (R,) weight of each region, e.g. a row of :func:`phrase_region_attention`.
        whole_image_index: the region drawn as a frame (r0), or None to fill every box.
        vmax: the weight drawn at full colour and ``max_alpha`` (fixed: 1 by default).
        cmap: a matplotlib colormap name.
        max_alpha: opacity at ``vmax``.
        annotate: write every box's weight (True) or none (False); default
            (None): :func:`~groundattn.viz.heat_key.numbered`, every one up to
            16 boxes.
        top_k: draw only the ``top_k`` largest boxes (default: all).
        fontsize: size of the written weights.
        max_side: the picture is shown downsampled to at most this many pixels
            on its longer side (boxes keep their coordinates); small panels
            gain nothing from more.
        outline: regions drawn on top with a dashed cyan outline, e.g. the
            ground-truth regions of the phrase whose attention is shown.

    Returns:
        The filled boxes, in drawing order (lowest weight first).
    """
    boxes = as_array(boxes, "boxes").reshape(-1, 4)  # (R, 4)
    weights = as_array(weights, "weights").reshape(-1)  # (R,)
    if len(boxes) != len(weights):
        raise ValueError(f"{len(boxes)} boxes but {len(weights)} weights")
    width, height = image.size
    shown = image.convert("RGB")
    if max(width, height) > max_side:
        shown.thumbnail((max_side, max_side))
    ax.imshow(np.asarray(shown), extent=(0, width, height, 0), interpolation="antialiased")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()

    colours, norm = colormaps[cmap], heat_norm(vmax)
    others = np.array([k for k in range(len(weights)) if k != whole_image_index], dtype=int)
    if annotate is None:
        annotate = numbered(len(weights))
    order = others[np.argsort(-weights[others], kind="stable")][:top_k]  # largest first
    drawn = order[::-1]  # lowest first, so the largest weights lie on top
    level = np.clip(norm(weights[drawn]), 0.0, 1.0)  # (R',)
    faces = colours(level)  # (R', 4) RGBA
    faces[:, 3] = max_alpha * level
    heat = PolyCollection(_corners(boxes[drawn]), facecolors=faces, edgecolors="none")
    ax.add_collection(heat, autolim=False)

    if annotate and len(order):
        ax.add_collection(
            PolyCollection(
                _corners(boxes[order]), facecolors="none", linewidths=0.8,
                edgecolors=colours(np.clip(norm(weights[order]), 0.0, 1.0)),
            ),
            autolim=False,
        )  # fmt: skip
        for k in order:
            _write_weight(ax, boxes[k, 0], boxes[k, 1], f"{weights[k]:.2f}", fontsize, "top")
    if whole_image_index is not None and 0 <= whole_image_index < len(weights):
        level0 = float(np.clip(norm(weights[whole_image_index]), 0.0, 1.0))
        x1, y1, x2, y2 = boxes[whole_image_index]
        frame = Rectangle(
            (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colours(level0), lw=1 + 4 * level0
        )
        ax.add_patch(frame)
        if annotate:
            label = f"r0 {weights[whole_image_index]:.2f}"
            _write_weight(ax, x1, y2, label, fontsize, "bottom")
    if len(outline):
        marked = np.asarray(list(outline), dtype=int)
        if marked.min() < 0 or marked.max() >= len(weights):
            raise ValueError(
                f"outline regions must lie in 0 … {len(weights) - 1}, got {list(outline)}"
            )
        ax.add_collection(
            PolyCollection(
                _corners(boxes[marked]), facecolors="none", edgecolors=OUTLINE_COLOUR,
                linewidths=1.2, linestyles="--",
            ),
            autolim=False,
        )  # fmt: skip
    return heat


def _corners(boxes: np.ndarray) -> np.ndarray:
    """(M, 4) boxes x1 y1 x2 y2 → (M, 4, 2) polygon corners."""
    x1, y1, x2, y2 = boxes.T  # each (M,)
    return np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=1).reshape(-1, 4, 2)


def panel_title(ax: Axes, text: str, fontsize: float = 8) -> None:
    """A title just above the panel (plain text: ``set_title`` re-places every
    title at each draw, which is most of the drawing time of a 72-panel grid)."""
    ax.text(0.5, 1.01, text, transform=ax.transAxes, ha="center", va="bottom", fontsize=fontsize)


@dataclass
class PanelGrid:
    """A figure of image panels at fixed positions, with room for its key."""

    figure: Figure
    axes: np.ndarray  # (nrows, ncols) of Axes
    colorbar_axes: Axes | None  # right of the panels (``key=True``)
    legend_axes: Axes | None  # an empty strip below the panels (``key=True``)


def panel_figure(
    nrows: int,
    ncols: int,
    aspect: float,
    panel_size: float,
    *,
    title: str = "",
    row_labels: Sequence[str] | None = None,
    key: bool = False,
) -> PanelGrid:
    """A figure of ``nrows`` × ``ncols`` image panels placed at fixed positions.

    Fixed placement instead of a layout engine: a 6 × 12 grid lays out in no
    time, and the figure is exactly ``fig.get_size_inches()`` (× dpi when saved).

    Args:
        nrows: rows of panels.
        ncols: columns of panels.
        aspect: height / width of one panel (the image's).
        panel_size: width of one panel in inches.
        title: written above the grid (one or more lines).
        row_labels: one label per row, written vertically on the left.
        key: keep room for a colour bar on the right and a legend below
            (:func:`~groundattn.viz.heat_key.add_heat_key` draws them).

    Returns:
        The figure, its (nrows, ncols) axes and, with ``key``, the key's axes.
    """
    pad, title_h = 0.06, 0.22  # inches: between panels, above each panel for its title
    lines = title.split("\n") if title else []
    top = 0.25 + 0.17 * len(lines) if lines else 0.08
    left = 0.3 if row_labels else pad
    right = COLORBAR_INCHES if key else 0.0
    bottom = LEGEND_INCHES if key else 0.0
    panel_h = panel_size * aspect
    cell_w, cell_h = panel_size + pad, panel_h + title_h + pad
    grid_w, fig_h = left + ncols * cell_w + right, top + nrows * cell_h + bottom
    # A grid narrower than its title or its legend (one or two panels) is
    # widened and centred, so that neither is cut: about 0.08 inch per
    # character of the title at 10 pt.
    longest = max((len(line) for line in lines), default=0)
    fig_w = max(grid_w, 0.2 + TITLE_INCHES_PER_CHAR * longest, 4.2 if key else 0.0)
    left += (fig_w - grid_w) / 2
    fig = Figure(figsize=(fig_w, fig_h))
    axes = np.empty((nrows, ncols), dtype=object)
    for i in range(nrows):
        y = fig_h - top - i * cell_h - title_h - panel_h
        for j in range(ncols):
            rect = ((left + j * cell_w) / fig_w, y / fig_h, panel_size / fig_w, panel_h / fig_h)
            axes[i, j] = fig.add_axes(rect)
        if row_labels:
            fig.text(
                (left - 0.18) / fig_w, (y + panel_h / 2) / fig_h, row_labels[i],
                rotation=90, va="center", ha="center", fontsize=9,
            )  # fmt: skip
    colorbar_axes = legend_axes = None
    if key:
        grid_top, grid_bottom = fig_h - top - title_h, bottom + 0.05
        x = left + ncols * cell_w + 0.1
        colorbar_axes = fig.add_axes(
            (x / fig_w, grid_bottom / fig_h, 0.12 / fig_w, (grid_top - grid_bottom) / fig_h)
        )
        legend_axes = fig.add_axes((0, 0, 1, (bottom - 0.02) / fig_h))
        legend_axes.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.1 / fig_h, va="top")
    return PanelGrid(fig, axes, colorbar_axes, legend_axes)


def index_list(what: str, indices: Sequence[int]) -> str:
    """``heads 0–3`` for a contiguous run of three or more, ``heads 0, 2`` otherwise."""
    values = list(indices)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{what} {values[0]}–{values[-1]}"
    return f"{what} " + ", ".join(str(v) for v in values)


def as_array(values: ArrayLike, name: str) -> np.ndarray:
    """A float64 NumPy copy of a tensor or array; raises on NaN or infinity."""
    if isinstance(values, Tensor):
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _write_weight(ax: Axes, x: float, y: float, text: str, fontsize: float, va: str) -> None:
    ax.text(
        x, y, text, fontsize=fontsize, color="white", va=va, ha="left",
        bbox={"boxstyle": "square,pad=0.1", "facecolor": "black", "alpha": 0.6, "lw": 0},
    )  # fmt: skip
