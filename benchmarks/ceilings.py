"""What an ideal reader could reach on the embedded scenes: the ceilings beside the chance rows.

    .venv/bin/python benchmarks/ceilings.py [--data data/scenes] [--split val]

Prints, for the grounded scenes (``world.jsonl`` and ``Sentences/``):

- **attention grounding** (the metric of ``grounding_per_head``: does a grounded
  word's attention arg-max over the regions fall on its own region?) for two
  ideal readers that pick uniformly among the objects their words allow: one
  that reads the whole phrase (colour, shape, size and place words), one that
  reads the word alone (a first-layer head sees nothing else); and the
  cross-entropy floor of the phrase reader beside uniform attention;
- **identification**: the share of negative captions (the nearest image's, as
  ``negatives="hard"``, and a random image's) that such a reader can tell false
  because one of their phrases fits no object of the image.

Relations ("left of …") are not read, so the ceilings are lower bounds. Words
are counted, not word pieces.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np

from groundattn.data.scenes.language import (
    COLOUR_WORDS,
    LOCATION_WORDS,
    NUMBER_WORDS,
    SHAPE_WORDS,
    SIZE_WORDS,
)
from groundattn.data.store import FeatureStore

PHRASE = re.compile(r"\[/EN#(\d+)/\S+ ([^\]]+)\]")
COLOUR = {w: c for c, words in COLOUR_WORDS.items() for w in words}
SIZE = {w: s for s, words in SIZE_WORDS.items() for w in words}
# The first word of each shape noun ("round shape" → round); plurals end in s / es.
SHAPE = {w.split()[0]: s for s, words in SHAPE_WORDS.items() for w in words}
LOCATION = {p: cell for cell, phrases in LOCATION_WORDS.items() for p in phrases}
NUMBER = {w: n for n, w in NUMBER_WORDS.items()}


def _shape(word: str) -> str | None:
    for stem in (word, word[:-1], word[:-2]):
        if stem in SHAPE:
            return SHAPE[stem]
    return None


def _cell(box: list[float], size: float = 128) -> str:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = "top" if cy < size / 3 else "bottom" if cy > 2 * size / 3 else "middle"
    col = "left" if cx < size / 3 else "right" if cx > 2 * size / 3 else "centre"
    return f"{row} {col}"


def fitting(text: str, objects: list[dict]) -> list[int]:
    """The objects whose colour, shape, size and place the phrase's words allow."""
    words = text.lower().split()
    wanted = {
        "colour": next((COLOUR[w] for w in words if w in COLOUR), None),
        "shape": next((s for s in map(_shape, words) if s), None),
        "size": next((SIZE[w] for w in words if w in SIZE), None),
    }
    place = next((cell for p, cell in LOCATION.items() if p in text.lower()), None)
    return [
        k
        for k, o in enumerate(objects)
        if all(v is None or o[key] == v for key, v in wanted.items())
        and (place is None or _cell(o["box"]) == place)
    ]


def phrases(root: Path, image_id: int) -> list[list[tuple[int, str]]]:
    """(chain id, text) of each phrase, caption by caption."""
    lines = (root / "Sentences" / f"{image_id}.txt").read_text(encoding="utf-8").splitlines()
    return [[(int(m[1]), m[2]) for m in PHRASE.finditer(line)] for line in lines]


def grounding_ceilings(root: Path, ids: list[int], world: dict) -> dict[str, float]:
    words = phrase_hits = word_hits = floor = uniform = 0.0
    for image_id in ids:
        scene = world[image_id]
        objects, chains = scene["objects"], {c["chain_id"]: c for c in scene["chains"]}
        for caption in phrases(root, image_id):
            for chain_id, text in caption:
                chain = chains.get(chain_id)
                if chain is None or chain["kind"] not in ("object", "group"):
                    continue  # scenes, backgrounds: no box to ground to
                target = set(chain["objects"])
                fit = fitting(text, objects)
                n = len(text.split())
                words += n
                phrase_hits += n * len(target & set(fit)) / max(len(fit), 1)
                floor += n * math.log(max(len(fit), 1))
                uniform += n * math.log(len(objects) + 1)  # r0 is a region too
                for word in text.split():  # a place takes several words: alone, none is one
                    alone = fitting(word, objects)
                    word_hits += len(target & set(alone)) / max(len(alone), 1)
    return {
        "phrase_reader": phrase_hits / words,
        "word_reader": word_hits / words,
        "phrase_reader_loss": floor / words,
        "uniform_loss": uniform / words,
        "words": int(words),
    }


def _true_of(caption: list[tuple[int, str]], scene: dict) -> bool:
    objects = scene["objects"]
    for _, text in caption:
        lower = text.lower()
        if "background" in lower or "backdrop" in lower:
            if ("dark" in lower) != (scene["background"] == "dark"):
                return False
            continue
        count = next((NUMBER[w] for w in lower.split() if w in NUMBER), None)
        fit = fitting(text, objects)
        if (count is not None and len(fit) != count) or not fit:
            return False
    return True


def identification_ceilings(root: Path, split: str, ids: list[int], world: dict) -> dict:
    with FeatureStore(root / "features" / f"{split}.h5") as store:
        whole = np.stack([store.features(i, np.array([0]))[0] for i in ids])
    whole /= np.linalg.norm(whole, axis=1, keepdims=True).clip(1e-8)
    similarity = whole @ whole.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(1)
    rng = np.random.default_rng(0)
    shifted = (np.arange(len(ids)) + rng.integers(1, len(ids), len(ids))) % len(ids)
    out = {}
    for name, others in (("hard", nearest), ("random", shifted)):
        false = total = 0
        for k, image_id in enumerate(ids):
            for caption in phrases(root, ids[others[k]]):
                total += 1
                false += not _true_of(caption, world[image_id])
        out[f"{name}_negatives_detectably_false"] = false / total
    true = sum(_true_of(c, world[i]) for i in ids for c in phrases(root, i))
    out["true_captions_read_true"] = true / (5 * len(ids))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/scenes", type=Path)
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    lines = (args.data / "world.jsonl").read_text(encoding="utf-8").splitlines()
    world = {s["image_id"]: s for s in map(json.loads, lines)}
    ids = [int(i) for i in (args.data / f"{args.split}.txt").read_text().split()]
    grounding = grounding_ceilings(args.data, ids, world)
    identification = identification_ceilings(args.data, args.split, ids, world)
    print(f"{args.split}: {len(ids)} images, {grounding['words']} grounded words")
    print(
        f"attention grounding, ideal reader of the phrase: {grounding['phrase_reader']:.3f} "
        f"(cross-entropy floor {grounding['phrase_reader_loss']:.3f}; uniform "
        f"{grounding['uniform_loss']:.3f}); of the word alone: {grounding['word_reader']:.3f}"
    )
    print(
        "identification: negatives a reader can tell false: "
        f"{identification['hard_negatives_detectably_false']:.3f} (nearest image), "
        f"{identification['random_negatives_detectably_false']:.3f} (random image); "
        f"true captions read true: {identification['true_captions_read_true']:.3f}"
    )


if __name__ == "__main__":
    main()
