"""Grounding accuracy per layer and head as an annotated heat map (METHOD §8).

Shapes: L layers, H heads.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, TwoSlopeNorm
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
    chance: float | None = None,
    cmap: str = "RdBu_r",
    decimals: int = 2,
) -> Figure:
    """A layer × head heat map of grounding accuracy, every cell annotated.

    The best head's cell is outlined in red and its value suffixed with
    :data:`BEST_MARK`; the title gives it with the mean over heads. With
    ``rollout``, a narrow column on the right holds the rollout accuracy of
    each layer, its best layer marked the same way.

    The colour scale spans the values shown (not 0 … 1, which would make every
    cell of a 0.2–0.35 map look alike). With ``chance``, it is centred on the
    chance level (white), above chance red, below blue; the colour bar marks it
    and the title states it.

    Args:
        accuracy: (L, H) accuracy in [0, 1], e.g.
            :func:`groundattn.supervision.grounding_accuracy`.
        title: the figure's title; best head and mean are added below it.
        rollout: (L,) accuracy of the head-averaged rollout, or None.
        chance: the accuracy of uniform attention over each sample's regions
            (:func:`groundattn.supervision.grounding_chance` over the samples), or None.
        cmap: a matplotlib colormap name (a diverging one suits ``chance``).
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
    shown = values if rolled is None else np.concatenate([values.ravel(), rolled])
    low, high = float(shown.min()), float(shown.max())
    if chance is not None:
        spread = max(high - chance, chance - low, 0.01) + 1e-6  # float32 values stay inside
        norm = TwoSlopeNorm(chance, vmin=max(0.0, chance - spread), vmax=min(1.0, chance + spread))
    else:
        norm = Normalize(low - 1e-6, max(high, low + 0.01) + 1e-6)
    image = _annotated_map(ax, values, cmap, norm, decimals)
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
        _annotated_map(ax_r, rolled[:, None], cmap, norm, decimals)
        ax_r.set_xticks([0], ["rollout"])
        ax_r.tick_params(axis="y", labelleft=False)
        best_r = int(np.argmax(rolled))
        summary += f"; rollout best layer {best_r} = {rolled[best_r]:.{decimals}f}"
    bar = fig.colorbar(image, cax=fig.add_subplot(grid[0, -1]), label="accuracy")
    if chance is not None:
        bar.ax.axhline(chance, color="black", lw=1.5)
        bar.ax.text(1.1, chance, " chance", transform=bar.ax.get_yaxis_transform(), va="center")
        summary += f"; chance (uniform over the regions) {chance:.{decimals}f}"
    fig.suptitle(f"{title}\n{summary}", fontsize=10)
    return fig


def _annotated_map(ax: Axes, values: np.ndarray, cmap: str, norm: Normalize, decimals: int):
    """Draws ``values`` (rows × columns) on ``norm``'s scale; marks the arg-max."""
    image = ax.imshow(values, cmap=cmap, norm=norm, aspect="auto")
    best = np.unravel_index(np.argmax(values), values.shape)
    for (i, j), value in np.ndenumerate(values):
        text = f"{value:.{decimals}f}" + (BEST_MARK if (i, j) == best else "")
        colour = "white" if abs(float(norm(value)) - 0.5) > 0.35 else "black"  # dark ends
        weight = "bold" if (i, j) == best else "normal"
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour, weight=weight)
    ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    return image


def _numpy(values: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)
