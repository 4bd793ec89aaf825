"""What a fresh attention head could ground, layer by layer, beside what the model's own heads do.

    .venv/bin/python benchmarks/grounding_probe.py --model runs/vgp-long/vgp/direct/seed-0/model

For each layer l, a bilinear probe — a new attention head: query and key
projections of the model's head size, applied to the states that enter layer
l — is trained on ``--train`` training samples to make each grounded word's
attention over its sample's regions (``r0`` included) pick its grounded
region, with direct supervision's text → image loss (cross-entropy to the
uniform distribution over the grounded regions). Its attention grounding
accuracy on ``--val`` validation samples is printed beside the accuracy of
the model's own heads of that layer (mean and best) on the same samples.

A probe far above the heads says the states carry the phrase's grounding and
the heads have not learned to read it; a probe at the heads' level says the
states themselves hold no more.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from groundattn.eval.saved import load_run
from groundattn.model import load_tokenizer
from groundattn.supervision import grounding_hits
from groundattn.supervision.rows import compact_positions


class Words(NamedTuple):
    """Every grounded word of a split with its sample's regions, at every layer's input."""

    words: Tensor  # (T, L, D): the word's state entering each layer
    regions: Tensor  # (S, L, R, D): each sample's region states (r0 first), zero-padded
    region_valid: Tensor  # (S, R) bool
    target: Tensor  # (T, R) bool: the word's grounded regions
    sample: Tensor  # (T,) long: the word's sample


def _at(states: Tensor, positions: Tensor) -> Tensor:
    """(B, L, K, D) states at (B, K) positions of (B, L, N, D) states."""
    B, L, _, D = states.shape
    return states.gather(2, positions[:, None, :, None].expand(B, L, positions.shape[1], D))


def _pad(x: Tensor, size: int, dim: int) -> Tensor:
    pad = [0, 0] * (x.dim() - dim - 1) + [0, size - x.shape[dim]]
    return F.pad(x, pad)


@torch.no_grad()
def grounded_words(saved, split: str, samples: int, seed: int = 0) -> tuple[Words, Tensor]:
    """The grounded words of ``samples`` samples of a split, and the model's own heads'
    (L, H) grounding accuracy on them."""
    recipe, task = saved.recipe, saved.task.eval()
    dataset = recipe.eval_dataset(load_tokenizer(recipe.config.model.bert), split)
    dataset.set_epoch(0)
    chosen = np.random.default_rng(seed).permutation(len(dataset))[:samples]
    parts, hits, count = [], 0, 0
    for batch in DataLoader(Subset(dataset, chosen), batch_size=32, collate_fn=recipe.collate):
        out = task.encoder(batch.inputs, output_attentions=True, output_hidden_states=True)
        batch_hits, batch_count = grounding_hits(
            out.attention.probs.float(), batch.grounding, out.region_mask
        )
        hits, count = hits + batch_hits, count + batch_count
        states = torch.stack(out.hidden_states[:-1], 1)  # (B, L, N, D): each layer's input
        rows, row_valid = compact_positions(batch.grounding.any(-1))  # (B, Q)
        regions, region_valid = compact_positions(out.region_mask)  # (B, R)
        target = batch.grounding.gather(1, rows[..., None].expand(-1, -1, states.shape[2]))
        target = target.gather(2, regions[:, None].expand(-1, rows.shape[1], -1))  # (B, Q, R)
        keep = row_valid.any(-1)  # samples with a grounded word
        parts.append(
            (
                _at(states, rows)[keep],  # (B', L, Q, D)
                _at(states, regions)[keep],  # (B', L, R, D)
                region_valid[keep],
                target[keep] & region_valid[keep, None],
                row_valid[keep],
            )
        )
    width = max(p[1].shape[2] for p in parts)
    words, region_states, valid, targets, sample = [], [], [], [], []
    offset = 0
    for word_states, regions, region_valid, target, row_valid in parts:
        words.append(word_states.transpose(1, 2)[row_valid])  # (T', L, D)
        region_states.append(_pad(regions, width, 2))
        valid.append(_pad(region_valid, width, 1))
        targets.append(_pad(target, width, 2)[row_valid])
        owner = torch.arange(len(row_valid))[:, None].expand_as(row_valid)
        sample.append(owner[row_valid] + offset)
        offset += len(row_valid)
    grounded = Words(
        torch.cat(words),
        torch.cat(region_states),
        torch.cat(valid),
        torch.cat(targets),
        torch.cat(sample),
    )
    return grounded, hits.double() / count


class Head(torch.nn.Module):
    """A new attention head: query and key projections, scores over a word's regions."""

    def __init__(self, hidden: int, size: int):
        super().__init__()
        self.query = torch.nn.Linear(hidden, size)
        self.key = torch.nn.Linear(hidden, size)
        self.scale = size**-0.5

    def forward(self, data: Words, layer: int, at: Tensor) -> Tensor:
        q = self.query(data.words[at, layer])  # (T, d)
        k = self.key(data.regions[data.sample[at], layer])  # (T, R, d)
        scores = (k @ q[..., None])[..., 0] * self.scale  # (T, R)
        return scores.masked_fill(~data.region_valid[data.sample[at]], float("-inf"))


def probe_accuracy(
    train: Words, val: Words, layer: int, size: int, steps: int, seed: int = 0
) -> float:
    """Val grounding accuracy of a head trained on ``train`` at ``layer``."""
    torch.manual_seed(seed)
    head = Head(train.words.shape[-1], size)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=0.01)
    for _ in range(steps):
        at = torch.randint(len(train.words), (2048,))
        log_p = head(train, layer, at).log_softmax(-1)
        target = train.target[at].float()
        loss = -(log_p.masked_fill(target == 0, 0) * target).sum(-1) / target.sum(-1)
        optimizer.zero_grad()
        loss.mean().backward()
        optimizer.step()
    with torch.no_grad():
        chosen = head(val, layer, torch.arange(len(val.words))).argmax(-1, keepdim=True)
        return float(val.target.gather(1, chosen).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a VGP run's model/ directory")
    parser.add_argument("--train", type=int, default=1500, help="training samples for the probes")
    parser.add_argument(
        "--val", type=int, default=500, help="validation samples they are scored on"
    )
    parser.add_argument("--steps", type=int, default=1000, help="probe steps of 2,048 words")
    args = parser.parse_args()
    saved = load_run(args.model, task="vgp")
    data = saved.recipe.config.data
    train, _ = grounded_words(saved, data.train_split, args.train)
    val, heads = grounded_words(saved, data.val_split, args.val)
    uniform = (val.target.sum(-1) / val.region_valid[val.sample].sum(-1)).mean()
    size = saved.task.encoder.config.hidden_size // saved.task.encoder.config.num_attention_heads
    print(
        f"{len(train.words)} training and {len(val.words)} validation words; "
        f"uniform attention {uniform:.3f}; probe: one head of size {size}, {args.steps} steps"
    )
    print("layer  heads mean  heads best  probe")
    for layer in range(val.words.shape[1]):
        probe = probe_accuracy(train, val, layer, size, args.steps)
        print(
            f"{layer + 1:>5}  {heads[layer].mean():10.3f}  {heads[layer].max():10.3f}  {probe:5.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
