import pytest
import torch

from groundattn.data.store import FeatureStore
from groundattn.data.vqa import answer_vocabulary, load_vqa, soft_scores, vqa_accuracy
from groundattn.tasks.vqa import VQADataset, answer_accuracies, collate_vqa


@pytest.fixture(scope="module")
def vocabulary(small_scenes):
    train = load_vqa(
        small_scenes / "vqa" / "v2_OpenEnded_train_questions.json",
        small_scenes / "vqa" / "v2_train_annotations.json",
    )
    return answer_vocabulary([e.annotation for e in train], 2)


@pytest.fixture(scope="module")
def val(small_scenes, tokenizer, vocabulary):
    examples = load_vqa(
        small_scenes / "vqa" / "v2_OpenEnded_val_questions.json",
        small_scenes / "vqa" / "v2_val_annotations.json",
    )
    return VQADataset(
        examples,
        FeatureStore(small_scenes / "features" / "val.h5"),
        vocabulary,
        tokenizer,
        regions="detected",
    )


def test_answer_accuracy_by_hand():
    humans = ["two"] * 3 + ["2"] * 5 + ["3", "3 "]
    scores = answer_accuracies(humans, {"2": 0, "3": 1, "4": 2})
    # "2": 8 matches once normalised, every leave-one-out subset keeps >= 3: 1.
    # "3": 2 matches: 2 subsets keep 1 (1/3), 8 keep 2 (2/3): (2/3 + 16/3) / 10 = 0.6.
    assert scores == pytest.approx({0: 1.0, 1: 0.6})
    # Ten identical answers are compared as written (official rule): "Two" never matches "2".
    assert answer_accuracies(["Two"] * 10, {"2": 0}) == {}


def test_answer_accuracies_equal_the_official_score_of_every_answer(val):
    for example, accuracy in zip(val.examples, val.accuracy, strict=True):
        for k, answer in enumerate(val.answers):
            assert accuracy.get(k, 0.0) == pytest.approx(
                vqa_accuracy(answer, example.annotation.answers)
            )


def test_targets_are_soft_scores():
    index = {"red": 0, "blue": 1}
    assert soft_scores(["red"] * 2 + ["blue"] * 7 + ["green"], index) == pytest.approx(
        {0: 2 / 3, 1: 1.0}
    )


def test_items_and_collate(val, tokenizer):
    items = [val[i] for i in (0, 5, 11)]
    for item, example, targets in zip(
        items,
        [val.examples[i] for i in (0, 5, 11)],
        [val.targets[i] for i in (0, 5, 11)],
        strict=True,
    ):
        ids = item["token_ids"]
        assert ids[0] == tokenizer.cls_token_id and ids[-2:] == [
            tokenizer.mask_token_id,
            tokenizer.sep_token_id,
        ]
        assert (
            ids[1:-2] == tokenizer(example.question.question, add_special_tokens=False)["input_ids"]
        )
        assert item["targets"] == targets and item["question_id"] == example.question.question_id
    batch = collate_vqa(items)
    assert len(set(batch.inputs.text_lengths.tolist())) > 1  # mixed lengths
    at = batch.inputs.input_ids[torch.arange(3), batch.answer_positions]
    assert (at == tokenizer.mask_token_id).all()
    assert (
        batch.targets.shape == (3, len(val.answers))
        and batch.answer_accuracy.dtype == torch.float64
    )
    for b, item in enumerate(items):
        assert {k: v for k, v in enumerate(batch.targets[b].tolist()) if v} == pytest.approx(
            item["targets"]
        )
        assert batch.answer_type[b] == item["answer_type"] >= 0


def test_questions_without_annotations(small_scenes, tokenizer, vocabulary):
    examples = load_vqa(small_scenes / "vqa" / "v2_OpenEnded_test_questions.json")
    dataset = VQADataset(
        examples, FeatureStore(small_scenes / "features" / "test.h5"), vocabulary, tokenizer
    )
    batch = collate_vqa([dataset[0], dataset[1]])
    assert (
        (batch.answer_type == -1).all()
        and batch.targets.sum() == 0
        and dataset.annotations == [None] * len(dataset)
    )


def test_cut_questions_and_answers_outside_the_vocabulary_are_counted(
    small_scenes, tokenizer, vocabulary
):
    examples = load_vqa(
        small_scenes / "vqa" / "v2_OpenEnded_val_questions.json",
        small_scenes / "vqa" / "v2_val_annotations.json",
    )[:40]
    store = FeatureStore(small_scenes / "features" / "val.h5")
    dataset = VQADataset(examples, store, vocabulary[:3], tokenizer, max_question_tokens=3)
    lengths = [
        len(tokenizer(e.question.question, add_special_tokens=False)["input_ids"]) for e in examples
    ]
    assert dataset.dropped["questions cut to 3 word pieces (their tail left out)"] == sum(
        n > 3 for n in lengths
    )
    assert all(len(ids) == min(n, 3) for ids, n in zip(dataset.token_ids, lengths, strict=True))
    outside = sum(1 for t in dataset.targets if not t)
    assert outside > 0
    assert (
        dataset.dropped[
            "annotated questions with no answer in the answer vocabulary (kept: they score 0)"
        ]
        == outside
    )
