"""Bottom-up features at data-set size: conversion rate, memory, store size and loader speed.

    .venv/bin/python benchmarks/features.py [--images 1000] [--boxes 36] [--dim 2048] [--dir DIR]

Writes a synthetic bottom-up-attention TSV of realistic shape (``--images``
images × ``--boxes`` boxes × ``--dim`` float32 features, base64, as LXMERT and
VL-BERT ship them) and one twice as long, then prints, measured side by side:

- **conversion**: MB/s of ``groundattn prepare bottomup`` (1 and 2 workers)
  against reading and base64-decoding the same file alone (target ≥ 50 %);
- **memory**: peak resident memory of each conversion, in its own process, at
  both sizes (target: the same at both);
- **store size**: on disk with float16 features, against the TSV and raw float32;
- **loader**: random-access samples/s of the VQA loader (``VQADataset`` +
  ``collate_vqa``, batch 32, shuffled) over the store with 0, 1 and 2 workers,
  against the ≈ 1,000 samples/s a base-size training step consumes on a GPU
  (target ≥ 2×).

The files go to a temporary folder (``--dir`` keeps them); nothing else is
written. On 2 shared cores expect a few minutes at the default size.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_SAMPLES_PER_S = 1000.0  # a base-size training step's consumption on one GPU
QUESTIONS_PER_IMAGE = 4


def _base64(array: np.ndarray) -> str:
    return base64.b64encode(array.astype(np.float32).tobytes()).decode()


def write_tsv(path: Path, images: int, boxes: int, dim: int, seed: int = 0) -> None:
    """A bottom-up TSV: ids from 1, 640 × 480 images, boxes inside, ReLU-like features."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="ascii") as f:
        for image_id in range(1, images + 1):
            corners = rng.uniform(0, [640, 480, 640, 480], size=(boxes, 4))
            low = np.minimum(corners[:, :2], corners[:, 2:])
            high = np.maximum(corners[:, :2], corners[:, 2:])
            box = np.concatenate([low, high], axis=1)  # (boxes, 4) x1 y1 x2 y2
            features = np.maximum(rng.standard_normal((boxes, dim), dtype=np.float32), 0)
            f.write(f"{image_id}\t640\t480\t{boxes}\t{_base64(box)}\t{_base64(features)}\n")


def read_and_decode(path: Path) -> float:
    """Seconds to read every line and base64-decode its boxes and features."""
    start = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            fields = line.rstrip(b"\n").split(b"\t")
            np.frombuffer(base64.b64decode(fields[4]), dtype="<f4")
            np.frombuffer(base64.b64decode(fields[5]), dtype="<f4")
    return time.perf_counter() - start


CONVERT = """
import json, resource, sys, time
from groundattn.data.bottomup import tsv_to_store
start = time.perf_counter()
n = tsv_to_store(sys.argv[1], sys.argv[2], workers=int(sys.argv[3]))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"images": n, "seconds": seconds, "peak_mib": peak, "worker_peak_mib": children}))
"""


def convert(tsv: Path, store: Path, workers: int) -> dict:
    """``tsv_to_store`` in a fresh process: its time and peak resident memory."""
    done = subprocess.run(
        [sys.executable, "-c", CONVERT, str(tsv), str(store), str(workers)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def loader_rate(store_path: Path, workers: int, samples: int, batch: int = 32) -> float:
    """Samples/s of the VQA loader reading shuffled questions over the store."""
    import torch
    from torch.utils.data import DataLoader

    from groundattn.data.store import FeatureStore
    from groundattn.data.vqa import Annotation, Question, VQAExample
    from groundattn.model import load_tokenizer
    from groundattn.tasks.vqa import VQADataset, collate_vqa

    store = FeatureStore(store_path)
    examples = []
    for image_id in map(int, store.image_ids()):
        for k in range(QUESTIONS_PER_IMAGE):
            qid = image_id * 10 + k
            question = Question(qid, image_id, "what colour is the object on the left?")
            answers = ("red",) * 10
            annotation = Annotation(
                qid, image_id, "what color", "other", "red", answers, ("yes",) * 10
            )
            examples.append(VQAExample(question, annotation))
    dataset = VQADataset(examples, store, ["red", "blue"], load_tokenizer())
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        collate_fn=collate_vqa,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(0),
    )
    seen, start = 0, None
    for batch_ in loader:
        if start is None:  # the first batch holds the workers' start-up
            start = time.perf_counter()
            continue
        seen += len(batch_)
        if seen >= samples:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="images of the smaller TSV")
    parser.add_argument("--boxes", type=int, default=36)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=3000, help="samples read per loader setting")
    parser.add_argument(
        "--dir", type=Path, help="keep the files here (default: a temporary folder)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.dir or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        sizes = {"1x": args.images, "2x": 2 * args.images}
        tsvs = {name: folder / f"bottomup-{name}.tsv" for name in sizes}
        for name, images in sizes.items():
            if not tsvs[name].exists():
                write_tsv(tsvs[name], images, args.boxes, args.dim)
        rows = []
        for name, images in sizes.items():
            tsv = tsvs[name]
            mb = tsv.stat().st_size / 1e6
            decode = read_and_decode(tsv)
            for workers in (1, 2):
                store = folder / f"store-{name}-w{workers}.h5"
                store.unlink(missing_ok=True)
                result = convert(tsv, store, workers)
                rows.append((name, images, mb, decode, workers, result, store.stat().st_size / 1e6))
        print(
            f"synthetic bottom-up TSVs: {args.boxes} boxes × {args.dim} float32 per image "
            f"(+ r0 added by the conversion)\n"
        )
        print(
            "| TSV | images | MB | read+decode MB/s | workers | convert MB/s | ratio | peak MiB (main / workers) | store MB (float16) | raw float32 MB |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, images, mb, decode, workers, result, store_mb in rows:
            raw = images * (args.boxes + 1) * args.dim * 4 / 1e6
            rate = mb / result["seconds"]
            print(
                f"| {name} | {images} | {mb:.0f} | {mb / decode:.0f} | {workers} | {rate:.0f} | "
                f"{rate / (mb / decode):.2f} | {result['peak_mib']:.0f} / {result['worker_peak_mib']:.0f} | "
                f"{store_mb:.0f} | {raw:.0f} |"
            )
        store = folder / "store-2x-w1.h5"
        print(
            f"\nVQA loader over the 2x store ({QUESTIONS_PER_IMAGE} questions an image, batch 32, shuffled):"
        )
        print("| workers | samples/s | × the 1,000 samples/s a GPU step consumes |")
        print("|---|---|---|")
        for workers in (0, 1, 2):
            rate = loader_rate(store, workers, args.samples)
            print(f"| {workers} | {rate:.0f} | {rate / REFERENCE_SAMPLES_PER_S:.2f} |")


if __name__ == "__main__":
    main()
