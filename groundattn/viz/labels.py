"""Readable, unique token labels for one sample in the VL-BERT layout (METHOD §2).

``[CLS] c1 [SEP] c2 [SEP] r0 r1 … rK [END]`` becomes, for instance,
``[CLS] a dog [SEP] a puppy [SEP] [IMG:0 whole image] [IMG:1 dog] [IMG:2] [END]``.
"""

from __future__ import annotations

from collections.abc import Sequence

WHOLE_IMAGE = "whole image"
END_LABEL = "[END]"


def region_label(index: int, name: str | None = None) -> str:
    """``[IMG:3 red circle]`` where the name is known, ``[IMG:3]`` otherwise.

    Region 0 is the whole image r0 and is named so when no name is given.
    """
    if name is None and index == 0:
        name = WHOLE_IMAGE
    name = " ".join(name.split()) if name else ""
    return f"[IMG:{index} {name}]" if name else f"[IMG:{index}]"


def token_labels(
    text_tokens: Sequence[str], region_names: Sequence[str | None], *, with_end: bool = True
) -> list[str]:
    """Labels of the valid positions of one sample: text, regions, then ``[END]``.

    Text word pieces stay as they are; regions read ``[IMG:k name]`` (see
    :func:`region_label`). Repeated labels (two ``[SEP]``, a word used in both
    captions) get an occurrence suffix, ``the``, ``the (2)``, so every label is
    unique: the bertviz views and the plots key nothing on labels, but a reader
    needs to tell the tokens apart.

    Args:
        text_tokens: the T text word pieces, ``[CLS]`` and ``[SEP]`` included.
        region_names: one entry per region, r0 first; None where unknown.
        with_end: append ``[END]`` (a sample with regions has one).

    Returns:
        T + R (+ 1) labels, in sequence order.
    """
    raw = list(text_tokens) + [region_label(k, name) for k, name in enumerate(region_names)]
    if with_end:
        raw.append(END_LABEL)
    return _unique(raw)


def _unique(labels: list[str]) -> list[str]:
    """Suffixes repeated labels with their occurrence number, `` (2)``, `` (3)`` …"""
    seen: set[str] = set()
    counts: dict[str, int] = {}
    out = []
    for label in labels:
        candidate = label
        while candidate in seen:
            counts[label] = counts.get(label, 1) + 1
            candidate = f"{label} ({counts[label]})"
        seen.add(candidate)
        out.append(candidate)
    return out


def layout_positions(num_text: int, num_regions: int) -> tuple[list[int], list[int]]:
    """Text and region positions of a sample laid out as METHOD §2 (no padding).

    Returns:
        ``(text_positions, region_positions)``: ``0 … T−1`` and ``T … T+R−1``.
    """
    return list(range(num_text)), list(range(num_text, num_text + num_regions))
