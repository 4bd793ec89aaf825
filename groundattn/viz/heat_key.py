"""The scale, colour bar and legend shared by every box-heat figure.

One absolute scale for all of them: a region's weight (the phrase's attention
over the R regions, r0 included, summing to 1) goes through
:func:`heat_norm`, 0 … 1 with a square root, so the weights that matter
(uniform attention is 1 / R, 0.14 for 7 regions) are visible while a box is
drawn at full colour only when it takes nearly all of the attention. The
colour bar marks the uniform level 1 / R; the legend says what the fill, the
dashed outline, the frame and the numbers mean.
"""

from __future__ import annotations

from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import PowerNorm
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

CMAP = "inferno"
MAX_ALPHA = 0.75
"""Fill opacity of a box of weight 1 (the opacity grows with the weight as the colour)."""
GAMMA = 0.5
"""Exponent of :func:`heat_norm`: weight 0.25 is drawn half way up the scale."""
MAX_NUMBERED = 16
"""Boxes (r0 left out) up to which every box carries its number; beyond, none does."""
OUTLINE_COLOUR = "cyan"
COLORBAR_INCHES = 1.2
"""Room a figure keeps on its right for the colour bar and its labels."""
LEGEND_INCHES = 0.72
"""Room a figure keeps below its panels for the legend (four entries in one column)."""
TICKS = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)


def heat_norm(vmax: float = 1.0) -> PowerNorm:
    """Weights 0 … ``vmax`` → 0 … 1 through a square root (fixed, not data dependent)."""
    return PowerNorm(gamma=GAMMA, vmin=0.0, vmax=max(float(vmax), 1e-12), clip=True)


def numbered(num_regions: int) -> bool:
    """Whether the panels of ``num_regions`` regions (r0 included) write every box's weight."""
    return num_regions - 1 <= MAX_NUMBERED


def add_heat_key(
    grid,
    *,
    num_regions: int,
    annotated: bool,
    outline: bool,
    vmax: float = 1.0,
    cmap: str = CMAP,
    what: str = "phrase → region weight",
) -> None:
    """Draws the colour bar (uniform 1 / R marked) and the legend into a :class:`PanelGrid`.

    Args:
        grid: a :class:`~groundattn.viz.panels.PanelGrid` made with ``key=True``.
        num_regions: R, the regions of the sample (r0 included).
        annotated: whether the panels carry every box's weight.
        outline: whether the panels outline the phrase's grounded regions.
        vmax: the weight drawn at full colour.
        cmap: the colormap of the panels.
        what: the colour bar's label.
    """
    if grid.colorbar_axes is None or grid.legend_axes is None:
        raise ValueError("add_heat_key needs a panel_figure made with key=True")
    fig, cax, norm = grid.figure, grid.colorbar_axes, heat_norm(vmax)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    uniform = 1.0 / max(num_regions, 1)
    ticks = {t * vmax: f"{t * vmax:g}" for t in TICKS}
    if uniform <= vmax:  # the uniform level replaces the ticks too close to it
        ticks = {t: s for t, s in ticks.items() if abs(norm(t) - norm(uniform)) > 0.06}
        ticks[uniform] = f"1/{num_regions} uniform"
        cax.axhline(uniform, color=OUTLINE_COLOUR, lw=1.5)
    bar.set_ticks(sorted(ticks), labels=[ticks[t] for t in sorted(ticks)])
    bar.ax.tick_params(labelsize=6)
    bar.set_label(f"{what} (absolute, 0 … {vmax:g})", fontsize=7)
    colours = colormaps[cmap]
    handles = [
        Patch(
            facecolor=colours(0.7),
            alpha=MAX_ALPHA,
            label="fill: the box's weight (colour and opacity, see the bar)",
        ),  # fmt: skip
        Line2D([], [], color="grey", lw=3, label="frame: r0, the whole image (not filled)"),
    ]
    if outline:
        handles.append(
            Patch(
                fill=False,
                edgecolor=OUTLINE_COLOUR,
                linestyle="--",
                label="dashed cyan: the regions the phrase is grounded to",
            )  # fmt: skip
        )
    numbers = (
        f"numbers: every box's weight (r0 bottom left); the {num_regions} regions sum to 1"
        if annotated
        else f"no numbers ({num_regions - 1} boxes): read the colour bar"
    )
    handles.append(Patch(facecolor="black", alpha=0.6, label=numbers))
    grid.legend_axes.legend(
        handles=handles, loc="center", fontsize=6.5, frameon=False,
        ncol=2 if fig.get_size_inches()[0] >= 8.5 else 1, handlelength=1.6,
    )  # fmt: skip
