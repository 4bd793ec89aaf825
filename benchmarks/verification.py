"""How fast a tiny transformer learns to compare a word with a region.

    .venv/bin/python benchmarks/verification.py [--task verification] [--width 32] [--steps 2000] [--seeds 0 1]
    .venv/bin/python benchmarks/verification.py --task identification --width 64 --steps 3000 --seeds 0

One shape of 8 colours per image, its region feature built like the tiny test worlds'
(``tests/train/worlds.py``: a one-hot colour over a large offset shared by every dimension,
a brightness shift and noise) and standardised; the whole image r0 carries no colour.
Unlimited fresh samples, batch 32, AdamW at 1e-3. Two tasks whose answer is a function of
a word and the region together, of neither alone:

- ``verification``: ``[CLS] is the shape <colour> ? [SEP]``, yes / no (half each);
- ``identification`` (METHOD §3, Eq. 1): ``[CLS] a <colour> shape . [SEP] a <colour> shape
  . [SEP]``, 0 both captions name the shape's colour (half), 1 only the first, 2 only the
  second; a caption that does not names another colour. Comparing the two captions' words
  alone reaches 0.75.

Trains, on the same stream of batches, a plain post-LN ``nn.TransformerEncoder`` (2 layers)
with r0 added to every word at the words' own scale or at
:data:`~groundattn.model.embeddings.TEXT_IMAGE_SHARE` of it, and groundattn's tiny encoder
as its preset builds it (hidden and intermediate sizes set to ``--width`` and twice it),
without dropout, and without dropout with its region scale at three times the words'.
Prints each one's validation accuracy every 250 steps and the first step at 95 %.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import Tensor, nn

from groundattn.model import VLEncoder, pack, preset
from groundattn.model.embeddings import TEXT_IMAGE_SHARE

COLOURS, FEATURE_DIM, OFFSET = 8, 16, 8.0
VOCABULARY = 30522  # BERT's word pieces, as the tiny preset
COLOUR_WORD = 2000  # word id of colour 0; colour c is 2000 + c
CLS, SEP, IS, THE, SHAPE, A, QUESTION_MARK, DOT = 101, 102, 2003, 1996, 4338, 1037, 1029, 1012
TASKS = {  # word ids (None: the colour word) and segment of each text token; classes
    "verification": ([CLS, IS, THE, SHAPE, None, QUESTION_MARK, SEP], [0] * 7, 2),
    "identification": (
        [CLS, A, None, SHAPE, DOT, SEP, A, None, SHAPE, DOT, SEP],
        [0] * 6 + [1] * 5,
        3,
    ),
}


def stream(task: str, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(n, T) word ids, (n, 2, F) features of r0 and the shape, (n,) answers."""
    template, _, _ = TASKS[task]
    colour = torch.randint(COLOURS, (n,), generator=generator)
    other = (colour + 1 + torch.randint(COLOURS - 1, (n,), generator=generator)) % COLOURS
    if task == "verification":
        answer = (torch.rand(n, generator=generator) < 0.5).long()  # 1: yes
        named = [torch.where(answer.bool(), colour, other)]
    else:
        answer = torch.multinomial(torch.tensor([0.5, 0.25, 0.25]), n, True, generator=generator)
        named = [torch.where(answer == 2, other, colour), torch.where(answer == 1, other, colour)]
    words = torch.tensor([0 if w is None else w for w in template]).repeat(n, 1)
    slots = [k for k, w in enumerate(template) if w is None]
    for slot, colours in zip(slots, named, strict=True):
        words[:, slot] = COLOUR_WORD + colours
    features = OFFSET + torch.rand(n, 2, 1, generator=generator)
    features = features + 0.2 * torch.randn(n, 2, FEATURE_DIM, generator=generator)
    features[torch.arange(n), 1, colour] += 1.0
    return words, features, answer


class Plain(nn.Module):
    """A plain post-LN ``nn.TransformerEncoder``; r0 joins every word at ``text_share``."""

    def __init__(self, task: str, width: int, text_share: float, statistics: tuple[Tensor, Tensor]):
        super().__init__()
        template, segments, classes = TASKS[task]
        self.register_buffer("mean", statistics[0])
        self.register_buffer("std", statistics[1])
        self.register_buffer("segments", torch.tensor(segments))
        self.words = nn.Embedding(VOCABULARY, width)
        self.positions = nn.Embedding(len(template), width)
        self.segment_embeddings = nn.Embedding(2, width)
        self.visual = nn.Sequential(nn.Linear(FEATURE_DIM, width), nn.LayerNorm(width))
        self.norm = nn.LayerNorm(width)
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, 0.1, "gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, classes)
        self.text_share = text_share

    def forward(self, words: Tensor, features: Tensor) -> Tensor:
        regions = self.visual((features - self.mean) / self.std)  # (n, 2, D), unit scale
        text = self.words(words) + self.positions(torch.arange(words.shape[1]))  # N(0, 1) each
        text = text + self.segment_embeddings(self.segments) + self.text_share * regions[:, :1]
        return self.head(self.encoder(self.norm(torch.cat([text, regions], 1)))[:, 0])


class Tiny(nn.Module):
    """groundattn's tiny encoder and a linear answer head on ``[CLS]``."""

    def __init__(
        self,
        task: str,
        width: int,
        statistics: tuple[Tensor, Tensor],
        region_share: float,
        dropout: float,
    ):
        super().__init__()
        _, self.segments, classes = TASKS[task]
        config = preset(
            "tiny",
            hidden_size=width,
            intermediate_size=2 * width,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )
        self.encoder = VLEncoder(config)
        visual = self.encoder.embeddings.visual
        visual.set_feature_statistics(*statistics)
        visual.set_scales(
            float(visual.text_scale.detach()), region_share * config.initializer_range
        )
        self.head = nn.Linear(width, classes)
        self.boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.1, 0.1, 0.4, 0.4]])

    def forward(self, words: Tensor, features: Tensor) -> Tensor:
        n = len(words)
        batch = pack(words.tolist(), [self.segments] * n, list(features), [self.boxes] * n)
        return self.head(self.encoder(batch).last_hidden_state[:, 0])


def train(model: nn.Module, task: str, steps: int, seed: int) -> list[tuple[int, float]]:
    """Validation accuracy every 250 steps."""
    torch.manual_seed(seed)
    batches = torch.Generator().manual_seed(seed + 1)
    words, features, answers = stream(task, 1000, torch.Generator().manual_seed(10_000))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, weight_decay=0.01)
    curve = []
    for step in range(1, steps + 1):
        w, f, a = stream(task, 32, batches)
        loss = nn.functional.cross_entropy(model(w, f), a)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0:
            model.eval()
            with torch.no_grad():
                accuracy = (model(words, features).argmax(-1) == answers).float().mean()
            model.train()
            curve.append((step, float(accuracy)))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="verification")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    task, width = args.task, args.width
    sample = stream(task, 5000, torch.Generator().manual_seed(20_000))[1]
    statistics = (sample.flatten(0, 1).mean(0), sample.flatten(0, 1).std(0))
    models: dict[str, Callable[[], nn.Module]] = {
        "plain, r0 on words at the words' scale": lambda: Plain(task, width, 1.0, statistics),
        f"plain, r0 on words at {TEXT_IMAGE_SHARE}": lambda: Plain(
            task, width, TEXT_IMAGE_SHARE, statistics
        ),
        "tiny encoder (preset)": lambda: Tiny(task, width, statistics, 1.0, 0.1),
        "tiny encoder, dropout 0": lambda: Tiny(task, width, statistics, 1.0, 0.0),
        "tiny encoder, dropout 0, region scale x3": lambda: Tiny(task, width, statistics, 3.0, 0.0),
    }
    print(f"{task}, width {width}")
    print(f"{'model':42s} seed  first step at 95 %  accuracy every 250 steps")
    for name, build in models.items():
        for seed in args.seeds:
            curve = train(build(), task, args.steps, seed)
            first = next((s for s, a in curve if a >= 0.95), None)
            reached = f"{first}" if first else f"> {args.steps}"
            curve_text = " ".join(f"{a:.2f}" for _, a in curve)
            print(f"{name:42s} {seed:4d}  {reached:>17s}  {curve_text}", flush=True)


if __name__ == "__main__":
    main()
