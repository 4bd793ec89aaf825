import pytest
import torch
import torch.nn.functional as F

from groundattn.data.refcoco import load_instances, load_refs
from groundattn.tasks.refcoco import (
    RefCOCODataset,
    RefCOCOTask,
    chance_hits,
    collate_refcoco,
    index_stores,
    region_bce,
    summarize,
    top_region_hits,
)


def test_top_region_accuracy_on_a_hand_made_batch():
    # Positions: 0-1 text, then regions (r0 first); the last sample has no candidate at all.
    scores = torch.tensor(
        [
            [
                0.0,
                0.0,
                9.0,
                1.0,
                3.0,
                0.0,
            ],  # r0 scores highest but is no candidate: position 4 wins
            [0.0, 0.0, 0.0, 5.0, 1.0, 0.0],  # position 3 wins, a negative
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # no candidate: wrong
        ]
    )
    candidates = torch.tensor(
        [[0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 0]], dtype=torch.bool
    )
    targets = torch.tensor(
        [[0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool
    )
    assert top_region_hits(scores, targets, candidates).tolist() == [True, False, False]
    # Chance: one positive among 2 candidates, one among 3, no candidate.
    chance = chance_hits(targets, candidates)
    assert torch.allclose(chance, torch.tensor([1 / 2, 1 / 3, 0.0], dtype=torch.float64))
    counts = {
        "correct": torch.tensor(1),
        "answerable": torch.tensor(2),
        "sentences": torch.tensor(3),
        "chance": chance.sum(),
    }
    assert summarize(counts) == pytest.approx(
        {"accuracy": 1 / 3, "accuracy_baseline": 5 / 18, "answerable": 2 / 3, "sentences": 3}
    )


def test_region_bce_by_hand():
    scores = torch.tensor([[0.5, 2.0, -1.0], [3.0, 0.0, 1.0]])
    candidates = torch.tensor([[False, True, True], [False, True, False]])
    targets = torch.tensor([[True, True, False], [False, False, False]])
    # Mean over the three candidates: -log σ(2), -log(1 - σ(-1)), -log(1 - σ(0)).
    expected = (
        F.softplus(torch.tensor(-2.0))
        + F.softplus(torch.tensor(-1.0))
        + F.softplus(torch.tensor(0.0))
    ) / 3
    torch.testing.assert_close(region_bce(scores, targets, candidates), expected)
    nothing = region_bce(scores.requires_grad_(), targets, torch.zeros_like(candidates))
    assert nothing.item() == 0.0
    nothing.backward()
    assert torch.isfinite(scores.grad).all()


def test_forward_counts_and_gradients(small_scenes, tokenizer, tiny_encoder):
    refcoco = small_scenes / "refcoco+"
    refs = [r for r in load_refs(refcoco / "refs(unc).p") if r.split == "val"]
    dataset = RefCOCODataset(
        refs,
        load_instances(refcoco / "instances.json"),
        index_stores(small_scenes / "features"),
        tokenizer,
    )
    task = RefCOCOTask(tiny_encoder)
    batch = collate_refcoco([dataset[i] for i in range(8)])
    output, parts = task.validate(batch)
    loss, logged = task(batch).loss()
    scores = task.scores(batch)
    torch.testing.assert_close(
        logged["loss"], region_bce(scores, batch.targets, batch.candidates).detach()
    )
    part = output.parts["regions"]
    assert part.count == batch.candidates.sum() and part.weight == 1.0
    torch.testing.assert_close(part.mean, logged["loss"])
    assert parts["correct"] == top_region_hits(scores, batch.targets, batch.candidates).sum()
    assert parts["sentences"] == 8 and parts["answerable"] == sum(
        any(dataset.targets[i]) for i in range(8)
    )
    loss.backward()
    for name in (
        "encoder.layer.0.attention.self.query.weight",
        "embeddings.visual.feature_projection.weight",
    ):
        assert tiny_encoder.get_parameter(name).grad.abs().sum() > 0, name
