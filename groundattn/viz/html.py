"""bertviz head and model views of one sample, written as standalone HTML files.

Direction filter: ``"text_to_region"`` and ``"region_to_text"`` restrict the
query (left) tokens and the key (right) tokens to the block asked for, through
bertviz's encoder-decoder ("cross") input, which accepts a rectangular
attention matrix. Zeroing the other blocks instead would keep all N × N lines in
the page and the file; restricting keeps only T × R of them and puts the text
on one side and the regions on the other, which is what one wants to read.
``blocks=True`` (direction ``"all"`` only) passes bertviz's ``sentence_b_start``
so that its "Attention" menu offers the four blocks, with sentence A = the
text and sentence B = the regions and ``[END]``; it doubles the file size.

Size: bertviz embeds every shown value as JSON text. Values are rounded to
``decimals`` (3), the JSON is written once and without spaces (bertviz 1.4.1
writes it twice, see :func:`_compact_params`), and layers and heads that are
not asked for are not embedded: about 5.3 bytes per value. Measured with
bertviz 1.4.1 on N = 150 tokens (T = 49 text, R = 100 regions, [END]),
6 layers × 12 heads of random softmax attention, 2 CPU cores:

=====================================  ========  =======
view                                   size      time
=====================================  ========  =======
head view, all layers and heads        8.5 MB    2–3 s
head view, ``blocks=True``             17.1 MB   4–5 s
head view, one layer                   1.4 MB    0.3 s
head view, one layer, 4 heads          0.5 MB    0.2 s
head view, text → region (49 × 100)    1.9 MB    0.6 s
model view, default (last layer only)  1.4 MB    0.4 s
model view, all layers and heads       8.5 MB    2 s
=====================================  ========  =======

(``tests/viz/test_html.py::test_long_input_is_fast_and_bounded`` bounds them.)
Drawing cost in the browser grows with the lines drawn at once (one layer
for the head view, every shown layer and head for the model view), hence
``max_lines``.

Viewing needs a network connection: bertviz loads require.js, d3 and jQuery
from cdnjs.cloudflare.com; the page says so, and says it again, in red, when
they did not load. groundattn's own page (:mod:`groundattn.viz.page`) is the
offline view.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

Direction = Literal["all", "text_to_region", "region_to_text"]
DIRECTIONS = ("all", "text_to_region", "region_to_text")
MAX_LINES = 300_000
"""Default bound on the attention lines a view asks the browser to draw at once."""


@dataclass(frozen=True)
class _View:
    """What bertviz is given: attention already filtered, rounded and labelled."""

    attention: Tensor  # (L', H', Q, K) float64
    layers: list[int]  # the L' layers shown (original indices)
    heads: list[int]  # the H' heads shown (original indices)
    num_layers: int  # L
    num_heads: int  # H
    rows: list[str]  # Q query labels (left column)
    cols: list[str]  # K key labels (right column)
    square: bool  # rows and columns are the same N tokens


def head_view_html(
    attention: Tensor,
    labels: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    direction: Direction = "all",
    text_positions: Sequence[int] | None = None,
    region_positions: Sequence[int] | None = None,
    renormalize: bool = False,
    blocks: bool = False,
    decimals: int = 3,
    max_lines: int = MAX_LINES,
) -> str:
    """bertviz head view of one sample, as a standalone HTML document.

    bertviz's head view has no head filter of its own (its ``heads`` argument
    only preselects): the heads asked for are cut out here, so its coloured
    squares stand for them in order; the page header lists them.

    Args:
        attention: (L, H, N, N) attention of one sample, padding removed.
        labels: N token labels (see :func:`~groundattn.viz.token_labels`).
        layers: layers to embed (default: all).
        heads: heads to embed (default: all, or the first heads that fit
            ``max_lines`` for one layer).
        direction: ``"all"``, ``"text_to_region"`` or ``"region_to_text"``
            (module docstring); the last two need the positions.
        text_positions: positions of the text tokens, ``[CLS]``/``[SEP]`` included.
        region_positions: positions of the region tokens, r0 included.
        renormalize: with a direction, divide each row by its sum over the
            block (METHOD §4's â and ã) instead of showing raw probabilities.
        blocks: offer bertviz's text/region block menu (direction ``"all"``).
        decimals: rounding of the embedded values.
        max_lines: bound on H' × Q × K when ``heads`` is not given.

    Returns:
        The HTML text.
    """
    view = _prepare(
        attention, labels, layers, heads, direction, text_positions, region_positions,
        renormalize, decimals, max_lines, per_layer=True,
    )  # fmt: skip
    sentence_b_start = _sentence_b_start(blocks, direction, text_positions)
    from bertviz import head_view

    # Only the layers in include_layers are read; the others stay None.
    per_layer: list[Tensor | None] = [None] * view.num_layers
    for i, layer in enumerate(view.layers):
        per_layer[layer] = view.attention[i][None]  # (1, H', Q, K)
    if view.square:
        page = head_view(
            attention=per_layer,
            tokens=view.rows,
            sentence_b_start=sentence_b_start,
            include_layers=view.layers,
            prettify_tokens=False,
            html_action="return",
        )
    else:
        page = head_view(
            cross_attention=per_layer,
            decoder_tokens=view.rows,
            encoder_tokens=view.cols,
            include_layers=view.layers,
            prettify_tokens=False,
            html_action="return",
        )
    note = f"coloured squares = heads {_list(view.heads)}, in that order"
    body = _compact_params(page.data)
    return _document("head view", view, direction, renormalize, decimals, body, note)


def model_view_html(
    attention: Tensor,
    labels: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    direction: Direction = "all",
    text_positions: Sequence[int] | None = None,
    region_positions: Sequence[int] | None = None,
    renormalize: bool = False,
    blocks: bool = False,
    decimals: int = 3,
    max_lines: int = MAX_LINES,
) -> str:
    """bertviz model view (one thumbnail per layer and head), as an HTML document.

    The model view draws every shown layer and head at once. When ``heads`` is
    not given and the shown maps hold more than ``max_lines`` lines, the view
    keeps the last layers that fit (if ``layers`` is not given either), then,
    if that is still too much, the first heads that fit; the choice is logged
    and written in the page header. Arguments as :func:`head_view_html`
    (``max_lines`` bounds L' × H' × Q × K).
    """
    view = _prepare(
        attention, labels, layers, heads, direction, text_positions, region_positions,
        renormalize, decimals, max_lines, per_layer=False,
    )  # fmt: skip
    sentence_b_start = _sentence_b_start(blocks, direction, text_positions)
    from bertviz import model_view

    # bertviz reads the head count from layer 0 and slices include_heads itself.
    full = torch.zeros(
        view.num_layers, view.num_heads, *view.attention.shape[2:], dtype=torch.float64
    )
    full[torch.tensor(view.layers)[:, None], torch.tensor(view.heads)] = view.attention
    per_layer = list(full[:, None])  # L of (1, H, Q, K)
    if view.square:
        page = model_view(
            attention=per_layer,
            tokens=view.rows,
            sentence_b_start=sentence_b_start,
            include_layers=view.layers,
            include_heads=view.heads,
            display_mode="light",
            prettify_tokens=False,
            html_action="return",
        )
    else:
        page = model_view(
            cross_attention=per_layer,
            decoder_tokens=view.rows,
            encoder_tokens=view.cols,
            include_layers=view.layers,
            include_heads=view.heads,
            display_mode="light",
            prettify_tokens=False,
            html_action="return",
        )
    body = _compact_params(page.data)
    return _document("model view", view, direction, renormalize, decimals, body)


def write_head_view(
    path: str | Path, attention: Tensor, labels: Sequence[str], **options: Any
) -> Path:
    """Writes :func:`head_view_html` (same keyword options) to ``path``; returns it."""
    return _write(path, head_view_html(attention, labels, **options))


def write_model_view(
    path: str | Path, attention: Tensor, labels: Sequence[str], **options: Any
) -> Path:
    """Writes :func:`model_view_html` (same keyword options) to ``path``; returns it."""
    return _write(path, model_view_html(attention, labels, **options))


def _prepare(
    attention: Tensor,
    labels: Sequence[str],
    layers: Sequence[int] | None,
    heads: Sequence[int] | None,
    direction: str,
    text_positions: Sequence[int] | None,
    region_positions: Sequence[int] | None,
    renormalize: bool,
    decimals: int,
    max_lines: int,
    *,
    per_layer: bool,
) -> _View:
    """Validates, picks layers and heads, cuts the direction's block and rounds."""
    if attention.dim() != 4 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention must be (L, H, N, N), got {tuple(attention.shape)}")
    L, H, N, _ = attention.shape
    if len(labels) != N:
        raise ValueError(f"{len(labels)} labels for {N} attention positions")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    labels = [_script_safe(label) for label in labels]
    rows = cols = list(range(N))
    if direction != "all":
        if text_positions is None or region_positions is None:
            raise ValueError(f"direction {direction!r} needs text_positions and region_positions")
        text, region = list(text_positions), list(region_positions)
        rows, cols = (text, region) if direction == "text_to_region" else (region, text)
    Q, K = len(rows), len(cols)
    if not Q or not K:
        raise ValueError(f"direction {direction!r}: the sample has no such tokens")

    if heads is None:
        layers, heads = _default_subset(layers, L, H, Q * K, max_lines, per_layer=per_layer)
    layers = _indices(layers, L, "layers")
    heads = _indices(heads, H, "heads")

    block = attention.detach()[layers][:, heads]  # (L', H', N, N)
    block = block[..., rows, :][..., cols].cpu().double()  # (L', H', Q, K)
    if renormalize and direction != "all":
        block = block / block.sum(-1, keepdim=True).clamp_min(1e-12)
    return _View(
        attention=block.round(decimals=decimals),
        layers=layers,
        heads=heads,
        num_layers=L,
        num_heads=H,
        rows=[labels[i] for i in rows],
        cols=[labels[j] for j in cols],
        square=direction == "all",
    )


def _default_subset(
    layers: Sequence[int] | None, L: int, H: int, lines: int, max_lines: int, *, per_layer: bool
) -> tuple[Sequence[int] | None, list[int] | None]:
    """Layers and heads to show when ``heads`` was not given, so that at most
    ``max_lines`` lines are drawn at once: the head view draws one layer, the
    model view all shown layers. Keeps the last layers, then the first heads."""
    if not per_layer and layers is None and L * H * lines > max_lines:
        layers = list(range(L - max(1, max_lines // (H * lines)), L))
        logger.info("model view: %d lines per head, showing layers %s only", lines, layers)
    shown_layers = 1 if per_layer else len(layers if layers is not None else range(L))
    if shown_layers * H * lines <= max_lines:
        return layers, None
    heads = list(range(max(1, max_lines // (shown_layers * lines))))
    logger.info("%d lines per head: showing heads %s only", lines, heads)
    return layers, heads


def _indices(chosen: Sequence[int] | None, size: int, name: str) -> list[int]:
    if chosen is None:
        return list(range(size))
    out = sorted(set(int(i) for i in chosen))
    if not out or out[0] < 0 or out[-1] >= size:
        raise ValueError(f"{name} must be a non-empty subset of 0 … {size - 1}, got {list(chosen)}")
    return out


def _sentence_b_start(
    blocks: bool, direction: str, text_positions: Sequence[int] | None
) -> int | None:
    """Sentence A = the text, B = regions and [END]: needs text first, contiguous."""
    if not blocks:
        return None
    if direction != "all":
        raise ValueError("blocks=True needs direction='all' (a direction already picks a block)")
    T = len(text_positions or [])
    if not T or list(text_positions) != list(range(T)):
        raise ValueError("blocks=True needs text_positions 0 … T−1 (the VL-BERT layout)")
    return T


def _compact_params(page: str) -> str:
    """Embeds bertviz's parameters once, as compact JSON.

    bertviz 1.4.1 substitutes its parameter JSON for the marker ``PYTHON_PARAMS``
    in ``const params = PYTHON_PARAMS; // HACK: PYTHON_PARAMS is a template
    marker…``, that is twice (once in the comment), which doubles the file. The
    line is rebuilt with one copy, re-serialised without spaces; if the page
    does not have that shape (another bertviz version), it is left as it is.
    """
    prefix, separator = "const params = ", "; // HACK: "
    suffix = " is a template marker that is replaced by actual params."
    start = page.find(prefix)
    end = page.find("\n", start)
    if start < 0 or end < 0:
        return page
    middle = page[start + len(prefix) : end]
    if not middle.endswith(suffix):
        return page
    middle = middle[: -len(suffix)]
    size = (len(middle) - len(separator)) // 2
    params = middle[:size]
    if middle != params + separator + params:
        return page
    compact = json.dumps(json.loads(params), separators=(",", ":"))
    return f"{page[:start]}{prefix}{compact};{page[end:]}"


def _script_safe(label: str) -> str:
    """bertviz puts labels in a <script>: break any ``</`` so it cannot close it."""
    return label.replace("</", "<\u200b/")


def _list(indices: list[int]) -> str:
    return ", ".join(str(i) for i in indices)


def _document(
    kind: str,
    view: _View,
    direction: str,
    renormalize: bool,
    decimals: int,
    body: str,
    note: str = "",
) -> str:
    """Wraps bertviz's fragment in a page with a charset and a header saying what is shown."""
    parts = [
        f"{kind}",
        f"direction {direction}" + (", rows renormalised over the block" if renormalize else ""),
        f"layers {_list(view.layers)} of {view.num_layers}",
        f"heads {_list(view.heads)} of {view.num_heads}",
        f"values rounded to {decimals} decimals",
    ]
    if note:
        parts.append(note)
    header = html.escape(" · ".join(parts))
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>groundattn {kind} (bertviz)</title></head><body>\n"
        f'<p style="font-family:sans-serif;font-size:13px">{header}</p>\n'
        f'<p style="font-family:sans-serif;font-size:13px">{NETWORK_NOTE}</p>\n'
        f"{body}\n{_OFFLINE_CHECK}\n</body></html>\n"
    )


NETWORK_NOTE = (
    "bertviz's view: it loads require.js, d3 and jQuery from cdnjs.cloudflare.com and needs a "
    "network. groundattn's own attention page (attention.html) works offline."
)
_OFFLINE_CHECK = (  # offline, bertviz's script stops at require(): say why the page is empty
    '<p id="ga-offline" hidden style="font-family:sans-serif;color:#b00">'
    "Offline: bertviz's libraries did not load, so this view cannot draw. "
    "Open attention.html instead.</p>"
    '<script>if (typeof require === "undefined") '
    'document.getElementById("ga-offline").hidden = false;</script>'
)


def _write(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    logger.info("wrote %s (%.1f kB)", path, len(text.encode()) / 1e3)
    return path
