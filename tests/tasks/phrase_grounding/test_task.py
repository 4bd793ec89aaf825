import pytest
import torch

from groundattn.tasks.phrase_grounding import (
    PhraseGroundingDataset,
    PhraseGroundingTask,
    collate_phrase_grounding,
    summarize,
)
from groundattn.tasks.regions import chance_top_k, region_bce, top_k_hits


def test_summarize_by_hand():
    # 4 phrases: 3 answerable; hits at 1: 1, at 5: 3; chances summed as given.
    counts = {
        "phrases": torch.tensor(4),
        "answerable": torch.tensor(3),
        "hits_at_1": torch.tensor(1),
        "hits_at_5": torch.tensor(3),
        "chance_at_1": torch.tensor(1 / 4 + 1 / 2 + 1 / 3, dtype=torch.float64),
        "chance_at_5": torch.tensor(3.0, dtype=torch.float64),
    }
    assert summarize(counts) == pytest.approx(
        {
            "recall_at_1": 1 / 4,
            "recall_at_1_baseline": (1 / 4 + 1 / 2 + 1 / 3) / 4,
            "recall_at_5": 3 / 4,
            "recall_at_5_baseline": 3 / 4,
            "answerable": 3 / 4,
            "phrases": 4,
            "unanswerable_phrases": 1,
        }
    )


def test_forward_counts_and_gradients(small_scenes, tokenizer, tiny_encoder):
    dataset = PhraseGroundingDataset(small_scenes, "val", tokenizer, boxes="detected")
    task = PhraseGroundingTask(tiny_encoder)
    batch = collate_phrase_grounding([dataset[i] for i in range(8)])
    output, parts = task.validate(batch)
    loss, logged = task(batch).loss()
    scores = task.scores(batch)
    targets, candidates = batch.targets, batch.candidates
    torch.testing.assert_close(logged["loss"], region_bce(scores, targets, candidates).detach())
    part = output.parts["regions"]
    assert part.count == batch.candidates.sum() and part.weight == 1.0
    torch.testing.assert_close(part.mean, logged["loss"])
    for k in (1, 5):
        assert parts[f"hits_at_{k}"] == top_k_hits(scores, targets, candidates, k).sum()
        torch.testing.assert_close(
            parts[f"chance_at_{k}"], chance_top_k(targets, candidates, k).sum()
        )
    assert parts["phrases"] == 8
    assert parts["answerable"] == sum(any(dataset.targets[i]) for i in range(8))
    assert parts["hits_at_1"] <= parts["hits_at_5"] <= parts["answerable"]
    loss.backward()
    for name in (
        "encoder.layer.0.attention.self.query.weight",
        "embeddings.visual.feature_projection.weight",
        "embeddings.token_type_embeddings.weight",
    ):
        assert tiny_encoder.get_parameter(name).grad.abs().sum() > 0, name
    # The phrase's segment reaches the loss: its embedding row gets a gradient.
    assert (
        tiny_encoder.get_parameter("embeddings.token_type_embeddings.weight").grad[1].abs().sum()
        > 0
    )
