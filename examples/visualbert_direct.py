"""Direct or semi-direct attention supervision of a Hugging Face VisualBERT, on a toy task.

    PYTHONPATH=. python examples/visualbert_direct.py [--steps 60] [--seed 0]
        [--supervision direct|semi-direct]

A tiny ``VisualBertModel`` (random weights, no download) learns a matching task:
does every object word of the text have its object among the regions? Each
region's feature is its object's prototype plus noise, and each object word is
grounded to the region of its object. The same model is trained twice from the
same weights, on the same batches: with the task loss alone, and with the task
loss plus the direct (METHOD §4) or semi-direct (§5) attention loss through
:class:`~groundattn.adapters.VisualBertAdapter`. It prints the attention
grounding accuracy (METHOD §8) on held-out batches, mean over layers and heads
and mean over the layers' rollout, before and after training, with its chance
level and the matching-task accuracy.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import VisualBertConfig, VisualBertModel

from groundattn.adapters import GroundedSequence, VisualBertAdapter
from groundattn.supervision import (
    direct_loss,
    grounding_chance,
    grounding_hits,
    rollout,
    semi_direct_loss,
)

PAD, CLS, SEP = 0, 1, 2
FILLERS = 6  # filler words 3 … 8, grounded to nothing
OBJECTS = 8  # object words 9 … 16, object k grounded to the region showing k
FIRST_OBJECT = 3 + FILLERS
FEATURE_SIZE = 16
DATA_SEED = 1000
SUPERVISIONS = ("direct", "semi-direct")


@dataclass
class ToyBatch:
    inputs: dict[str, Tensor]  # VisualBertModel's keyword inputs
    pairs: list[list[tuple[int, int]]]  # per sample, (text index, region index)
    labels: Tensor  # (B,) long: 1 when every object word has its region


def toy_batch(size: int, prototypes: Tensor, generator: torch.Generator) -> ToyBatch:
    """A padded batch of 2–5 regions and 1–5 object words (plus fillers) per sample."""

    def randint(low: int, high: int) -> int:  # high included
        return int(torch.randint(low, high + 1, (), generator=generator))

    texts, features, pairs, labels = [], [], [], []
    for _ in range(size):
        R = randint(2, 5)
        objects = torch.randperm(OBJECTS, generator=generator)[:R].tolist()
        # Region r shows objects[r]; the text names some of them, among filler words.
        mentioned = [objects[i] for i in torch.randperm(R, generator=generator)[: randint(1, R)]]
        fillers = [3 + randint(0, FILLERS - 1) for _ in range(randint(0, 3))]
        words = [FIRST_OBJECT + k for k in mentioned] + fillers
        words = [words[i] for i in torch.randperm(len(words), generator=generator)]
        match = randint(0, 1) == 1
        if not match:  # object words name missing objects (all, or at least 3 of 5)
            absent = [k for k in range(OBJECTS) if k not in objects]
            order = torch.randperm(len(absent), generator=generator).tolist()
            renamings = zip(mentioned, order, strict=False)  # as many as there are absent objects
            renamed = {FIRST_OBJECT + k: FIRST_OBJECT + absent[o] for k, o in renamings}
            words = [renamed.get(w, w) for w in words]
        tokens = [CLS, *words, SEP]
        texts.append(tokens)
        noise = 0.3 * torch.randn(R, FEATURE_SIZE, generator=generator)
        features.append(prototypes[objects] + noise)  # (R_b, F)
        pairs.append(
            [
                (t, objects.index(w - FIRST_OBJECT))
                for t, w in enumerate(tokens)
                if w >= FIRST_OBJECT and w - FIRST_OBJECT in objects
            ]
        )
        labels.append(int(match))
    B, T, R = size, max(map(len, texts)), max(f.shape[0] for f in features)
    input_ids = torch.full((B, T), PAD)
    visual_embeds = torch.zeros(B, R, FEATURE_SIZE)
    for b in range(B):
        input_ids[b, : len(texts[b])] = torch.tensor(texts[b])
        visual_embeds[b, : features[b].shape[0]] = features[b]
    regions = torch.tensor([f.shape[0] for f in features])
    inputs = {
        "input_ids": input_ids,  # (B, T), right-padded: text padding sits before the regions
        "attention_mask": (input_ids != PAD).long(),
        "token_type_ids": torch.zeros(B, T, dtype=torch.long),
        "visual_embeds": visual_embeds,  # (B, R, F)
        "visual_attention_mask": (torch.arange(R) < regions[:, None]).long(),
        "visual_token_type_ids": torch.ones(B, R, dtype=torch.long),
    }
    return ToyBatch(inputs, pairs, torch.tensor(labels))


def tiny_visualbert() -> VisualBertModel:
    """2 layers, hidden 32, 2 heads; no dropout, so the attention is supervisable in training."""
    config = VisualBertConfig(
        vocab_size=FIRST_OBJECT + OBJECTS,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        visual_embedding_dim=FEATURE_SIZE,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return VisualBertModel(config)


@torch.no_grad()
def grounding_accuracy_of(model: VisualBertModel, batches: list[ToyBatch]) -> dict[str, float]:
    """Grounding accuracy, mean over (layer, head) and over the layers' rollout, and chance."""
    model.eval()
    adapter = VisualBertAdapter(model)
    hits, rollout_hits, count, chance = 0, 0, 0, 0.0
    for batch in batches:
        seq = adapter.ground(batch.inputs, batch.pairs)
        attn = adapter.attention(model(**batch.inputs, output_attentions=True))  # (B, L, H, N, N)
        batch_hits, batch_count = grounding_hits(attn, seq.grounding, seq.region_mask)
        rolled = rollout(attn, seq.valid_mask)  # (B, L, N, N)
        rollout_hits += grounding_hits(rolled, seq.grounding, seq.region_mask)[0]  # (L, 1)
        hits, count = hits + batch_hits, count + int(batch_count)  # (L, H), ()
        chance += float(grounding_chance(seq.grounding, seq.region_mask))
    model.train()
    return {
        "heads": (hits.float() / count).mean().item(),
        "rollout": (rollout_hits.float() / count).mean().item(),
        "chance": chance / count,
    }


def supervision_loss(name: str, attn: Tensor, seq: GroundedSequence) -> Tensor:
    """The direct (METHOD §4) or semi-direct (§5) loss, Eq. 8's sum of both directions."""
    if name == "direct":
        return direct_loss(attn, seq.grounding, seq.text_mask, seq.region_mask).total
    return semi_direct_loss(
        attn, seq.grounding, seq.text_mask, seq.region_mask, seq.valid_mask
    ).total


def train(
    model: VisualBertModel,
    batches: list[ToyBatch],
    *,
    supervision: str | None,
    weight: float = 1.0,
    lr: float = 3e-3,
) -> nn.Linear:
    """Task loss (+ ``weight`` × the supervision loss), Adam, one batch per step."""
    head = nn.Linear(model.config.hidden_size, 2)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=lr)
    adapter = VisualBertAdapter(model)
    model.train()
    for batch in batches:
        outputs = model(**batch.inputs, output_attentions=supervision is not None)
        loss = nn.functional.cross_entropy(head(outputs.pooler_output), batch.labels)
        if supervision is not None:
            seq = adapter.ground(batch.inputs, batch.pairs)
            attn = adapter.attention(outputs)  # (B, L, H, N, N)
            loss = loss + weight * supervision_loss(supervision, attn, seq)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return head


@torch.no_grad()
def task_accuracy_of(model: VisualBertModel, head: nn.Linear, batches: list[ToyBatch]) -> float:
    """Accuracy of the matching task."""
    model.eval()
    correct = sum(
        int((head(model(**b.inputs).pooler_output).argmax(-1) == b.labels).sum()) for b in batches
    )
    model.train()
    return correct / sum(len(b.labels) for b in batches)


def compare(
    steps: int = 60, seed: int = 0, batch_size: int = 32, supervision: str = "direct"
) -> dict[str, dict[str, float]]:
    """The same initial model before training, and after training without and with supervision.

    Returns:
        ``{"before": …, "task only": …, supervision: …}``, each with the grounding
        accuracy of the heads and of the rollout (mean over layers) and its chance
        level, on held-out batches; the trained runs also with the task accuracy.
    """
    # The data has its own seed, apart from the one that initialises the weights.
    generator = torch.Generator().manual_seed(DATA_SEED + seed)
    prototypes = torch.randn(OBJECTS, FEATURE_SIZE, generator=generator)  # (K, F)
    train_batches = [toy_batch(batch_size, prototypes, generator) for _ in range(steps)]
    test_batches = [toy_batch(64, prototypes, generator) for _ in range(2)]
    torch.manual_seed(seed)
    initial = tiny_visualbert().state_dict()
    model = tiny_visualbert()
    model.load_state_dict(initial)
    result = {"before": grounding_accuracy_of(model, test_batches)}
    for name, method in (("task only", None), (supervision, supervision)):
        model = tiny_visualbert()
        model.load_state_dict(initial)
        torch.manual_seed(seed + 1)  # the task head starts the same in both runs
        head = train(model, train_batches, supervision=method)
        result[name] = grounding_accuracy_of(model, test_batches)
        result[name]["task"] = task_accuracy_of(model, head, test_batches)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps of each run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the weights")
    parser.add_argument(
        "--supervision", choices=SUPERVISIONS, default="direct", help="the attention loss"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: one thread is the fastest on CPU
    result = compare(steps=args.steps, seed=args.seed, supervision=args.supervision)
    print(
        f"grounding accuracy on held-out batches (chance {result['before']['chance']:.3f}); "
        "matching-task accuracy (chance 0.5)"
    )
    print(f"{'':28} {'heads':>6} {'rollout':>8} {'task':>6}")
    for name, row in result.items():
        label = name if name == "before" else f"{args.steps} steps, {name}"
        task = f"{row['task']:6.3f}" if "task" in row else f"{'':6}"
        print(f"{label:28} {row['heads']:6.3f} {row['rollout']:8.3f} {task}")


if __name__ == "__main__":
    main()
