"""Tests of groundattn/data/vqa.py: reading, answer normalisation, official accuracy."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from groundattn.data.errors import FormatError
from groundattn.data.vqa import (
    answer_vocabulary,
    evaluate,
    load_vqa,
    normalize_answer,
    read_annotations,
    read_questions,
    read_results,
    soft_scores,
    vqa_accuracy,
    write_results,
)

VQA = Path(__file__).parent / "fixtures" / "vqa"


def test_load_vqa_joins_by_question_id():
    examples = load_vqa(VQA / "questions.json", VQA / "annotations.json")
    assert [e.question.question_id for e in examples] == [42000, 42001, 43000]
    number = examples[1].annotation
    assert number.answer_type == "number" and number.image_id == 42
    assert number.answers[:3] == ("two", "two", "3")
    assert number.confidences == ("maybe",) * 10
    assert all(e.annotation is None for e in load_vqa(VQA / "questions.json"))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Two", "2"),
        ("two.", "2"),
        ("A dog", "dog"),
        ("the red one", "red 1"),
        ("none", "0"),
        ("3,000", "3000"),  # digit-comma-digit: punctuation is deleted, not spaced
        ("3.5", "3.5"),  # a period before a digit stays
        ("left-side", "left side"),  # punctuation inside a word becomes a space
        ("yes !", "yes"),  # punctuation next to a space is deleted
        ("(yes)", "yes"),
        ("dont", "don't"),
        ("couldnt've", "couldn't've"),
        ("it's red", "it's red"),
        ("im", "im"),  # the official table's I-contractions never match
        (" yes\n", "yes"),
        ("tab\there", "tab here"),
    ],
)
def test_normalize_answer(answer, expected):
    assert normalize_answer(answer) == expected


def test_vqa_accuracy_hand_computed():
    others = ["three"] * 8
    # 2 of 10 say "two" -> "2": 2 subsets leave one match (1/3), 8 leave two (2/3).
    assert vqa_accuracy("2", ["two", "two"] + others) == pytest.approx((2 / 3 + 8 * 2 / 3) / 10)
    assert vqa_accuracy("2", ["two", "two"] + others) == pytest.approx(0.6)
    assert vqa_accuracy("2", ["two"] * 3 + others[:7]) == pytest.approx(0.9)
    assert vqa_accuracy("2", ["two"] * 4 + others[:6]) == pytest.approx(1.0)
    assert vqa_accuracy("2", ["two"] + others + ["four"]) == pytest.approx(0.3)
    assert vqa_accuracy("cat", ["two", "two"] + others) == 0.0


def test_vqa_accuracy_normalises_only_when_humans_disagree():
    # All ten the same: no normalisation, so "two" does not match "Two".
    assert vqa_accuracy("two", ["Two"] * 10) == 0.0
    assert vqa_accuracy("Two", ["Two"] * 10) == 1.0
    # Newlines and tabs are always stripped.
    assert vqa_accuracy("Two\n", ["Two"] * 10) == 1.0
    assert vqa_accuracy("the Two", ["Two"] * 9 + ["2"]) == 1.0


def test_evaluate_overall_and_per_answer_type():
    annotations = read_annotations(VQA / "annotations.json")
    results = {42000: "yes", 42001: "2", 43000: "the maroon"}
    scores = evaluate(results, annotations)
    assert scores == pytest.approx(
        {"overall": (1.0 + 0.6 + 0.9) / 3, "yes/no": 1.0, "number": 0.6, "other": 0.9}
    )
    # "Red." counts as "red" once the answers are normalised: 4 matches.
    assert evaluate({**results, 43000: "red"}, annotations)["other"] == 1.0
    with pytest.raises(ValueError, match="1 questions without a result"):
        evaluate({42000: "yes", 42001: "2"}, annotations)
    with pytest.raises(ValueError, match="1 results for unannotated"):
        evaluate({**results, 7: "yes"}, annotations)


def test_results_round_trip(tmp_path):
    path = tmp_path / "results.json"
    write_results(path, {43000: "red", 42000: "yes"})
    assert json.loads(path.read_text()) == [
        {"question_id": 42000, "answer": "yes"},
        {"question_id": 43000, "answer": "red"},
    ]
    assert read_results(path) == {42000: "yes", 43000: "red"}
    path.write_text('[{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}]')
    with pytest.raises(FormatError, match=r"field \[1\].question_id: second result"):
        read_results(path)
    path.write_text('[{"question_id": "1", "answer": "a"}]')
    with pytest.raises(FormatError, match=r"field \[0\].question_id: expected int, got str"):
        read_results(path)


def test_answer_vocabulary_and_soft_scores():
    (base,) = read_annotations(VQA / "annotations.json")[:1]
    consensus = ["yes"] * 3 + ["Two"] * 2 + ["2"] + ["red"] * 3 + ["blue"] * 3 + ["green"]
    annotations = [replace(base, multiple_choice_answer=a) for a in consensus]
    # "Two" and "2" count together; ties sorted alphabetically; below min_count dropped.
    assert answer_vocabulary(annotations, min_count=3) == ["2", "blue", "red", "yes"]
    assert answer_vocabulary(annotations, min_count=1)[-1] == "green"

    vocabulary = {"2": 0, "3": 1, "red": 2}
    humans = ["two", "two", "3", "3", "3", "3", "3", "3", "three", "cat"]
    assert soft_scores(humans, vocabulary) == pytest.approx({0: 2 / 3, 1: 1.0})
    assert soft_scores(["Red."] + ["cat"] * 9, vocabulary) == pytest.approx({2: 1 / 3})


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_questions_malformed(tmp_path):
    path = _write(tmp_path / "q.json", {"questions": [{"image_id": 1, "question": "why?"}]})
    with pytest.raises(FormatError, match="field questions\\[0\\].question_id: missing field"):
        read_questions(path)
    path = _write(
        tmp_path / "q.json", {"questions": [{"image_id": True, "question": "?", "question_id": 1}]}
    )
    with pytest.raises(FormatError, match="questions\\[0\\].image_id: expected int, got bool"):
        read_questions(path)
    path.write_text('{"questions": [\n  {"image_id": 1,,}\n]}')
    with pytest.raises(FormatError, match="line 2: invalid JSON"):
        read_questions(path)
    path = _write(tmp_path / "q.json", [])
    with pytest.raises(FormatError, match=r"q.json: expected dict, got list \[\]"):
        read_questions(path)


def _annotations_with(tmp_path, **changes):
    data = json.loads((VQA / "annotations.json").read_text())
    for key, value in changes.items():
        data["annotations"][1][key] = value
    return _write(tmp_path / "a.json", data)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"answer_type": "count"}, "annotations[1].answer_type", "expected one of"),
        ({"answers": []}, "annotations[1].answers", "expected 10 answers, got 0"),
        ({"multiple_choice_answer": 2}, "annotations[1].multiple_choice_answer", "expected str"),
    ],
)
def test_annotations_malformed(tmp_path, changes, field, message):
    path = _annotations_with(tmp_path, **changes)
    with pytest.raises(FormatError, match=message) as info:
        read_annotations(path)
    assert info.value.field == field
    assert str(info.value).startswith(f"{path}, field {field}: ")


def test_annotations_bad_human_answer(tmp_path):
    data = json.loads((VQA / "annotations.json").read_text())
    data["annotations"][2]["answers"][4]["answer_confidence"] = "sure"
    with pytest.raises(FormatError, match=r"annotations\[2\].answers\[4\].answer_confidence"):
        read_annotations(_write(tmp_path / "a.json", data))
    data["annotations"][2]["answers"][4] = {
        "answer": "red",
        "answer_confidence": "yes",
        "answer_id": 1,
    }
    with pytest.raises(FormatError, match=r"answers\[4\].answer_id: expected distinct ids"):
        read_annotations(_write(tmp_path / "a.json", data))


def test_join_errors(tmp_path):
    data = json.loads((VQA / "annotations.json").read_text())
    missing = _write(tmp_path / "a.json", {"annotations": data["annotations"][:2]})
    with pytest.raises(FormatError, match="no annotation for question 43000") as info:
        load_vqa(VQA / "questions.json", missing)
    assert info.value.path == str(missing)
    data["annotations"][0]["question_id"] = 5
    with pytest.raises(FormatError, match=r"annotations\[0\].question_id: question 5 is not in"):
        load_vqa(VQA / "questions.json", _write(tmp_path / "a.json", data))
    data["annotations"][0].update(question_id=42000, image_id=43)
    with pytest.raises(FormatError, match=r"annotations\[0\].image_id: image 43, but question"):
        load_vqa(VQA / "questions.json", _write(tmp_path / "a.json", data))
