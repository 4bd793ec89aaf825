import matplotlib.collections
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from groundattn.viz import draw_regions
from groundattn.viz.heat_key import heat_norm
from groundattn.viz.panels import panel_figure


def test_fill_opacity_is_absolute_and_skips_the_whole_image(image, boxes):
    ax = Figure().add_subplot()
    heat = draw_regions(ax, image, boxes, torch.tensor([0.5, 0.1, 0.3, 0.1]), max_alpha=0.8)
    alphas = heat.get_facecolors()[:, 3]  # lowest weight first
    assert len(alphas) == 3  # r0 is not filled
    assert np.allclose(sorted(alphas), [0.8 * 0.1**0.5, 0.8 * 0.1**0.5, 0.8 * 0.3**0.5])
    uniform = draw_regions(Figure().add_subplot(), image, boxes, [0.25] * 4)
    assert np.allclose(uniform.get_facecolors()[:, 3], 0.75 * 0.5)  # not full intensity


def test_numbers_on_every_box_or_on_none(image, boxes):
    ax = Figure().add_subplot()
    draw_regions(ax, image, boxes, [0.1, 0.2, 0.3, 0.4], top_k=2, vmax=0.8)
    assert sorted(t.get_text() for t in ax.texts) == ["0.30", "0.40", "r0 0.10"]
    ax = Figure().add_subplot()
    draw_regions(ax, image, boxes, [0.1, 0.2, 0.3, 0.4], annotate=False)
    assert not ax.texts
    assert heat_norm()(0.25) == 0.5


def test_bad_inputs_are_refused(image, boxes):
    ax = Figure().add_subplot()
    with pytest.raises(ValueError, match="NaN"):
        draw_regions(ax, image, boxes, [0.1, float("nan"), 0.3, 0.1])
    with pytest.raises(ValueError, match="weights"):
        draw_regions(ax, image, boxes, [0.1, 0.2])


def test_panel_figure_rows_and_labels():
    grid = panel_figure(2, 3, 0.5, 1.0, title="t", row_labels=["a", "b"], key=True)
    assert grid.axes.shape == (2, 3)
    assert {t.get_text() for t in grid.figure.texts} >= {"a", "b"}
    assert grid.colorbar_axes is not None and grid.legend_axes is not None


def test_draw_regions_outlines_the_given_regions_dashed(image, boxes):
    ax = Figure().add_subplot()
    draw_regions(ax, image, boxes, torch.tensor([0.4, 0.3, 0.2, 0.1]), outline=[1, 3])
    dashed = [c for c in ax.collections if isinstance(c, matplotlib.collections.PolyCollection)][-1]
    assert (
        len(dashed.get_paths()) == 2 and dashed.get_linestyle()[0][1] is not None
    )  # a dash pattern
    with pytest.raises(ValueError, match="outline"):
        draw_regions(ax, image, boxes, torch.tensor([0.4, 0.3, 0.2, 0.1]), outline=[4])
