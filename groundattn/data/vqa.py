"""VQAv2: questions and annotations, answer vocabulary and soft scores, official accuracy.

Accuracy follows the official evaluation (``vqaEval.py`` of the VQA challenge):
answers are stripped of newlines and tabs; when the human answers of a question
are not all the same, human and predicted answers are normalised
(:func:`normalize_answer`); the accuracy is the mean over the leave-one-out
subsets of the human answers of ``min(1, matches / 3)``. Accuracies are returned
as fractions in ``[0, 1]`` (the papers print them times 100).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from groundattn.data.errors import FormatError, check_type, get_field, load_json

ANSWER_TYPES = ("yes/no", "number", "other")
CONFIDENCES = ("yes", "maybe", "no")
NUM_HUMAN_ANSWERS = 10


@dataclass(frozen=True)
class Question:
    """One question of a questions file."""

    question_id: int
    image_id: int
    question: str


@dataclass(frozen=True)
class Annotation:
    """One annotation: the answer type, the consensus answer and the human answers."""

    question_id: int
    image_id: int
    question_type: str
    answer_type: str
    multiple_choice_answer: str
    answers: tuple[str, ...]  # the 10 human answers, by answer_id
    confidences: tuple[str, ...]  # "yes" | "maybe" | "no", aligned with answers


@dataclass(frozen=True)
class VQAExample:
    """A question and its annotation (None in a split without annotations)."""

    question: Question
    annotation: Annotation | None


def read_questions(path: str | Path) -> list[Question]:
    """Reads a questions file ``{"questions": [{image_id, question, question_id}, …]}``."""
    path = Path(path)
    questions = []
    for k, entry in enumerate(get_field(load_json(path), "questions", list, path)):
        where = f"questions[{k}]"
        questions.append(
            Question(
                question_id=get_field(entry, "question_id", int, path, where),
                image_id=get_field(entry, "image_id", int, path, where),
                question=get_field(entry, "question", str, path, where),
            )
        )
    return questions


def _human_answers(entry: dict, path: Path, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    answers = get_field(entry, "answers", list, path, where)
    if len(answers) != NUM_HUMAN_ANSWERS:
        raise FormatError(
            path,
            f"expected {NUM_HUMAN_ANSWERS} answers, got {len(answers)}",
            field=f"{where}.answers",
        )
    by_id = {}
    for k, answer in enumerate(answers):
        at = f"{where}.answers[{k}]"
        answer_id = get_field(answer, "answer_id", int, path, at)
        confidence = get_field(answer, "answer_confidence", str, path, at)
        if answer_id in by_id or not 1 <= answer_id <= NUM_HUMAN_ANSWERS:
            raise FormatError(
                path, f"expected distinct ids 1..10, got {answer_id}", field=f"{at}.answer_id"
            )
        if confidence not in CONFIDENCES:
            raise FormatError(
                path,
                f"expected one of {CONFIDENCES}, got {confidence!r}",
                field=f"{at}.answer_confidence",
            )
        by_id[answer_id] = (get_field(answer, "answer", str, path, at), confidence)
    ordered = [by_id[i] for i in sorted(by_id)]
    return tuple(a for a, _ in ordered), tuple(c for _, c in ordered)


def read_annotations(path: str | Path) -> list[Annotation]:
    """Reads an annotations file ``{"annotations": [...]}`` (see FORMATS.md), validating fields."""
    path = Path(path)
    annotations = []
    for k, entry in enumerate(get_field(load_json(path), "annotations", list, path)):
        where = f"annotations[{k}]"
        answer_type = get_field(entry, "answer_type", str, path, where)
        if answer_type not in ANSWER_TYPES:
            raise FormatError(
                path,
                f"expected one of {ANSWER_TYPES}, got {answer_type!r}",
                field=f"{where}.answer_type",
            )
        answers, confidences = _human_answers(entry, path, where)
        annotations.append(
            Annotation(
                question_id=get_field(entry, "question_id", int, path, where),
                image_id=get_field(entry, "image_id", int, path, where),
                question_type=get_field(entry, "question_type", str, path, where),
                answer_type=answer_type,
                multiple_choice_answer=get_field(entry, "multiple_choice_answer", str, path, where),
                answers=answers,
                confidences=confidences,
            )
        )
    return annotations


def load_vqa(
    questions_path: str | Path, annotations_path: str | Path | None = None
) -> list[VQAExample]:
    """Reads a split's questions and, where the split has them, joins its annotations.

    Raises:
        FormatError: a repeated question id, a question without annotation, an
            annotation of an unknown question, or differing image ids.
    """
    questions_path = Path(questions_path)
    questions = read_questions(questions_path)
    by_id: dict[int, Question] = {}
    for k, question in enumerate(questions):
        if question.question_id in by_id:
            raise FormatError(
                questions_path,
                f"repeated question id {question.question_id}",
                field=f"questions[{k}]",
            )
        by_id[question.question_id] = question
    if annotations_path is None:
        return [VQAExample(q, None) for q in questions]

    annotations_path = Path(annotations_path)
    annotated: dict[int, Annotation] = {}
    for k, annotation in enumerate(read_annotations(annotations_path)):
        where = f"annotations[{k}]"
        question = by_id.get(annotation.question_id)
        if question is None or annotation.question_id in annotated:
            problem = (
                "is not in " + str(questions_path) if question is None else "is annotated twice"
            )
            raise FormatError(
                annotations_path,
                f"question {annotation.question_id} {problem}",
                field=f"{where}.question_id",
            )
        if annotation.image_id != question.image_id:
            raise FormatError(
                annotations_path,
                f"image {annotation.image_id}, but question {question.question_id} is on image "
                f"{question.image_id} in {questions_path}",
                field=f"{where}.image_id",
            )
        annotated[annotation.question_id] = annotation
    for k, question in enumerate(questions):
        if question.question_id not in annotated:
            raise FormatError(
                annotations_path,
                f"no annotation for question {question.question_id} "
                f"(questions[{k}] of {questions_path})",
                field="annotations",
            )
    return [VQAExample(q, annotated[q.question_id]) for q in questions]


# Official normalisation tables. Punctuation: no '.', ':', "'" (handled apart or kept).
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-")
_PUNCTUATION += (">", "<", "@", "`", ",", "?", "!")
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The official pattern "(?!<=\d)(\.)(?!\d)" has a lookahead typo where a lookbehind was
# meant; it removes every period not followed by a digit, and so does this one.
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = dict(
    none="0",
    zero="0",
    one="1",
    two="2",
    three="3",
    four="4",
    five="5",
    six="6",
    seven="7",
    eight="8",
    nine="9",
    ten="10",
)
_ARTICLES = frozenset(("a", "an", "the"))
# Contractions the official table restores. Each is restored from every spelling with
# exactly one of its apostrophes left out ("couldnt've", "couldn'tve" -> "couldn't've").
# The official table also lists I'm, I've, I'd've under capitalised keys, which never
# match the lower-cased words: they are left out here to give the same results.
_CONTRACTIONS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've
hasn't haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am
mightn't mightn't've might've mustn't must've needn't not've o'clock oughtn't shan't
she'd've should've shouldn't shouldn't've somebody'd've somebody'll somebody's someone'd
someone'd've someone'll someone's something'd something'd've something'll that's there'd
there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've
we've weren't what'll what're what's what've when's where'd where's where've who'd
who'd've who'll who's who've won't would've wouldn't wouldn't've y'all y'all'll y'all'd've
you'd you'd've you'll you're you've
"""
_RESTORE = {
    w[:k] + w[k + 1 :]: w for w in _CONTRACTIONS.split() for k, c in enumerate(w) if c == "'"
}
_RESTORE["somebody'd"] = "somebodyd"  # an entry of the official table, kept for parity


def _strip_whitespace(answer: str) -> str:
    return answer.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
    """Official VQA answer normalisation.

    Newlines and tabs become spaces; each punctuation mark is deleted where it
    touches a space (or the answer has a digit-comma-digit) and else replaced by a
    space; periods not followed by a digit are deleted; words are lower-cased,
    number words become digits, articles are removed and contractions get their
    apostrophes back.
    """
    text = _strip_whitespace(answer)
    glued = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        touches_space = mark + " " in text or " " + mark in text
        out = out.replace(mark, "" if glued or touches_space else " ")
    out = _PERIOD.sub("", out)
    words = (_NUMBER_WORDS.get(w, w) for w in out.lower().split())
    return " ".join(_RESTORE.get(w, w) for w in words if w not in _ARTICLES)


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """Official accuracy of one predicted answer against the human answers.

    Mean over the leave-one-out subsets of the human answers of
    ``min(1, matches among the others / 3)``; answers are normalised only when the
    human answers are not all the same.
    """
    if not human_answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    humans = [_strip_whitespace(a) for a in human_answers]
    prediction = _strip_whitespace(prediction)
    if len(set(humans)) > 1:
        humans = [normalize_answer(a) for a in humans]
        prediction = normalize_answer(prediction)
    matches = sum(h == prediction for h in humans)
    # Leaving out a matching answer leaves matches - 1 among the others.
    return sum(min(1.0, (matches - (h == prediction)) / 3) for h in humans) / len(humans)


def answer_vocabulary(annotations: Sequence[Annotation], min_count: int = 9) -> list[str]:
    """Normalised consensus answers seen at least ``min_count`` times, by count then name."""
    counts = Counter(normalize_answer(a.multiple_choice_answer) for a in annotations)
    kept = [(answer, n) for answer, n in counts.items() if n >= min_count]
    return [answer for answer, _ in sorted(kept, key=lambda item: (-item[1], item[0]))]


def soft_scores(human_answers: Sequence[str], vocabulary: Mapping[str, int]) -> dict[int, float]:
    """Training targets: vocabulary index -> ``min(1, annotators giving the answer / 3)``.

    Human answers are normalised first; answers outside the vocabulary get no target.
    """
    counts = Counter(normalize_answer(a) for a in human_answers)
    return {vocabulary[a]: min(1.0, n / 3) for a, n in counts.items() if a in vocabulary}


def evaluate(results: Mapping[int, str], annotations: Sequence[Annotation]) -> dict[str, float]:
    """Official accuracy overall and per answer type.

    Args:
        results: question id -> predicted answer, one for every annotation.
        annotations: the annotations of the evaluated questions.

    Returns:
        ``{"overall": acc, "yes/no": acc, "number": acc, "other": acc}``, fractions;
        an answer type without questions is left out.
    """
    annotated = {a.question_id for a in annotations}
    missing = [a.question_id for a in annotations if a.question_id not in results]
    unknown = sorted(set(results) - annotated)
    if missing or unknown:
        raise ValueError(
            f"results do not cover the annotations: {len(missing)} questions without a result "
            f"(e.g. {missing[:3]}), {len(unknown)} results for unannotated questions (e.g. {unknown[:3]})"
        )
    per_type: dict[str, list[float]] = defaultdict(list)
    for annotation in annotations:
        accuracy = vqa_accuracy(results[annotation.question_id], annotation.answers)
        per_type[annotation.answer_type].append(accuracy)
    if not annotations:
        raise ValueError("evaluate needs at least one annotation")
    scores = [s for values in per_type.values() for s in values]
    summary = {"overall": sum(scores) / len(scores)}
    summary.update({t: sum(per_type[t]) / len(per_type[t]) for t in ANSWER_TYPES if per_type[t]})
    return summary


def read_results(path: str | Path) -> dict[int, str]:
    """Reads a results file ``[{"question_id": int, "answer": str}, …]``."""
    path = Path(path)
    data = check_type(load_json(path), list, path, "")
    results: dict[int, str] = {}
    for k, entry in enumerate(data):
        question_id = get_field(entry, "question_id", int, path, f"[{k}]")
        if question_id in results:
            raise FormatError(
                path, f"second result for question {question_id}", field=f"[{k}].question_id"
            )
        results[question_id] = get_field(entry, "answer", str, path, f"[{k}]")
    return results


def write_results(path: str | Path, results: Mapping[int, str]) -> None:
    """Writes question id -> answer as a results file, sorted by question id."""
    entries = [{"question_id": int(q), "answer": str(a)} for q, a in sorted(results.items())]
    Path(path).write_text(json.dumps(entries), encoding="utf-8")
