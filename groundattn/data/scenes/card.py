"""The data card: counts per split, as ``card.json`` and a readable ``card.md``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from groundattn.data.errors import FormatError
from groundattn.data.refcoco import SPLITS as REFER_SPLITS
from groundattn.data.scenes.build import ImageResult
from groundattn.data.scenes.vgp import LABEL_NAMES, LabelledPair
from groundattn.data.scenes.vqa import answer_type
from groundattn.data.vqa import ANSWER_TYPES

# 2: region features of 64 values (shape map at 4 × 4, 4 edge orientations; was 128).
FORMAT_VERSION = 2


def split_counts(results: list[ImageResult], pairs: list[LabelledPair]) -> dict:
    """Counts of one image split (``pairs``: the VGP pairs kept for it)."""
    chains = [c for r in results for c in r.captions.chains]
    phrases = [p for r in results for p in r.captions.phrases]
    questions = [q for r in results for q, _ in r.questions]
    vgp = Counter(p.label for p in pairs)
    vqa = Counter(answer_type(q) for q in questions)
    return {
        "images": len(results),
        "objects": sum(len(r.scene.objects) for r in results),
        "single_shape_images": sum(r.scene.single_shape for r in results),
        "captions": sum(len(r.captions.lines) for r in results),
        "phrases": len(phrases),
        "grounded_phrases": sum(p.chain_id != 0 for p in phrases),
        "notvisual_phrases": sum(p.chain_id == 0 for p in phrases),
        "chains": len(chains),
        "chains_by_kind": dict(sorted(Counter(c.kind for c in chains).items())),
        "multi_box_chains": sum(len(c.objects) > 1 for c in chains),
        "vgp_pairs": len(pairs),
        "vgp_pairs_by_label": {name: vgp[i] for i, name in enumerate(LABEL_NAMES)},
        "vqa_questions": len(questions),
        "vqa_questions_by_answer_type": {t: vqa[t] for t in ANSWER_TYPES},
        "detections": sum(len(r.detections) for r in results),
        "store_regions": sum(len(r.regions.boxes) for r in results),
    }


def refer_counts(refs: list[dict]) -> dict:
    """Refs, sentences and images per refer split."""
    return {
        split: {
            "refs": sum(r["split"] == split for r in refs),
            "sentences": sum(len(r["sentences"]) for r in refs if r["split"] == split),
            "images": len({r["image_id"] for r in refs if r["split"] == split}),
        }
        for split in REFER_SPLITS
    }


def _table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def card_markdown(card: dict) -> str:
    """A readable rendering of ``card``."""
    splits = card["splits"]
    names = list(splits)
    keys = [k for k, v in splits[names[0]].items() if not isinstance(v, dict)]
    counts = _table([[k] + [splits[s][k] for s in names] for k in keys], ["count", *names])
    vgp = _table(
        [[n] + [splits[s]["vgp_pairs_by_label"][n] for s in names] for n in LABEL_NAMES],
        ["VGP class", *names],
    )
    vqa = _table(
        [[t] + [splits[s]["vqa_questions_by_answer_type"][t] for s in names] for t in ANSWER_TYPES],
        ["VQA answer type", *names],
    )
    refer = _table(
        [[s, v["refs"], v["sentences"], v["images"]] for s, v in card["refer"].items()],
        ["refer split", "refs", "sentences", "images"],
    )
    return f"""# Grounded scenes (size `{card["size"]}`, seed {card["seed"]})

Coloured shapes on a plain background ({card["image_size"]}×{card["image_size"]} pixels),
described in the published formats of Flickr30k Entities, VGP, VQAv2 and RefCOCO+
by `groundattn.data.scenes.prepare_scenes`. Layout and conventions: the module
docstring of `groundattn.data.scenes`.

Region features: {card["feature_dim"]} values per box (`groundattn.data.extractor`);
store rows per image: whole image, ground-truth objects (XML order), detections.

{counts}

{vgp}

{vqa}

testA: test images whose objects all share one shape; testB: the other test images.

{refer}
"""


def write_card(root: Path, card: dict) -> None:
    """Writes ``card.json`` and ``card.md``."""
    (root / "card.md").write_text(card_markdown(card), encoding="utf-8")
    (root / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")


def check_current(root: Path) -> None:
    """Refuses a grounded-scenes set that an older groundattn wrote (its ``card.json`` has
    another ``format_version``): its features are not what this version trains on.
    A directory without such a card (a real data set) passes."""
    card_path = Path(root) / "card.json"
    if not card_path.is_file():
        return
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if card.get("name") == "grounded-scenes" and card.get("format_version") != FORMAT_VERSION:
        raise FormatError(
            card_path,
            f"grounded scenes of format {card.get('format_version')}, this groundattn trains on "
            f"format {FORMAT_VERSION}; rewrite them with "
            f"`groundattn prepare scenes --out {root} --overwrite`",
            field="format_version",
        )
