"""Captions to word pieces, with each grounded phrase's exact token span.

Phrases map to word pieces through the fast tokenizer's character offsets, so
every word piece of a phrase carries its grounding and a span never reaches
past the phrase (METHOD §6, defect 2).

Truncation rule: a caption longer than ``max_tokens`` word pieces is cut at
``max_tokens``, moved back to the start of any phrase the cut would split.
Phrases after the cut are dropped whole: their span is ``None`` and they are
counted in ``dropped_phrases``, never kept in half.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class _Phrase(Protocol):
    char_span: tuple[int, int]


class _Caption(Protocol):
    text: str
    phrases: Sequence[_Phrase]


@dataclass(frozen=True)
class TokenizedCaption:
    """Word pieces of one caption (no special tokens) and its phrases' spans."""

    token_ids: list[int]
    phrase_spans: list[
        tuple[int, int] | None
    ]  # per phrase: word pieces [start, end), None if dropped
    dropped_phrases: int


def _phrase_span(
    offsets: Sequence[tuple[int, int]], start: int, end: int
) -> tuple[int, int] | None:
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
    return (inside[0], inside[-1] + 1) if inside else None


def tokenize_captions(
    tokenizer, captions: Sequence[_Caption], max_tokens: int
) -> list[TokenizedCaption]:
    """Tokenises captions in one call of the fast tokenizer and aligns their phrases."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    encoded = tokenizer(
        [c.text for c in captions], add_special_tokens=False, return_offsets_mapping=True
    )
    out = []
    for caption, ids, offsets in zip(
        captions, encoded["input_ids"], encoded["offset_mapping"], strict=True
    ):
        spans = [_phrase_span(offsets, *p.char_span) for p in caption.phrases]
        for p, span in zip(caption.phrases, spans, strict=True):
            if span is None:
                raise ValueError(
                    f"phrase at characters {p.char_span} of {caption.text!r} covers no word piece"
                )
        cut = len(ids)
        if cut > max_tokens:
            cut = max_tokens
            for start, end in sorted(s for s in spans if s is not None):
                if start < cut < end:
                    cut = start
        kept = [s if s is not None and s[1] <= cut else None for s in spans]
        out.append(
            TokenizedCaption(
                token_ids=list(ids[:cut]),
                phrase_spans=kept,
                dropped_phrases=sum(s is None for s in kept),
            )
        )
    return out
