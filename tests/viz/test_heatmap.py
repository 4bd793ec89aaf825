import pytest
import torch

from groundattn.viz import plot_grounding_accuracy, save_figure
from groundattn.viz.heatmap import BEST_MARK


def marked(ax):
    return [t for t in ax.texts if t.get_text().endswith(BEST_MARK)]


def test_every_cell_annotated_and_the_best_head_marked(tmp_path):
    accuracy = torch.tensor([[0.1, 0.5, 0.3], [0.2, 0.4, 0.9]])  # (L, H): best layer 1, head 2
    fig = plot_grounding_accuracy(accuracy, title="direct")
    ax = fig.axes[0]
    assert len(ax.texts) == 6
    (best,) = marked(ax)
    assert best.get_text() == "0.90" + BEST_MARK
    assert best.get_position() == (2, 1)  # (column = head, row = layer)
    assert "layer 1, head 2 = 0.90" in fig.get_suptitle()
    assert "mean 0.40" in fig.get_suptitle()
    save_figure(fig, tmp_path / "accuracy.png", dpi=50)


def test_rollout_column():
    accuracy = torch.rand(3, 4) * 0.5
    fig = plot_grounding_accuracy(accuracy, rollout=torch.tensor([0.2, 0.7, 0.3]))
    rollout_ax = fig.axes[1]
    assert [t.get_text() for t in rollout_ax.texts] == ["0.20", "0.70" + BEST_MARK, "0.30"]
    assert "rollout best layer 1 = 0.70" in fig.get_suptitle()
    with pytest.raises(ValueError, match="rollout"):
        plot_grounding_accuracy(accuracy, rollout=torch.rand(2))
    with pytest.raises(ValueError, match="accuracy"):
        plot_grounding_accuracy(torch.rand(3))


def test_the_scale_is_centred_on_chance_and_shows_the_differences():
    accuracy = torch.tensor([[0.20, 0.25], [0.30, 0.35]])
    fig = plot_grounding_accuracy(accuracy, chance=0.25)
    image = fig.axes[0].images[0]
    assert image.norm(0.25) == pytest.approx(0.5)  # chance is the scale's centre (white)
    assert image.norm(0.35) == pytest.approx(1.0, abs=1e-4)
    assert image.norm(0.15) == pytest.approx(0.0, abs=1e-4)
    assert "chance (uniform over the regions) 0.25" in fig.get_suptitle()
    bar = fig.axes[-1]
    assert any(t.get_text().strip() == "chance" for t in bar.texts)
    plain = plot_grounding_accuracy(accuracy).axes[0].images[0]
    assert plain.norm(0.20) == pytest.approx(0.0, abs=1e-4)
    assert plain.norm(0.35) == pytest.approx(1.0, abs=1e-4)
