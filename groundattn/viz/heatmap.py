"""Grounding accuracy per layer and head as an annotated heat map (METHOD §8).

Shapes: L layers, H heads.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

BEST_MARK = "*"
"""Appended to the annotation of the best head (and of the best rollout layer)."""


def plot_grounding_accuracy(
    accuracy: Tensor | np.ndarray,
    *,
    title: str = "Grounding accuracy",
    rollout: Tensor | np.ndarray | None = None,
    cmap: str = "viridis",
    decimals: int = 2,
) -> Figure:
    """A layer × head heat map of grounding accuracy, every cell annotated.

    The best head's cell is outlined in red and its value suffixed with
    :data:`BEST_MARK`; the title gives it with the mean over heads. With
    ``rollout``, a narrow column on the right holds the rollout accuracy of
    each layer, its best layer marked the same way.

    Args:
        accuracy: (L, H) accuracy in [0, 1], e.g.
            :func:`groundattn.supervision.grounding_accuracy`.
        title: the figure's title; best head and mean are added below it.
        rollout: (L,) accuracy of the head-averaged rollout, or None.
        cmap: a matplotlib colormap name (scale fixed to 0 … 1).
        decimals: decimals of the annotations.

    Returns:
        The figure; its first axes is the layer × head map.
    """
    values = _numpy(accuracy)
    if values.ndim != 2:
        raise ValueError(f"accuracy must be (L, H), got shape {values.shape}")
    L, H = values.shape
    rolled = None if rollout is None else _numpy(rollout).reshape(-1)
    if rolled is not None and len(rolled) != L:
        raise ValueError(f"rollout must be (L,) = ({L},), got shape {rolled.shape}")

    columns = H + (1.6 if rolled is not None else 0)
    fig = Figure(figsize=(2.2 + 0.55 * columns, 1.6 + 0.42 * L), layout="constrained")
    ratios = [H, 1] if rolled is not None else [H]
    grid = fig.add_gridspec(1, len(ratios) + 1, width_ratios=[*ratios, 0.3])
    ax = fig.add_subplot(grid[0, 0])
    image = _annotated_map(ax, values, cmap, decimals)
    ax.set_xticks(range(H), [str(h) for h in range(H)])
    ax.set_yticks(range(L), [str(l) for l in range(L)])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    best_l, best_h = np.unravel_index(np.argmax(values), values.shape)
    summary = (
        f"best head: layer {best_l}, head {best_h} = {values[best_l, best_h]:.{decimals}f}; "
        f"mean {values.mean():.{decimals}f}"
    )
    if rolled is not None:
        ax_r = fig.add_subplot(grid[0, 1], sharey=ax)
        _annotated_map(ax_r, rolled[:, None], cmap, decimals)
        ax_r.set_xticks([0], ["rollout"])
        ax_r.tick_params(axis="y", labelleft=False)
        best_r = int(np.argmax(rolled))
        summary += f"; rollout best layer {best_r} = {rolled[best_r]:.{decimals}f}"
    fig.colorbar(image, cax=fig.add_subplot(grid[0, -1]), label="accuracy")
    fig.suptitle(f"{title}\n{summary}", fontsize=10)
    return fig


def _annotated_map(ax: Axes, values: np.ndarray, cmap: str, decimals: int):
    """Draws ``values`` (rows × columns) on a 0 … 1 scale; marks the arg-max."""
    image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    best = np.unravel_index(np.argmax(values), values.shape)
    for (i, j), value in np.ndenumerate(values):
        text = f"{value:.{decimals}f}" + (BEST_MARK if (i, j) == best else "")
        colour = "black" if value > 0.6 else "white"  # readable on viridis
        weight = "bold" if (i, j) == best else "normal"
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour, weight=weight)
    ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    return image


def _numpy(values: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)
