import numpy as np
import pytest
import torch
from PIL import Image
from viz_helpers import BACKGROUND, phrase_attention

from groundattn.viz import (
    draw_phrase_attention,
    phrase_region_attention,
    plot_head_grid,
    plot_layer_average,
    plot_rollout,
    save_figure,
)
from groundattn.viz.heat_key import COLORBAR_INCHES, LEGEND_INCHES

PHRASE, REGIONS = [1, 2], [4, 5, 6, 7]  # positions in phrase_attention's layout


def test_phrase_region_attention_by_hand():
    # Tokens: w0 w1 (the phrase), r0 r1 r2.
    attention = torch.tensor(
        [
            [0.1, 0.1, 0.2, 0.2, 0.4],
            [0.2, 0.2, 0.0, 0.4, 0.2],
            [0.2, 0.2, 0.2, 0.2, 0.2],
            [0.2, 0.2, 0.2, 0.2, 0.2],
            [0.2, 0.2, 0.2, 0.2, 0.2],
        ]
    )[None, None]  # (1, 1, 5, 5)
    # Mean of the phrase rows over the regions: (0.1, 0.3, 0.3), sum 0.7.
    expected = torch.tensor([1 / 7, 3 / 7, 3 / 7])
    weights = phrase_region_attention(attention, [0, 1], [2, 3, 4])
    assert weights.shape == (1, 1, 3)
    assert torch.allclose(weights[0, 0], expected)
    rollout_like = attention[:, 0].expand(3, 5, 5)  # (L, N, N)
    assert torch.allclose(phrase_region_attention(rollout_like, [0, 1], [2, 3, 4]), expected)


def test_phrase_region_attention_keeps_layers_and_heads():
    attention = torch.randn(2, 3, 9, 9).softmax(-1)
    weights = phrase_region_attention(attention, PHRASE, REGIONS)
    assert weights.shape == (2, 3, 4)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 3))
    with pytest.raises(ValueError):
        phrase_region_attention(attention, [], REGIONS)


def box_pixels(fig, path, box) -> np.ndarray:
    """The saved PNG's pixels inside the lower-right quarter of ``box`` (no label there)."""
    ax = fig.axes[0]
    x1, y1, x2, y2 = box.tolist()
    inner = [((x1 + x2) / 2 + 3, (y1 + y2) / 2 + 3), (x2 - 3, y2 - 3)]
    (c1, r1), (c2, r2) = ax.transData.transform(inner)  # display pixels, origin bottom left
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    height = pixels.shape[0]
    rows = slice(int(height - r1), int(height - r2))
    return pixels[rows, int(c1) : int(c2)].reshape(-1, 3)


def heat(pixels: np.ndarray) -> float:
    """How far the pixels moved from the grey background (0 for untouched)."""
    return float(np.abs(pixels - np.array(BACKGROUND)).mean())


@pytest.mark.parametrize("strongest", [1, 2])
def test_heat_is_highest_on_the_region_with_most_attention(tmp_path, image, boxes, strongest):
    region_weights = [0.1, 0.1, 0.1, 0.05]
    region_weights[strongest] = 0.5
    attention = phrase_attention(region_weights)
    weights = phrase_region_attention(attention, PHRASE, REGIONS)[0, 0]  # (R,)
    fig = draw_phrase_attention(image, boxes, weights, phrase="a dog")
    path = save_figure(fig, tmp_path / "phrase.png", dpi=fig.dpi)
    heat_1, heat_2 = (heat(box_pixels(fig, path, boxes[k])) for k in (1, 2))
    weaker = heat_2 if strongest == 1 else heat_1
    stronger = heat_1 if strongest == 1 else heat_2
    assert stronger > 2 * weaker > 0
    saturation = [np.ptp(box_pixels(fig, path, boxes[k]), axis=1).mean() for k in (1, 2)]
    assert saturation[strongest - 1] > saturation[2 - strongest]


def test_whole_image_is_a_frame_not_a_fill(tmp_path, image, boxes):
    weights = torch.tensor([0.9, 0.04, 0.03, 0.03])
    fig = draw_phrase_attention(image, boxes, weights)
    path = save_figure(fig, tmp_path / "r0.png", dpi=fig.dpi)
    gap = torch.tensor([62.0, 30, 78, 70])  # between boxes 1 and 2: covered only by r0
    assert heat(box_pixels(fig, path, gap)) < 1
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "r0 0.90" in texts


def test_png_has_the_figure_size_times_dpi(tmp_path, image, boxes):
    weights = torch.rand(2, 3, 4).softmax(-1)  # (L, H, R)
    fig = plot_head_grid(image, boxes, weights, panel_size=1.0)
    assert len([ax for ax in fig.axes if ax.images]) == 6
    path = save_figure(fig, tmp_path / "grid.png", dpi=80)
    size = Image.open(path).size
    width, height = fig.get_size_inches() * 80
    assert size == (int(width), int(height))  # Agg truncates to whole pixels
    # 3 panels of 1 inch + gaps + the colour bar; 2 rows of 0.5 inch panels + titles,
    # the one-line figure title above and the legend below.
    expected = (80 * (0.06 + 3 * 1.06 + COLORBAR_INCHES), 80 * (0.42 + 2 * 0.78 + LEGEND_INCHES))
    assert all(abs(got - want) <= 1 for got, want in zip(size, expected, strict=True))


def test_layer_average_and_rollout_have_one_panel_per_layer(tmp_path, image, boxes):
    attention = phrase_attention([0.1, 0.5, 0.1, 0.05], L=3, H=2)
    weights = phrase_region_attention(attention, PHRASE, REGIONS)  # (L, H, R)
    fig = plot_layer_average(image, boxes, weights, phrase="a dog")
    assert len([ax for ax in fig.axes if ax.images]) == 3
    rollout = torch.eye(attention.shape[-1]).expand(3, -1, -1) * 0.5 + attention.mean(1) * 0.5
    fig = plot_rollout(image, boxes, phrase_region_attention(rollout, PHRASE, REGIONS))
    assert len([ax for ax in fig.axes if ax.images]) == 3
    save_figure(fig, tmp_path / "rollout.pdf")
    assert (tmp_path / "rollout.pdf").stat().st_size > 0
    with pytest.raises(ValueError, match="rollout"):
        plot_rollout(image, boxes, weights)


def test_layer_average_shows_the_chosen_layers_with_their_index(image, boxes):
    weights = torch.rand(3, 2, 4).softmax(-1)  # (L, H, R)
    fig = plot_layer_average(
        image, boxes, weights, layers=[2], phrase="a dog and a very long phrase"
    )
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 1 and "layer 2, head mean" in [t.get_text() for t in panels[0].texts]
    assert fig.get_size_inches()[0] > 0.08 * len(
        "“a dog and a very long phrase”: head average per layer"
    )
