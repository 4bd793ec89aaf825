"""``prepare_scenes``: generates a complete grounded-scenes data set on disk."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from groundattn.data.extractor import FEATURE_DIM
from groundattn.data.flickr30k import Flickr30kEntities
from groundattn.data.scenes.build import ImageJob, ImageResult, build_image
from groundattn.data.scenes.card import (
    FORMAT_VERSION,
    check_current,
    refer_counts,
    split_counts,
    write_card,
)
from groundattn.data.scenes.entities import write_entities, write_splits
from groundattn.data.scenes.records import write_box_maps, write_refer_and_world
from groundattn.data.scenes.vgp import LABEL_NAMES, balance, write_vgp_csv
from groundattn.data.scenes.vqa import write_vqa
from groundattn.data.scenes.world import IMAGE_SIZE
from groundattn.data.store import FeatureStoreWriter
from groundattn.errors import ExistingFileError

logger = logging.getLogger(__name__)
# Marks a directory that prepare_scenes is writing: only such a leftover is ever removed.
PARTIAL_MARKER = ".groundattn-partial"

SPLITS = Flickr30kEntities.SPLITS
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
SINGLE_SHAPE_FRACTION = 0.3
IMAGE_ID_BASE = 100001
PLAN_STREAM, VGP_STREAM = 2**32 - 1, 2**32 - 2  # never an image index


@dataclass(frozen=True)
class SizeSpec:
    """How big a data set is."""

    images: int
    questions_per_image: int


SIZES = {"small": SizeSpec(images=60, questions_per_image=5), "default": SizeSpec(3000, 5)}


def plan_images(n: int, seed: int) -> list[tuple[int, str, bool]]:
    """``(image_id, split, single_shape)`` per image index.

    Splits are drawn apart within single-shape and mixed scenes, so that every
    split holds both kinds (the test split feeds refer's testA and testB).
    """
    rng = np.random.default_rng([seed, PLAN_STREAM])
    single = rng.random(n) < SINGLE_SHAPE_FRACTION
    split = np.empty(n, dtype=object)
    for kind in (True, False):
        members = rng.permutation(np.flatnonzero(single == kind))
        n_val = max(1, round(SPLIT_FRACTIONS[1] * len(members))) if len(members) >= 3 else 0
        n_test = max(1, round(SPLIT_FRACTIONS[2] * len(members))) if len(members) >= 3 else 0
        split[members[:n_val]] = "val"
        split[members[n_val : n_val + n_test]] = "test"
        split[members[n_val + n_test :]] = "train"
    return [(IMAGE_ID_BASE + i, str(split[i]), bool(single[i])) for i in range(n)]


def _run(jobs: list[ImageJob], workers: int) -> Iterator[ImageResult]:
    if workers <= 1:
        yield from map(build_image, jobs)
        return
    # spawn, not fork: the caller may hold threads (torch, a trainer) that fork would break.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        chunk = max(1, min(32, len(jobs) // (8 * workers)))
        yield from pool.imap(build_image, jobs, chunksize=chunk)


def _generate(root: Path, size: str, seed: int, workers: int) -> dict:
    spec = SIZES[size]
    for sub in ("images", "Sentences", "Annotations", "features"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    plan = plan_images(spec.images, seed)
    jobs = [
        ImageJob(seed, i, image_id, split, single, spec.questions_per_image, str(root / "images"))
        for i, (image_id, split, single) in enumerate(plan)
    ]
    writers = {s: FeatureStoreWriter(root / "features" / f"{s}.h5", FEATURE_DIM) for s in SPLITS}
    results: list[ImageResult] = []
    try:
        for r in tqdm(_run(jobs, workers), total=len(jobs), desc="grounded scenes", disable=None):
            write_entities(root, r.job.image_id, r.scene, r.captions)
            writers[r.job.split].add(r.job.image_id, r.regions)
            results.append(r)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    by_split = {s: [r for r in results if r.job.split == s] for s in SPLITS}
    write_splits(root, {s: [r.job.image_id for r in rs] for s, rs in by_split.items()})

    vgp_rng = np.random.default_rng([seed, VGP_STREAM])
    kept = {s: balance([p for r in rs for p in r.pairs], vgp_rng) for s, rs in by_split.items()}
    for split in SPLITS:
        write_vgp_csv(root / "vgp" / f"{split}.csv", kept[split])
        write_vqa(root / "vqa", split, [qa for r in by_split[split] for qa in r.questions])

    refs = write_refer_and_world(root, results, [p for s in SPLITS for p in kept[s]])
    write_box_maps(root, by_split)

    card = {
        "name": "grounded-scenes",
        "format_version": FORMAT_VERSION,
        "size": size,
        "seed": seed,
        "image_size": IMAGE_SIZE,
        "feature_dim": FEATURE_DIM,
        "vgp_labels": list(LABEL_NAMES),
        "splits": {s: split_counts(by_split[s], kept[s]) for s in SPLITS},
        "refer": refer_counts(refs),
    }
    write_card(root, card)
    return card


def prepare_scenes(
    out_dir: str | Path,
    *,
    size: str = "default",
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes the grounded-scenes data set into ``out_dir`` and returns its path.

    The set is written into ``<out_dir>.partial`` and renamed when complete. The
    text and JSON files depend only on ``size`` and ``seed``.

    Args:
        out_dir: where the data set goes.
        size: ``"small"`` (60 images, for tests) or ``"default"`` (3,000 images).
        seed: the seed everything is drawn from.
        workers: processes; None picks 1 for small sets and every CPU otherwise. Workers
            are spawned, so a script calling this must guard its entry point with
            ``if __name__ == "__main__":``.
        overwrite: replace an existing data set (one that groundattn wrote).

    Raises:
        ValueError: for an unknown ``size``.
        ExistingFileError: ``out_dir`` exists and is not this very data set (and
            ``overwrite`` is False), or holds no data set at all; or a
            ``<out>.partial`` / ``<out>.old`` exists that groundattn did not write.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    out = Path(out_dir)
    if out.exists() and not overwrite:
        card_path = out / "card.json"
        if not card_path.is_file():
            raise ExistingFileError(
                f"{out} exists but holds no grounded-scenes set (no card.json); choose another --out"
            )
        check_current(out)  # a set an older groundattn wrote: rewritten only with overwrite
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if (card.get("size"), card.get("seed")) != (size, seed):
            raise ExistingFileError(
                f"{out} holds grounded scenes of size {card.get('size')!r}, seed {card.get('seed')} "
                f"(asked: {size!r}, {seed}); pass overwrite=True (--overwrite) to replace them"
            )
        logger.info("grounded scenes already prepared in %s (size %s, seed %d)", out, size, seed)
        return out
    if workers is None:
        workers = 1 if SIZES[size].images < 200 else os.cpu_count() or 1
    if out.exists() and not (out / "card.json").is_file():
        raise ExistingFileError(
            f"{out} exists but holds no grounded-scenes set (no card.json); "
            "overwrite replaces only a set groundattn wrote: choose another --out"
        )
    partial = out.with_name(out.name + ".partial")
    old = out.with_name(out.name + ".old")
    for leftover, written in ((partial, partial / PARTIAL_MARKER), (old, old / "card.json")):
        if leftover.exists():
            if not written.is_file():
                raise ExistingFileError(
                    f"{leftover} exists and was not written by groundattn; move it away first"
                )
            shutil.rmtree(leftover)  # an interrupted earlier run's own leftover
    partial.mkdir(parents=True)
    (partial / PARTIAL_MARKER).write_text("written by groundattn prepare scenes\n")
    start = time.perf_counter()
    logger.info(
        "preparing grounded scenes (size %s, seed %d, %d workers) in %s",
        size,
        seed,
        workers,
        partial,
    )
    try:
        card = _generate(partial, size, seed, workers)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / PARTIAL_MARKER).unlink()
    if out.exists():
        os.replace(out, old)
        os.replace(partial, out)
        shutil.rmtree(old)
    else:
        os.replace(partial, out)
    counts = card["splits"]
    logger.info(
        "grounded scenes ready in %s: %s images in %.1f s",
        out,
        "/".join(f"{counts[s]['images']} {s}" for s in SPLITS),
        time.perf_counter() - start,
    )
    return out
