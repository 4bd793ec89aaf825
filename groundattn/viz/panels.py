"""Image panels with box heat, and the fixed-grid figures that hold them.

A region's box is filled with a colour of ``cmap`` and an opacity both
proportional to its weight divided by ``vmax``, lower weights drawn first; the
largest weights are written in their box's corner. The whole image r0
(``whole_image_index``, 0 in the VL-BERT layout) is not filled, as its box
would cover every other one: it is drawn as a frame around its box (the image
border) in the colour of its weight, thicker the larger the weight, with
``r0 <weight>`` written at the bottom left. It does not set ``vmax``, so a
large r0 weight does not fade the other boxes.

Figures are ``matplotlib.figure.Figure`` objects made without pyplot: nothing
is displayed and nothing is kept by a global figure manager.
Shapes: R regions (r0 included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torch import Tensor

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
    vmax: float | None = None,
    cmap: str = "inferno",
    max_alpha: float = 0.75,
    annotate: int = 5,
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
        vmax: the weight drawn at full colour and ``max_alpha`` (default: the
            largest box weight of this panel, r0 left out).
        cmap: a matplotlib colormap name.
        max_alpha: opacity at ``vmax``.
        annotate: write the weight of the ``annotate`` largest boxes.
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

    colours = colormaps[cmap]
    others = np.array([k for k in range(len(weights)) if k != whole_image_index], dtype=int)
    if vmax is None:
        vmax = float(weights[others].max()) if len(others) else 1.0
    vmax = max(float(vmax), 1e-12)
    order = others[np.argsort(-weights[others], kind="stable")][:top_k]  # largest first
    drawn = order[::-1]  # lowest first, so the largest weights lie on top
    level = np.clip(weights[drawn] / vmax, 0.0, 1.0)  # (R',)
    faces = colours(level)  # (R', 4) RGBA
    faces[:, 3] = max_alpha * level
    x1, y1, x2, y2 = boxes[drawn].T  # each (R',)
    corners = np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=1).reshape(-1, 4, 2)  # (R', 4, 2)
    heat = PolyCollection(corners, facecolors=faces, edgecolors="none")
    ax.add_collection(heat, autolim=False)

    top = order[:annotate]
    if len(top):
        edges = colours(np.clip(weights[top] / vmax, 0.0, 1.0))
        x1, y1, x2, y2 = boxes[top].T
        corners = np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=1).reshape(-1, 4, 2)
        ax.add_collection(
            PolyCollection(corners, facecolors="none", edgecolors=edges, linewidths=1),
            autolim=False,
        )
        for k in top:
            _write_weight(ax, boxes[k, 0], boxes[k, 1], f"{weights[k]:.2f}", fontsize, "top")
    if whole_image_index is not None and 0 <= whole_image_index < len(weights):
        level0 = min(float(weights[whole_image_index]) / vmax, 1.0)
        x1, y1, x2, y2 = boxes[whole_image_index]
        frame = Rectangle(
            (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colours(level0), lw=1 + 4 * level0
        )
        ax.add_patch(frame)
        label = f"r0 {weights[whole_image_index]:.2f}"
        _write_weight(ax, x1, y2, label, fontsize, "bottom")
    if len(outline):
        marked = np.asarray(list(outline), dtype=int)
        if marked.min() < 0 or marked.max() >= len(weights):
            raise ValueError(
                f"outline regions must lie in 0 … {len(weights) - 1}, got {list(outline)}"
            )
        x1, y1, x2, y2 = boxes[marked].T  # each (M,)
        corners = np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=1).reshape(-1, 4, 2)  # (M, 4, 2)
        ax.add_collection(
            PolyCollection(
                corners, facecolors="none", edgecolors="cyan", linewidths=1.2, linestyles="--"
            ),
            autolim=False,
        )
    return heat


def panel_title(ax: Axes, text: str, fontsize: float = 8) -> None:
    """A title just above the panel (plain text: ``set_title`` re-places every
    title at each draw, which is most of the drawing time of a 72-panel grid)."""
    ax.text(0.5, 1.01, text, transform=ax.transAxes, ha="center", va="bottom", fontsize=fontsize)


def panel_figure(
    nrows: int,
    ncols: int,
    aspect: float,
    panel_size: float,
    *,
    title: str = "",
    row_labels: Sequence[str] | None = None,
) -> tuple[Figure, np.ndarray]:
    """A figure of ``nrows`` × ``ncols`` image panels placed at fixed positions.

    Fixed placement instead of a layout engine: a 6 × 12 grid lays out in no
    time, and the figure is exactly ``fig.get_size_inches()`` (× dpi when saved).

    Args:
        nrows: rows of panels.
        ncols: columns of panels.
        aspect: height / width of one panel (the image's).
        panel_size: width of one panel in inches.
        title: written above the grid.
        row_labels: one label per row, written vertically on the left.

    Returns:
        The figure and its (nrows, ncols) axes.
    """
    pad, title_h = 0.06, 0.22  # inches: between panels, above each panel for its title
    top = 0.45 if title else 0.08
    left = 0.3 if row_labels else pad
    panel_h = panel_size * aspect
    cell_w, cell_h = panel_size + pad, panel_h + title_h + pad
    grid_w, fig_h = left + ncols * cell_w, top + nrows * cell_h
    # A grid narrower than its title (one or two panels) is widened and centred,
    # so that the title is not cut: about 0.08 inch per character at 10 pt.
    fig_w = max(grid_w, 0.2 + TITLE_INCHES_PER_CHAR * len(title))
    left += (fig_w - grid_w) / 2
    fig = Figure(figsize=(fig_w, fig_h))
    axes = np.empty((nrows, ncols), dtype=object)
    for i in range(nrows):
        bottom = fig_h - top - i * cell_h - title_h - panel_h
        for j in range(ncols):
            rect = (
                (left + j * cell_w) / fig_w,
                bottom / fig_h,
                panel_size / fig_w,
                panel_h / fig_h,
            )
            axes[i, j] = fig.add_axes(rect)
        if row_labels:
            y = (bottom + panel_h / 2) / fig_h
            fig.text(
                (left - 0.18) / fig_w,
                y,
                row_labels[i],
                rotation=90,
                va="center",
                ha="center",
                fontsize=9,
            )
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.1 / fig_h, va="top")
    return fig, axes


def resolve_vmax(draw: dict[str, Any], panels: Sequence[ArrayLike]) -> dict[str, Any]:
    """Turns the ``vmax`` option of a multi-panel figure into a number or None.

    ``"figure"`` (the default) puts every panel on one scale, the largest box
    weight of the figure (r0 left out), so that panels compare; ``"panel"``
    scales each panel to its own largest weight; a number fixes the scale.

    Returns:
        The options for :func:`draw_regions`.
    """
    draw = dict(draw)
    vmax = draw.pop("vmax", "figure")
    if vmax == "figure":
        draw["vmax"] = largest_box_weight(panels, draw.get("whole_image_index", 0))
    elif vmax != "panel":
        draw["vmax"] = float(vmax)
    return draw


def largest_box_weight(weights: Sequence[ArrayLike], whole_image_index: int | None) -> float:
    """The largest weight over the panels, the whole image r0 left out."""
    stacked = np.stack([as_array(w, "weights").reshape(-1) for w in weights])  # (panels, R)
    if whole_image_index is not None and stacked.shape[1] > 1:
        stacked = np.delete(stacked, whole_image_index, axis=1)
    return float(stacked.max()) if stacked.size else 1.0


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
