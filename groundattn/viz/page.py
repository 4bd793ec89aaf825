"""groundattn's own attention page: one self-contained HTML file, plain JavaScript and SVG.

:func:`attention_page_html` draws, for one sample and one or several models side
by side, the text tokens on the left and the region tokens on the right (each
region as a thumbnail crop of its box, with its label), joined by lines whose
opacity is the attention weight on an absolute 0 … 1 scale. Selectors choose
the layer, the head (or the mean of the heads), attention or rollout
(METHOD §5), the direction (text → regions or regions → text) and whether
each row is renormalised over the block (METHOD §4's â) or left as raw
probabilities. Hovering a token keeps only its lines and writes their
weights; the phrase's tokens and its grounded regions are marked, and a small
copy of the picture shows the phrase's attention over the boxes.

Everything is inside the file: the script and the style inline, the picture as
a base64 ``data:`` URI (cropped into thumbnails by SVG view boxes), the
attention as integers in a JSON block. A Content-Security-Policy forbids
fetching anything, so the page renders from ``file://`` with no network, in
any current browser. (bertviz's views, :mod:`groundattn.viz.html`, load
require.js, d3 and jQuery from a CDN instead.)

Size: about 4 bytes per value, two directions, attention and rollout: a
6-layer, 12-head model with T = 30 text tokens and R = 100 regions makes
about 3 MB.

Shapes: L layers, H heads, N sequence, T text tokens, R regions (r0 included).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from groundattn.viz.page_assets import SCRIPT, STYLE

logger = logging.getLogger(__name__)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
"""The page's Content-Security-Policy: nothing is fetched, inline script and style only."""
SCALE = 1000
"""Weights are embedded as integers: round(weight × SCALE)."""
BERTVIZ_NOTE = (
    "groundattn's own view: plain JavaScript and SVG, all in this file; it needs no network. "
    "bertviz's head and model views (head_view.html, model_view.html, written with "
    "--outputs head_view model_view) load their libraries from a CDN and need a network."
)


@dataclass(frozen=True)
class PageModel:
    """One model's attention on the sample, as the page shows it."""

    name: str
    source: str  # the run's model directory, or "init"
    attention: Tensor  # (L, H, N, N) probabilities of one sample, padding removed
    rollout: Tensor  # (L, N, N) head-averaged rollout (METHOD §5)
    labels: Sequence[str]  # N token labels
    text_positions: Sequence[int]  # T positions, [CLS] and [SEP] included
    region_positions: Sequence[int]  # R positions, r0 first
    phrase_positions: Sequence[int]  # positions of the phrase's word pieces
    layers: Sequence[int] | None = None  # shown layers (default: all)
    heads: Sequence[int] | None = None  # shown heads (default: all)


def attention_page_html(
    image: Image.Image,
    boxes: np.ndarray | Sequence[Sequence[float]],
    models: Sequence[PageModel],
    *,
    image_id: str,
    split: str,
    phrase: str,
    grounded: Sequence[int] = (),
    captions: Sequence[str] = (),
    max_side: int = 512,
) -> str:
    """The attention page of one sample for ``models`` (one panel each), as HTML text.

    Args:
        image: the picture.
        boxes: (R, 4) pixel boxes x1 y1 x2 y2, r0 first (the regions of every model).
        models: the panels, left to right.
        image_id: the image, for the header.
        split: its split, for the header.
        phrase: the phrase whose tokens and grounded regions are marked.
        grounded: the phrase's region slots (indices into ``boxes``).
        captions: the captions c1 and c2, for the header.
        max_side: the picture is embedded at most this many pixels on its longer side.

    Returns:
        The HTML document.
    """
    if not models:
        raise ValueError("the attention page needs at least one model")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # (R, 4)
    R = len(boxes)
    for model in models:
        if len(model.region_positions) != R:
            raise ValueError(
                f"model {model.name!r}: {len(model.region_positions)} regions for {R} boxes"
            )
    if any(not 0 <= k < R for k in grounded):
        raise ValueError(f"grounded regions must lie in 0 … {R - 1}, got {list(grounded)}")
    first = models[0]
    width, height = image.size
    data = {
        "scale": SCALE,
        "image": {"uri": _data_uri(image, max_side), "width": width, "height": height},
        "regions": [
            {"label": first.labels[p], "box": [round(float(v), 1) for v in box]}
            for p, box in zip(first.region_positions, boxes, strict=True)
        ],
        "grounded": sorted(int(k) for k in grounded),
        "phrase": phrase,
        "models": [_model_data(m) for m in models],
    }
    return _document(data, image_id, split, phrase, captions, [(m.name, m.source) for m in models])


def write_attention_page(path: str | Path, *args, **kwargs) -> Path:
    """Writes :func:`attention_page_html` (same arguments) to ``path``; returns it."""
    text = attention_page_html(*args, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    logger.info("wrote %s (%.1f kB)", path, len(text.encode()) / 1e3)
    return path


def _model_data(model: PageModel) -> dict:
    """The blocks of one model as nested integer lists, for the shown layers and heads."""
    L, H, N, _ = model.attention.shape
    if len(model.labels) != N:
        raise ValueError(f"model {model.name!r}: {len(model.labels)} labels for {N} positions")
    layers = _indices(model.layers, L, "layers", model.name)
    heads = _indices(model.heads, H, "heads", model.name)
    text, regions = list(model.text_positions), list(model.region_positions)
    index = {p: i for i, p in enumerate(text)}
    if any(p not in index for p in model.phrase_positions):
        raise ValueError(f"model {model.name!r}: phrase positions must be text positions")
    attention = model.attention.detach().double().cpu()[layers][:, heads]  # (L', H', N, N)
    rolled = model.rollout.detach().double().cpu()[layers]  # (L', N, N)
    return {
        "name": model.name,
        "source": model.source,
        "layers": layers,
        "heads": heads,
        "num_layers": L,
        "num_heads": H,
        "text": [model.labels[p] for p in text],
        "phrase_tokens": [index[p] for p in model.phrase_positions],
        "t2r": _quantize(attention[..., text, :][..., regions]),  # (L', H', T, R)
        "r2t": _quantize(attention[..., regions, :][..., text]),  # (L', H', R, T)
        "rollout_t2r": _quantize(rolled[..., text, :][..., regions]),  # (L', T, R)
        "rollout_r2t": _quantize(rolled[..., regions, :][..., text]),  # (L', R, T)
    }


def _quantize(values: Tensor) -> list:
    return values.mul(SCALE).round().long().tolist()


def _indices(chosen: Sequence[int] | None, size: int, what: str, model: str) -> list[int]:
    if chosen is None:
        return list(range(size))
    out = sorted({int(i) for i in chosen})
    if not out or out[0] < 0 or out[-1] >= size:
        raise ValueError(f"model {model!r}: {what} must lie in 0 … {size - 1}, got {list(chosen)}")
    return out


def _data_uri(image: Image.Image, max_side: int) -> str:
    """The picture as a base64 JPEG ``data:`` URI, at most ``max_side`` pixels on a side."""
    shown = image.convert("RGB")
    if max(shown.size) > max_side:
        shown.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    shown.save(buffer, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _document(
    data: dict,
    image_id: str,
    split: str,
    phrase: str,
    captions: Sequence[str],
    models: list[tuple[str, str]],
) -> str:
    """The page: a static header (readable even without script), the data, the script."""
    esc = html.escape
    names = ", ".join(name for name, _ in models)
    title = f"groundattn attention · {names} · image {image_id} · “{phrase}”"
    labels = [data["regions"][k]["label"] for k in data["grounded"]]
    grounded = ", ".join(labels) if labels else "no region"
    runs = "".join(f"<li><b>{esc(n)}</b>: run <code>{esc(s)}</code></li>" for n, s in models)
    caps = "".join(f"<li>{esc(c)}</li>" for c in captions)
    # "</" cannot close the script: every "<" of the JSON is written as \u003c.
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style></head>\n<body>\n"
        '<header id="ga-header">\n'
        f"<h1>Attention of “{esc(phrase)}” · image {esc(str(image_id))} ({esc(split)})</h1>\n"
        f'<ul class="ga-models">{runs}</ul>\n'
        f"<p>Phrase “{esc(phrase)}”, grounded to {esc(grounded)} (dashed cyan).</p>\n"
        f'<ol class="ga-captions">{caps}</ol>\n'
        f'<p class="ga-note">{esc(BERTVIZ_NOTE)}</p>\n'
        "</header>\n"
        '<p id="ga-failure" hidden></p>\n'
        "<noscript>This page draws with JavaScript: allow scripts for this file.</noscript>\n"
        '<main id="ga-panels"></main>\n'
        f'<script type="application/json" id="ga-data">{payload}</script>\n'
        f"<script>{SCRIPT}</script>\n</body></html>\n"
    )
