import pytest
import torch
from viz_helpers import phrase_attention

from groundattn.viz import phrase_region_attention, plot_compare, save_figure

PHRASE, REGIONS = [1, 2], [4, 5, 6, 7]
METHODS = ("none", "indirect", "direct", "semi-direct")


@pytest.fixture
def weights() -> dict[str, torch.Tensor]:
    """(L, H, R) per method: direct and semi-direct look at region 2, the others spread."""
    spread, focused = [0.1, 0.2, 0.2, 0.2], [0.05, 0.02, 0.85, 0.03]
    return {
        name: phrase_region_attention(
            phrase_attention(focused if name in ("direct", "semi-direct") else spread, L=2, H=3),
            PHRASE,
            REGIONS,
        )
        for name in METHODS
    }


def image_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def test_one_panel_per_model(tmp_path, image, boxes, weights):
    fig = plot_compare(image, boxes, weights, phrase="a dog")
    axes = image_axes(fig)
    assert len(axes) == len(METHODS)
    titles = [t.get_text() for ax in axes for t in ax.texts]
    for name in METHODS:
        assert f"model {name}" in titles
    save_figure(fig, tmp_path / "compare.png", dpi=50)


def test_shared_scale_shows_which_model_is_sharper(image, boxes, weights):
    axes = image_axes(plot_compare(image, boxes, weights, layer=-1))
    top_alpha = [ax.collections[0].get_facecolors()[:, 3].max() for ax in axes]
    none, indirect, direct, semi_direct = top_alpha
    # Absolute scale: alpha = 0.75 × sqrt(weight); 0.85 / 0.95 against 0.2 / 0.7.
    assert direct == semi_direct == pytest.approx(0.75 * (0.85 / 0.95) ** 0.5)
    assert none == indirect == pytest.approx(0.75 * (0.2 / 0.7) ** 0.5)


def test_rollout_row_and_rollout_only(image, boxes, weights):
    rollouts = {name: w.mean(1) for name, w in weights.items()}  # (L, R) stand-ins
    fig = plot_compare(image, boxes, weights, rollouts=rollouts)
    assert "layer 1, mean of heads 0–2" in [t.get_text() for t in fig.texts]  # by number
    assert len(image_axes(fig)) == 2 * len(METHODS)
    assert "rollout up to the last layer" in [t.get_text() for t in fig.texts]
    fig = plot_compare(image, boxes, weights, layer="rollout", rollouts=rollouts)
    assert len(image_axes(fig)) == len(METHODS)
    with pytest.raises(ValueError, match="rollouts"):
        plot_compare(image, boxes, weights, layer="rollout")
    with pytest.raises(ValueError, match="layer 5"):
        plot_compare(image, boxes, weights, layer=5)
