"""A full training step of the MiniLM-sized encoder, per supervision method.

    .venv/bin/python benchmarks/step.py [--batch 32] [--repeats 5] [--device cuda --bf16]

Prints, measured side by side in one run: seconds per step (forward, all
losses, backward, AdamW) for none / direct (cheap path) / semi-direct, the
none step with knowledge distillation (frozen teacher forward, MLM KL over
every text position, MRC KL over the regions, hidden MSE) and with EWC
(penalty over every encoder parameter) as ratios to the plain none step, the
same supervised step done with ``transformers.VisualBertModel`` and
``output_attentions=True``, the achieved FLOP/s of the "none" step as a
fraction of this machine's measured matmul throughput, and peak memory
(on CPU: the tensors autograd saves for backward).
Targets: direct ≤ +10 %, semi-direct ≤ +25 % over none; ours not slower
than VisualBERT; none ≥ 60 % of matmul throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import copy

import torch
import torch.nn.functional as F
from common import interleaved, matmul_flops, peak_memory_mb, table
from torch import nn
from transformers import VisualBertConfig, VisualBertModel

from groundattn.model import VLEncoder, pack, preset
from groundattn.supervision import (
    direct_loss,
    direct_loss_from_logits,
    semi_direct_loss,
    supervised_rows,
)
from groundattn.tasks.pretrain import PretrainTask
from groundattn.tasks.vgp.regularizers import DistillSpec, EWCAnchor, Regularizers

VARIANTS = ["none", "direct", "semi-direct", "visualbert-direct", "none+kd", "none+ewc"]
REGION_CLASSES = 80  # the teacher's MRC head (COCO's categories)


def make_inputs(B: int, F_dim: int, g: torch.Generator):
    """About 40 text tokens and 24 regions per sample, mixed lengths, 3 grounded phrases each."""
    T = torch.randint(34, 47, (B,), generator=g).tolist()
    R = torch.randint(20, 29, (B,), generator=g).tolist()
    tokens = [[101, *torch.randint(1000, 20000, (t - 2,), generator=g).tolist(), 102] for t in T]
    segments = [[0] * (t // 2) + [1] * (t - t // 2) for t in T]
    features = [torch.randn(r, F_dim, generator=g) for r in R]
    xy = [torch.rand(r, 2, generator=g) * 0.5 for r in R]
    boxes = [torch.cat([a, a + 0.3], -1) for a in xy]
    batch = pack(tokens, segments, features, boxes)
    # Grounding in sequence positions: phrase tokens 2-4, 10-12, 20-21 → regions 1, 3, 5 (+ a second box).
    N = batch.input_ids.shape[1]
    grounding = torch.zeros(B, N, N, dtype=torch.bool)
    text_len = torch.tensor(T)
    for (lo, hi), regs in (((2, 5), (1,)), ((10, 13), (3, 4)), ((20, 22), (5,))):
        for k in regs:
            grounding[:, lo:hi, :][torch.arange(B), :, text_len + k] = True
    return batch, grounding, T, R


class Step:
    """One optimizer step of our encoder with the chosen supervision."""

    def __init__(
        self,
        method: str,
        model: nn.Module,
        batch,
        grounding,
        device,
        autocast,
        regularizers: Regularizers | None = None,
    ):
        self.method, self.model, self.autocast = method, model, autocast
        self.regularizers = regularizers
        self.batch, self.grounding = batch.to(device), grounding.to(device)
        self.head = nn.Linear(model.config.hidden_size, 3).to(device)
        self.labels = torch.randint(0, 3, (len(batch),), device=device)
        self.opt = torch.optim.AdamW(
            [*model.parameters(), *self.head.parameters()], lr=1e-5, fused=True
        )
        self.rows, self.row_mask = supervised_rows(self.grounding)

    def __call__(self) -> None:
        b, g = self.batch, self.grounding
        with self.autocast():
            if self.method == "direct":
                out = self.model(b, attention_rows=self.rows)
            else:
                out = self.model(b, output_attentions=self.method == "semi-direct")
            loss = F.cross_entropy(self.head(out.last_hidden_state[:, 0]), self.labels)
            if self.method == "direct":
                att = direct_loss_from_logits(
                    out.attention.row_logits.float(),
                    self.rows,
                    self.row_mask,
                    g,
                    b.text_mask,
                    b.region_mask,
                )
                loss = loss + att.total
            elif self.method == "semi-direct":
                loss = (
                    loss
                    + semi_direct_loss(
                        out.attention.probs.float(), g, b.text_mask, b.region_mask, b.valid_mask
                    ).total
                )
            if self.regularizers is not None:
                for part in self.regularizers(self.model, b, out).values():
                    loss = loss + part.weight * part.mean
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


class VisualBertStep:
    """The same supervised step as a user of transformers would write it."""

    def __init__(self, config, batch, grounding, T, R, device, autocast):
        self.autocast = autocast
        vb_config = VisualBertConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            visual_embedding_dim=config.visual_feature_dim,
        )
        self.model = VisualBertModel(vb_config, add_pooling_layer=False).to(device)
        B, T_max, R_max = len(batch), max(T), max(R)
        t_mask = torch.arange(T_max)[None] < torch.tensor(T)[:, None]
        r_mask = torch.arange(R_max)[None] < torch.tensor(R)[:, None]
        self.inputs = dict(
            input_ids=batch.input_ids[:, :T_max].masked_fill(~t_mask, 0).to(device),
            attention_mask=t_mask.long().to(device),
            visual_embeds=batch.region_features.to(device),
            visual_attention_mask=r_mask.long().to(device),
            output_attentions=True,
        )
        # Their layout: text padded to T_max, then regions.
        N = T_max + R_max
        self.text_mask = torch.cat([t_mask, torch.zeros(B, R_max, dtype=torch.bool)], 1).to(device)
        self.region_mask = torch.cat([torch.zeros(B, T_max, dtype=torch.bool), r_mask], 1).to(
            device
        )
        ours = batch.region_positions()  # (B, R) our positions of region slots
        g = torch.zeros(B, N, N, dtype=torch.bool)
        gi = grounding.nonzero()  # (M, 3): b, i, j in our layout
        slot = gi[:, 2] - batch.text_lengths[gi[:, 0]]
        g[gi[:, 0], gi[:, 1], T_max + slot] = True
        assert ours.shape[1] == R_max
        self.grounding = g.to(device)
        self.head = nn.Linear(config.hidden_size, 3).to(device)
        self.labels = torch.randint(0, 3, (B,), device=device)
        self.opt = torch.optim.AdamW(
            [*self.model.parameters(), *self.head.parameters()], lr=1e-5, fused=True
        )

    def __call__(self) -> None:
        with self.autocast():
            out = self.model(**self.inputs)
            attn = torch.stack(out.attentions, 1).float()  # (B, L, H, N, N)
            loss = F.cross_entropy(self.head(out.last_hidden_state[:, 0]), self.labels)
            loss = loss + direct_loss(attn, self.grounding, self.text_mask, self.region_mask).total
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def build(args, variant: str | None = None):
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = preset("minilm", visual_feature_dim=2048)
    g = torch.Generator().manual_seed(0)
    batch, grounding, T, R = make_inputs(args.batch, config.visual_feature_dim, g)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if args.bf16
        else contextlib.nullcontext
    )
    steps = {}
    for name in [variant] if variant else VARIANTS:
        if name == "visualbert-direct":
            steps[name] = VisualBertStep(config, batch, grounding, T, R, device, autocast)
        elif name in ("none+kd", "none+ewc"):
            model = VLEncoder(config).to(device)
            steps[name] = Step(
                "none", model, batch, grounding, device, autocast, regularizers(name, model)
            )
        else:
            steps[name] = Step(
                name, VLEncoder(config).to(device), batch, grounding, device, autocast
            )
    return config, batch, steps


def regularizers(name: str, model: VLEncoder) -> Regularizers:
    """KD from a frozen copy with every term on, or EWC with a random Fisher at a copy."""
    if name == "none+kd":
        teacher = PretrainTask(copy.deepcopy(model), REGION_CLASSES).to(model_device(model))
        return Regularizers(teacher, DistillSpec(1.0, 2.0, 1.0, 2.0, 1.0, "mse"))
    named = dict(model.named_parameters())
    return Regularizers(
        ewc=EWCAnchor(
            {n: p.detach().clone() for n, p in named.items()},
            {n: torch.rand_like(p) for n, p in named.items()},
            1.0,
        )
    )


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def saved_for_backward_mb(step) -> float:
    """Activation memory of one step on CPU: the distinct tensors autograd keeps for backward.

    (A CPU process's peak RSS hides it: the allocator keeps freed memory.)
    """
    saved: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())] = (
            t.untyped_storage().nbytes()
        )
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(saved.values()) / 2**20


def step_flops(config, batch) -> float:
    """Matmul FLOPs of one training step (forward × 3), padding included as computed."""
    B, N = batch.input_ids.shape
    D, I, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    R = batch.region_features.shape[1]
    per_layer = 2 * B * N * (4 * D * D + 2 * D * I) + 4 * B * N * N * D
    visual = 2 * B * R * config.visual_feature_dim * D
    return 3 * (L * per_layer + visual)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    args = parser.parse_args()
    device = torch.device(args.device)

    config, batch, steps = build(args)
    times = interleaved(steps, args.repeats, device, warmup=1)
    peak = {
        name: (
            peak_memory_mb(steps[name], device)
            if device.type == "cuda"
            else saved_for_backward_mb(steps[name])
        )
        for name in VARIANTS
    }
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak_flops = matmul_flops(device, dtype)
    achieved = step_flops(config, batch) / times["none"]

    B, N = batch.input_ids.shape
    print(
        f"MiniLM-sized encoder (D={config.hidden_size}, L={config.num_hidden_layers}, H={config.num_attention_heads}), "
        f"batch {B}, N={N} (text {int(batch.text_lengths.min())}-{int(batch.text_lengths.max())}, "
        f"regions {int(batch.region_valid.sum(1).min())}-{int(batch.region_valid.sum(1).max())}), "
        f"device {device}, {'bf16 autocast' if args.bf16 else 'fp32'}"
    )
    rows = []
    for name in VARIANTS:
        ratio = times[name] / times["none"]
        rows.append(
            [
                name,
                f"{times[name] * 1e3:.0f}",
                f"{ratio:.2f}",
                f"{args.batch / times[name]:.1f}",
                f"{peak[name]:.0f}",
            ]
        )
    memory = "peak MB (CUDA, above weights)" if device.type == "cuda" else "saved for backward MB"
    print(table(rows, ["step", "ms/step", "x none", "samples/s", memory]))
    print(
        f"direct adds {100 * (times['direct'] / times['none'] - 1):+.1f} % to none (target <= +10 %)"
    )
    print(
        f"semi-direct adds {100 * (times['semi-direct'] / times['none'] - 1):+.1f} % to none (target <= +25 %)"
    )
    for name, what in (("none+kd", "knowledge distillation"), ("none+ewc", "EWC")):
        print(
            f"{what} adds {100 * (times[name] / times['none'] - 1):+.1f} % to none "
            f"(x {times[name] / times['none']:.2f} a plain step)"
        )
    print(
        f"VisualBERT + output_attentions / ours (direct): {times['visualbert-direct'] / times['direct']:.2f} (target >= 1)"
    )
    print(
        f"none step: {achieved / 1e9:.1f} GFLOP/s = {100 * achieved / peak_flops:.0f} % of measured matmul "
        f"{peak_flops / 1e9:.1f} GFLOP/s (target >= 60 %)"
    )


if __name__ == "__main__":
    main()
