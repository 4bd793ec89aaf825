"""Referring expressions, COCO instances and a simulated detector, in refer format.

Referents are preferably objects with a distractor (another object of the same
shape or colour), and their expressions preferably state the shape, the COCO
category: "the red circle on the left", "the larger square".

Splits follow the image splits: ``train`` images give ``train`` refs, ``val``
images ``val`` refs (both kinds of scene), and ``test`` images give ``testA``
when all their objects share one shape (every distractor has the referent's
category, as testA's people do in RefCOCO) and ``testB`` otherwise.

Unlike RefCOCO+, expressions may use location words: the shapes have no other
appearance to tell twins apart.

The detector finds each object with probability ``1 - DETECTOR_MISS``, its box
jittered by about ``DETECTOR_JITTER`` of the object's side, its category right
with probability ``DETECTOR_CATEGORY``, and adds Poisson(``DETECTOR_FALSE``)
false alarms with low scores. Detections of an image are sorted by score.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groundattn.data.boxes import xyxy_to_xywh
from groundattn.data.scenes.describe import Description, describe, matches, unique_descriptions
from groundattn.data.scenes.world import SHAPES, Scene

DETECTOR_MISS = 0.08
DETECTOR_JITTER = 0.07
DETECTOR_CATEGORY = 0.9
DETECTOR_FALSE = 0.5
MAX_REFS_PER_IMAGE = 3
MAX_SENTENCES_PER_REF = 3
CATEGORIES = [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]


@dataclass(frozen=True)
class Referent:
    """An object of one image and the expressions that pick it out."""

    object_index: int
    expressions: tuple[str, ...]
    descriptions: tuple[Description, ...]


def category_id(shape: str) -> int:
    """The COCO category id of a shape (1-based, :data:`SHAPES` order)."""
    return SHAPES.index(shape) + 1


def refer_split(image_split: str, scene: Scene) -> str:
    """The refer split of an image: train, val, testA (one shape) or testB."""
    if image_split != "test":
        return image_split
    return "testA" if scene.single_shape else "testB"


def _has_distractor(scene: Scene, k: int) -> bool:
    o = scene.objects[k]
    return any(
        j != k and (p.shape == o.shape or p.colour == o.colour) for j, p in enumerate(scene.objects)
    )


def _complexity(d: Description) -> tuple[int, int]:
    extra = (d.relation is not None) + (d.extreme is not None)
    return (0 if d.shape else 1, len(d.stated()) + 2 * extra)


def make_referents(scene: Scene, rng: np.random.Generator) -> list[Referent]:
    """Up to :data:`MAX_REFS_PER_IMAGE` referents with 1 to 3 distinct expressions each."""
    order = [int(k) for k in rng.permutation(len(scene.objects))]
    order.sort(key=lambda k: not _has_distractor(scene, k))  # stable: distractors first
    referents = []
    for k in order:
        options = sorted(unique_descriptions(scene, k), key=_complexity)
        if not options:
            continue
        n = int(rng.integers(1, MAX_SENTENCES_PER_REF + 1))
        # The simplest description and a few random others among the simple ones.
        pool = options[1 : 1 + 2 * MAX_SENTENCES_PER_REF]
        chosen = [options[0]] + [pool[i] for i in rng.permutation(len(pool))[: n - 1]]
        expressions, kept = [], []
        for d in chosen:
            twins = matches(scene, Description(colour=d.colour, shape=d.shape))
            comparative = d.size is not None and len(twins) > 1 and rng.random() < 0.5
            text = describe(d, rng, comparative=comparative)
            if text not in expressions:
                expressions.append(text)
                kept.append(d)
        referents.append(Referent(k, tuple(expressions), tuple(kept)))
        if len(referents) == MAX_REFS_PER_IMAGE:
            break
    return referents


def simulate_detections(scene: Scene, rng: np.random.Generator) -> list[dict]:
    """Detections ``{"box": [x1, y1, x2, y2], "category_id", "score"}``, by falling score."""
    detections = []
    size = np.array([scene.width, scene.height, scene.width, scene.height], dtype=float)
    for o in scene.objects:
        if rng.random() < DETECTOR_MISS:
            continue
        box = np.array(o.box, dtype=float)
        side = np.array([box[2] - box[0], box[3] - box[1]] * 2)
        box = box + rng.normal(0.0, DETECTOR_JITTER, 4) * side
        box = np.clip(box, 0, size)
        if box[2] - box[0] < 4 or box[3] - box[1] < 4:
            continue
        category = category_id(o.shape)
        if rng.random() > DETECTOR_CATEGORY:
            category = int(rng.integers(1, len(SHAPES) + 1))
        detections.append((box, category, float(rng.uniform(0.55, 0.99))))
    for _ in range(int(rng.poisson(DETECTOR_FALSE))):
        side = rng.uniform(10, 40, 2)
        x1, y1 = rng.uniform(0, scene.width - side[0]), rng.uniform(0, scene.height - side[1])
        box = np.array([x1, y1, x1 + side[0], y1 + side[1]])
        detections.append(
            (box, int(rng.integers(1, len(SHAPES) + 1)), float(rng.uniform(0.05, 0.5)))
        )
    detections.sort(key=lambda d: -d[2])
    return [
        {"box": [round(float(v), 2) for v in box], "category_id": c, "score": round(s, 3)}
        for box, c, s in detections
    ]


def xywh(box: tuple[float, ...] | list[float]) -> list[float]:
    """``x1 y1 x2 y2`` → COCO ``[x, y, w, h]`` (rounded to 1/100 pixel)."""
    return [round(float(v), 2) for v in xyxy_to_xywh(np.asarray(box, np.float64))]


def write_refer(
    refer_dir: Path,
    refs: list[dict],
    images: list[dict],
    annotations: list[dict],
    detections: list[dict],
) -> None:
    """Writes ``refs(unc).p`` (pickle protocol 4, plain types), ``instances.json``, ``detections.json``."""
    refer_dir.mkdir(parents=True, exist_ok=True)
    # Through JSON first: pickle memoises shared objects, so its bytes would depend on how
    # the refs were built (in one process or in workers); fresh objects depend on content only.
    plain = json.loads(json.dumps(refs))
    (refer_dir / "refs(unc).p").write_bytes(pickle.dumps(plain, protocol=4))
    instances = {
        "info": {"description": "grounded scenes: shapes as COCO categories"},
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    # json.dumps, not json.dump: only the one-shot encoder is the fast C one.
    (refer_dir / "instances.json").write_text(json.dumps(instances), encoding="utf-8")
    (refer_dir / "detections.json").write_text(json.dumps(detections), encoding="utf-8")
