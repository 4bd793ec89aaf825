"""Files that gather every image: refer files, the store's row maps, ``world.jsonl``.

``world.jsonl`` holds, one image per line, the structured truth the files were
written from: objects (shape, colour, size, rgb, box, ann_id, chain ids),
chains, phrases with the attributes they state, the VGP pairs kept, the query
behind each question, the refs with their descriptions, and the detections.
"""

from __future__ import annotations

import json
from pathlib import Path

from groundattn.data.scenes.build import ImageResult
from groundattn.data.scenes.entities import object_chains
from groundattn.data.scenes.refer import category_id, refer_split, write_refer, xywh
from groundattn.data.scenes.vgp import LabelledPair

ANN_STRIDE = 10


def ann_id(image_id: int, object_index: int) -> int:
    """The COCO annotation id of an object."""
    return ANN_STRIDE * image_id + object_index


def ref_dicts(r: ImageResult, next_ref: int, next_sent: int) -> list[dict]:
    """The refer-format refs of one image, numbered from ``next_ref`` / ``next_sent``."""
    image_id, refs = r.job.image_id, []
    for referent in r.referents:
        sentences = []
        for raw in referent.expressions:
            sent = raw.lower()
            sentences.append(
                {"sent_id": next_sent, "sent": sent, "raw": raw, "tokens": sent.split()}
            )
            next_sent += 1
        refs.append(
            {
                "ref_id": next_ref,
                "ann_id": ann_id(image_id, referent.object_index),
                "image_id": image_id,
                "split": refer_split(r.job.split, r.scene),
                "category_id": category_id(r.scene.objects[referent.object_index].shape),
                "sent_ids": [s["sent_id"] for s in sentences],
                "sentences": sentences,
                "file_name": f"{image_id}_{next_ref}.jpg",  # as refer: the image file is in instances
            }
        )
        next_ref += 1
    return refs


def image_record(r: ImageResult, pairs: list[LabelledPair], refs: list[dict]) -> dict:
    """One line of ``world.jsonl``."""
    scene, image_id = r.scene, r.job.image_id
    chains = object_chains(r.captions, len(scene.objects))
    objects = [
        {
            "shape": o.shape,
            "colour": o.colour,
            "size": o.size,
            "rgb": list(o.rgb),
            "box": list(o.box),
        }
        | {"ann_id": ann_id(image_id, k), "chain_ids": chains[k]}
        for k, o in enumerate(scene.objects)
    ]
    phrases = [
        {"caption": p.caption, "chain_id": p.chain_id, "types": list(p.types), "text": p.text}
        | {"attributes": p.attributes}
        for p in r.captions.phrases
    ]
    vgp = [
        {
            "chain_id": p.chain_id,
            "label": p.label,
            "phrase1": p.phrase1.text,
            "phrase2": p.phrase2.text,
        }
        | {"caption1": p.phrase1.caption, "caption2": p.phrase2.caption}
        | {"attributes1": p.phrase1.attributes, "attributes2": p.phrase2.attributes}
        for p in pairs
    ]
    questions = [
        {"question_id": q.question_id, "question": q.question, "answer": q.answer, "query": q.query}
        for q, _ in r.questions
    ]
    ref_records = [
        {"ref_id": ref["ref_id"], "ann_id": ref["ann_id"], "object_index": referent.object_index}
        | {"sentences": [s["raw"] for s in ref["sentences"]]}
        | {"descriptions": [d.to_json() for d in referent.descriptions]}
        for ref, referent in zip(refs, r.referents, strict=True)
    ]
    return {
        "image_id": image_id,
        "split": r.job.split,
        "refer_split": refer_split(r.job.split, scene),
        "width": scene.width,
        "height": scene.height,
        "background": scene.background,
        "objects": objects,
        "chains": [
            {"chain_id": c.chain_id, "kind": c.kind, "objects": list(c.objects)}
            for c in r.captions.chains
        ],
        "phrases": phrases,
        "vgp": vgp,
        "questions": questions,
        "refs": ref_records,
        "detections": r.detections,
    }


def write_refer_and_world(
    root: Path, results: list[ImageResult], kept: list[LabelledPair]
) -> list[dict]:
    """Writes ``refcoco+/`` and ``world.jsonl``; returns the refs."""
    kept_by_image: dict[int, list[LabelledPair]] = {}
    for p in kept:
        kept_by_image.setdefault(p.image_id, []).append(p)
    refs, images, annotations, detections, records = [], [], [], [], []
    n_sentences = 0
    for r in results:
        image_id, scene = r.job.image_id, r.scene
        image_refs = ref_dicts(r, len(refs), n_sentences)
        refs += image_refs
        n_sentences += sum(len(ref["sentences"]) for ref in image_refs)
        images.append(
            {
                "id": image_id,
                "file_name": f"{image_id}.jpg",
                "width": scene.width,
                "height": scene.height,
            }
        )
        for k, o in enumerate(scene.objects):
            bbox = xywh(o.box)
            annotations.append(
                {
                    "id": ann_id(image_id, k),
                    "image_id": image_id,
                    "category_id": category_id(o.shape),
                }
                | {"bbox": bbox, "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0}
            )
        detections += [
            {
                "image_id": image_id,
                "box": xywh(d["box"]),
                "category_id": d["category_id"],
                "score": d["score"],
            }
            for d in r.detections
        ]
        records.append(image_record(r, kept_by_image.get(image_id, []), image_refs))
    write_refer(root / "refcoco+", refs, images, annotations, detections)
    with open(root / "world.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(record) + "\n" for record in records)
    return refs


def write_box_maps(root: Path, by_split: dict[str, list[ImageResult]]) -> None:
    """``features/<split>_boxes.json``: what each store row of each image is."""
    for split, results in by_split.items():
        maps = {}
        for r in results:
            n = len(r.scene.objects)
            chains = object_chains(r.captions, n)
            ground_truth = [
                {
                    "row": 1 + k,
                    "object_index": k,
                    "ann_id": ann_id(r.job.image_id, k),
                    "chain_ids": chains[k],
                }
                for k in range(n)
            ]
            detected = [
                {"row": 1 + n + j, "category_id": d["category_id"], "score": d["score"]}
                for j, d in enumerate(r.detections)
            ]
            maps[str(r.job.image_id)] = {
                "whole_image": 0,
                "ground_truth": ground_truth,
                "detected": detected,
            }
        (root / "features" / f"{split}_boxes.json").write_text(json.dumps(maps), encoding="utf-8")
