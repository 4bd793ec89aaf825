"""Supervision losses: vectorised against a per-sample Python loop, forward + backward.

    .venv/bin/python benchmarks/losses.py [--batch 64] [--repeats 5] [--device cpu]

Batch 64, 6 layers × 12 heads, ~65 tokens with mixed text lengths and region
counts; target: every vectorised loss ≥ 3× faster than its loop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

# The loop peers and the batch builders live with the supervision tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "supervision"))
from batches import random_attention, random_grounding, seamless_layout  # noqa: E402
from common import interleaved, table  # noqa: E402
from loop_reference import (  # noqa: E402
    loop_direct_loss,
    loop_indirect_loss,
    loop_reference_direct_loss,
    loop_semi_direct_loss,
)

from groundattn.supervision import (  # noqa: E402
    IndirectGroundingClassifier,
    direct_loss,
    indirect_loss,
    semi_direct_loss,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    B, L, H = args.batch, args.layers, args.heads
    text = torch.randint(25, 41, (B,), generator=g).tolist()
    regions = torch.randint(15, 26, (B,), generator=g).tolist()
    layout = seamless_layout(text, regions)
    one_box, phrase_mask = random_grounding(layout, phrases=4, max_boxes=1, generator=g)
    multi_box, _ = random_grounding(layout, phrases=4, max_boxes=2, generator=g)
    attn = random_attention(layout.valid_mask, L, H, generator=g)
    N = attn.shape[-1]
    D = 384
    hidden = torch.randn(B, N, D, generator=g)
    candidate = layout.region_mask & (layout.region_mask.cumsum(-1) > 1)
    phrase_regions = (phrase_mask[..., :, None] & one_box[:, None]).any(2)  # (B, P, N)
    classifier = IndirectGroundingClassifier(D)

    to = lambda *ts: [t.to(device) for t in ts]  # noqa: E731
    attn, one_box, multi_box, hidden, phrase_mask, phrase_regions, candidate = to(
        attn, one_box, multi_box, hidden, phrase_mask, phrase_regions, candidate
    )
    tm, rm, vm = to(layout.text_mask, layout.region_mask, layout.valid_mask)
    classifier.to(device)

    def backward(make_loss, x):
        def run():
            x.grad = None
            loss = make_loss()
            (sum(loss) if isinstance(loss, tuple) else loss).backward()

        return run

    a = attn.requires_grad_()
    h = hidden.requires_grad_()
    cases = {
        "direct (paper)": (
            backward(lambda: direct_loss(a, multi_box, tm, rm).total, a),
            backward(lambda: loop_direct_loss(a, multi_box, tm, rm), a),
        ),
        "direct (reference)": (
            backward(lambda: direct_loss(a, one_box, tm, rm, variant="reference").total, a),
            backward(lambda: loop_reference_direct_loss(a, one_box, tm, rm), a),
        ),
        "semi-direct": (
            backward(lambda: semi_direct_loss(a, multi_box, tm, rm, vm).total, a),
            backward(lambda: loop_semi_direct_loss(a, multi_box, tm, rm, vm), a),
        ),
        "indirect": (
            backward(
                lambda: indirect_loss(h, phrase_mask, phrase_regions, candidate, classifier).total,
                h,
            ),
            backward(
                lambda: loop_indirect_loss(h, phrase_mask, phrase_regions, candidate, classifier), h
            ),
        ),
    }
    print(
        f"B={B} L={L} H={H} N={N} (text {min(text)}-{max(text)}, regions {min(regions)}-{max(regions)}), device {device}"
    )
    rows = []
    for name, (fast, loop) in cases.items():
        t = interleaved({"fast": fast, "loop": loop}, args.repeats, device, warmup=1)
        rows.append(
            [
                name,
                f"{t['fast'] * 1e3:.1f}",
                f"{t['loop'] * 1e3:.1f}",
                f"{t['loop'] / t['fast']:.1f}x",
            ]
        )
    print(table(rows, ["loss (fwd+bwd)", "vectorised ms", "loop ms", "speed-up (target >= 3x)"]))


if __name__ == "__main__":
    main()
