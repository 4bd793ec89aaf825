import pytest
import torch
import torch.nn.functional as F

from groundattn.data.store import FeatureStore
from groundattn.data.vqa import answer_vocabulary, evaluate, load_vqa
from groundattn.tasks.vqa import (
    VQADataset,
    VQATask,
    accuracy_counts,
    collate_vqa,
    soft_bce,
    summarize,
)


def test_soft_bce_by_hand():
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, 0.0, 0.5]])
    targets = torch.tensor([[0.0, 1.0, 1 / 3], [0.0, 0.0, 2 / 3]])
    p = logits.sigmoid()
    per_entry = -(targets * p.log() + (1 - targets) * (1 - p).log())
    torch.testing.assert_close(
        soft_bce(logits, targets), per_entry.sum() / 2
    )  # sum over answers, mean over questions
    torch.testing.assert_close(
        soft_bce(logits, targets), F.binary_cross_entropy_with_logits(logits, targets) * 3
    )
    empty = soft_bce(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 3))
    assert empty.item() == 0.0


def test_accuracy_counts_by_hand():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]])
    accuracy = torch.tensor(
        [[0.0, 0.6, 1.0], [1.0, 0.0, 0.0], [0.3, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64
    )
    answer_type = torch.tensor([0, 0, 2, -1])  # yes/no, yes/no, other, unannotated
    counts = accuracy_counts(logits, accuracy, answer_type)
    torch.testing.assert_close(
        counts["accuracy_by_type"], torch.tensor([1.6, 0.0, 0.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        counts["questions_by_type"], torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    )
    # The answer prior over the three annotated questions: answer 0 scores 0 + 1 + 0.3.
    torch.testing.assert_close(
        counts["accuracy_by_answer"], torch.tensor([1.3, 0.6, 1.0], dtype=torch.float64)
    )
    metrics = summarize(counts)
    assert metrics == pytest.approx(
        {
            "accuracy": 1.6 / 3,
            "accuracy_baseline": 1.3 / 3,
            "questions": 3,
            "accuracy_yes_no": 0.8,
            "accuracy_number": 0.0,
            "accuracy_other": 0.0,
        }
    )


def test_counted_accuracy_equals_the_official_evaluation(small_scenes, tokenizer, tiny_encoder):
    train = load_vqa(
        small_scenes / "vqa" / "v2_OpenEnded_train_questions.json",
        small_scenes / "vqa" / "v2_train_annotations.json",
    )
    answers = answer_vocabulary([e.annotation for e in train], 2)
    examples = load_vqa(
        small_scenes / "vqa" / "v2_OpenEnded_val_questions.json",
        small_scenes / "vqa" / "v2_val_annotations.json",
    )
    dataset = VQADataset(
        examples, FeatureStore(small_scenes / "features" / "val.h5"), answers, tokenizer
    )
    task = VQATask(tiny_encoder, len(answers)).eval()
    torch.nn.init.normal_(
        task.head.mlp[-1].weight, std=1.0
    )  # spread the predictions over the answers
    totals, results = {}, {}
    with torch.no_grad():
        for start in range(0, len(dataset), 8):
            batch = collate_vqa([dataset[i] for i in range(start, min(start + 8, len(dataset)))])
            _, parts = task.validate(batch)
            for key, value in parts.items():
                totals[key] = totals.get(key, 0) + value
            best = task.logits(batch).argmax(-1)
            results.update(
                {
                    q: answers[k]
                    for q, k in zip(batch.question_ids.tolist(), best.tolist(), strict=True)
                }
            )
    assert len(set(results.values())) > 1
    counted, official = summarize(totals), evaluate(results, dataset.annotations)
    assert counted["accuracy"] == pytest.approx(official["overall"], abs=1e-12)
    for name in ("yes/no", "number", "other"):
        assert counted[f"accuracy_{name.replace('/', '_')}"] == pytest.approx(
            official[name], abs=1e-12
        )


def test_gradients_reach_the_encoder(small_scenes, tokenizer, tiny_encoder):
    examples = load_vqa(
        small_scenes / "vqa" / "v2_OpenEnded_val_questions.json",
        small_scenes / "vqa" / "v2_val_annotations.json",
    )
    answers = ["yes", "no", "1", "2", "red"]
    dataset = VQADataset(
        examples, FeatureStore(small_scenes / "features" / "val.h5"), answers, tokenizer
    )
    task = VQATask(tiny_encoder, len(answers))
    output = task(collate_vqa([dataset[i] for i in range(6)]))
    loss, logged = output.loss()
    loss.backward()
    assert set(logged) == {"loss"} and torch.isfinite(loss)  # one part: no loss_answers beside it
    assert output.parts["answers"].count == 6
    for name in (
        "encoder.layer.0.attention.self.query.weight",
        "embeddings.visual.feature_projection.weight",
    ):
        assert tiny_encoder.get_parameter(name).grad.abs().sum() > 0, name


def test_empty_vocabulary_is_refused(tiny_encoder):
    with pytest.raises(ValueError, match="min_answer_count"):
        VQATask(tiny_encoder, 0)
