"""Questions about the scenes, answered by ten simulated people, in VQAv2 files.

Every question needs grounding:

- ``colour`` / ``shape`` (answer type ``other``): an attribute of one object
  picked out by other attributes, a relation or its place ("what color is the
  shape left of the star?", "what shape is the blue object?");
- ``count`` (``number``): objects with given attributes, sometimes in a relation
  to an anchor ("how many red shapes are there?");
- ``exist`` (``yes/no``): "is there a green triangle?", about half of them false;
- ``relation`` (``yes/no``): "is the circle above the blue star?", more often false.

Ten people answer each question: 0 to 3 of them give a plausible wrong answer
(another colour of the scene, a count off by one, the other yes/no) and some
write the right number as a word ("two"). The right answer, as written, is always
given by at least 5 of the 10: it is the ``multiple_choice_answer``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groundattn.data.scenes.describe import (
    REFER_SHAPE_WORDS,
    Description,
    describe,
    matches,
    unique_descriptions,
)
from groundattn.data.scenes.language import NUMBER_WORDS, pick, plural
from groundattn.data.scenes.world import COLOURS, RELATIONS, SHAPES, Scene, relation_holds

ANSWERS_PER_QUESTION = 10
KINDS = ("colour", "shape", "count", "exist", "relation")
KIND_WEIGHTS = (0.2, 0.15, 0.25, 0.2, 0.2)
ANSWER_TYPE_OF_KIND = {"colour": "other", "shape": "other", "count": "number"}
QUESTION_TYPES = {
    "colour": "what color is the",
    "shape": "what shape is the",
    "count": "how many",
    "exist": "is there a",
    "relation": "is the",
}
SPOKEN_NUMBERS = {0: "zero", 1: "one", **NUMBER_WORDS}
WRONG_ANSWERS = (0.4, 0.3, 0.2, 0.1)  # chance of 0, 1, 2, 3 wrong answers among the ten


@dataclass(frozen=True)
class SceneQuestion:
    """A question with its answer and the structured query it was made from."""

    question_id: int
    image_id: int
    kind: str
    question: str
    answer: str
    query: dict


def _attribute_question(scene: Scene, kind: str, rng: np.random.Generator) -> tuple | None:
    target = int(rng.integers(len(scene.objects)))
    options = unique_descriptions(scene, target, exclude=(kind,))
    if not options:
        return None
    d = pick(rng, options)
    attribute = "color" if kind == "colour" else "shape"
    text = f"what {attribute} is {describe(d, rng)}?"
    answer = getattr(scene.objects[target], kind)
    return text, answer, {"target": target, "description": d.to_json()}


def _count_question(scene: Scene, rng: np.random.Generator) -> tuple:
    model = scene.objects[int(rng.integers(len(scene.objects)))]
    keys = [k for k in ("size", "colour", "shape") if rng.random() < 0.45]
    values = {k: getattr(model, k) for k in keys}
    if keys and rng.random() < 0.15:  # ask about something absent now and then: answer 0
        key = keys[-1]
        pool = {"size": ("small", "large"), "colour": tuple(COLOURS), "shape": SHAPES}[key]
        values[key] = pick(rng, pool)
    d = Description(**values)
    noun = (
        plural(pick(rng, REFER_SHAPE_WORDS[d.shape]))
        if d.shape
        else pick(rng, ("shapes", "objects"))
    )
    words = [w for w in (d.size, d.colour) if w] + [noun]
    relation_text = ""
    anchor_index = int(rng.integers(len(scene.objects)))
    anchor = Description(shape=scene.objects[anchor_index].shape)
    if rng.random() < 0.3 and matches(scene, anchor) == [anchor_index]:
        relation = pick(rng, RELATIONS)
        d = Description(**values, relation=relation, anchor=anchor)
        relation_text = (
            " "
            + {"left of": "to the left of", "right of": "to the right of"}.get(relation, relation)
            + f" the {anchor.shape}"
        )
    answer = str(len(matches(scene, d)))
    text = f"how many {' '.join(words)} are there{relation_text}?"
    return text, answer, {"description": d.to_json()}


def _exist_question(scene: Scene, rng: np.random.Generator) -> tuple:
    present = {(o.colour, o.shape) for o in scene.objects}
    if rng.random() < 0.5:
        colour, shape = pick(rng, sorted(present))
    else:
        colours = sorted({c for c, _ in present} | {pick(rng, tuple(COLOURS))})
        shapes = sorted({s for _, s in present} | {pick(rng, SHAPES)})
        absent = [(c, s) for c in colours for s in shapes if (c, s) not in present]
        colour, shape = pick(rng, absent) if absent else pick(rng, sorted(present))
    answer = "yes" if (colour, shape) in present else "no"
    article = "an" if colour[0] in "aeiou" else "a"
    text = f"is there {article} {colour} {pick(rng, REFER_SHAPE_WORDS[shape])}?"
    return text, answer, {"description": {"colour": colour, "shape": shape}}


def _relation_question(scene: Scene, rng: np.random.Generator) -> tuple | None:
    a, b = (int(k) for k in rng.permutation(len(scene.objects))[:2])
    da = [d for d in unique_descriptions(scene, a) if d.relation is None and d.extreme is None]
    db = [d for d in unique_descriptions(scene, b) if d.relation is None and d.extreme is None]
    if not da or not db:
        return None
    relation = pick(rng, RELATIONS)
    holds = relation_holds(scene.objects[a], scene.objects[b], relation)
    words = {"left of": "to the left of", "right of": "to the right of"}.get(relation, relation)
    text = f"is {describe(pick(rng, da), rng)} {words} {describe(pick(rng, db), rng)}?"
    query = {"subject": a, "object": b, "relation": relation}
    return text, "yes" if holds else "no", query


def make_questions(
    scene: Scene, image_id: int, rng: np.random.Generator, n: int
) -> list[SceneQuestion]:
    """Up to ``n`` distinct questions about ``scene``; ids ``image_id * 1000 + k``."""
    questions: list[SceneQuestion] = []
    seen: set[str] = set()
    for _ in range(4 * n):
        if len(questions) == n:
            break
        kind = KINDS[int(rng.choice(len(KINDS), p=KIND_WEIGHTS))]
        if kind in ("colour", "shape"):
            made = _attribute_question(scene, kind, rng)
        elif kind == "count":
            made = _count_question(scene, rng)
        elif kind == "exist":
            made = _exist_question(scene, rng)
        else:
            made = _relation_question(scene, rng)
        if made is None or made[0] in seen:
            continue
        seen.add(made[0])
        qid = image_id * 1000 + len(questions)
        questions.append(
            SceneQuestion(qid, image_id, kind, made[0], made[1], {"kind": kind, **made[2]})
        )
    return questions


def human_answers(q: SceneQuestion, scene: Scene, rng: np.random.Generator) -> list[dict]:
    """Ten answers with ids 1..10: the right one, a few plausible wrong ones, some number words."""
    if q.kind == "colour":
        pool = sorted({o.colour for o in scene.objects} | {pick(rng, tuple(COLOURS))})
    elif q.kind == "shape":
        pool = sorted({o.shape for o in scene.objects} | {pick(rng, SHAPES)})
    elif q.kind == "count":
        pool = [str(max(0, int(q.answer) + d)) for d in (-1, 1)]
    else:
        pool = ["yes", "no"]
    wrong_pool = [a for a in pool if a != q.answer]
    n_wrong = int(rng.choice(len(WRONG_ANSWERS), p=WRONG_ANSWERS)) if wrong_pool else 0
    n_right = ANSWERS_PER_QUESTION - n_wrong
    # Number words, but never so many that the digits lose the plurality (5 of 10 at least).
    n_spoken = min(int(rng.binomial(n_right, 0.15)), n_right - 5) if q.kind == "count" else 0
    answers = []
    for i in range(ANSWERS_PER_QUESTION):
        if i < n_wrong:
            answer, confidence = pick(rng, wrong_pool), pick(rng, ("maybe", "maybe", "no", "yes"))
        else:
            answer, confidence = q.answer, "yes" if rng.random() < 0.85 else "maybe"
            if i >= ANSWERS_PER_QUESTION - n_spoken:
                answer = SPOKEN_NUMBERS.get(int(answer), answer)
        answers.append((answer, confidence))
    order = rng.permutation(ANSWERS_PER_QUESTION)
    return [
        {"answer": answers[j][0], "answer_confidence": answers[j][1], "answer_id": i + 1}
        for i, j in enumerate(order)
    ]


def answer_type(q: SceneQuestion) -> str:
    """``yes/no``, ``number`` or ``other``."""
    return ANSWER_TYPE_OF_KIND.get(q.kind, "yes/no")


def write_vqa(vqa_dir: Path, split: str, items: list[tuple[SceneQuestion, list[dict]]]) -> None:
    """Writes ``v2_OpenEnded_<split>_questions.json`` and ``v2_<split>_annotations.json``."""
    vqa_dir.mkdir(parents=True, exist_ok=True)
    info = {"description": "grounded scenes: questions about rendered shapes", "version": "2.0"}
    questions = [
        {"image_id": q.image_id, "question": q.question, "question_id": q.question_id}
        for q, _ in items
    ]
    annotations = [
        {
            "question_id": q.question_id,
            "image_id": q.image_id,
            "question_type": QUESTION_TYPES[q.kind],
            "answer_type": answer_type(q),
            "multiple_choice_answer": q.answer,
            "answers": answers,
        }
        for q, answers in items
    ]
    header = {"info": info, "license": {"name": "CC0"}, "data_subtype": split}
    # json.dumps, not json.dump: only the one-shot encoder is the fast C one.
    questions_json = json.dumps({**header, "task_type": "Open-Ended", "questions": questions})
    (vqa_dir / f"v2_OpenEnded_{split}_questions.json").write_text(questions_json, encoding="utf-8")
    annotations_json = json.dumps({**header, "annotations": annotations})
    (vqa_dir / f"v2_{split}_annotations.json").write_text(annotations_json, encoding="utf-8")
