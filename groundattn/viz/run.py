"""What ``groundattn visualize`` does: run encoders on one sample, draw what they attend to.

:func:`visualize` reads one image of a data set root (Flickr30k Entities layout
with ``features/<split>.h5``, such as the embedded scenes), lays out two of
its captions and its regions (METHOD §2), runs every model given once with
``output_attentions=True`` and writes groundattn's attention page (every model
side by side, self-contained: :mod:`groundattn.viz.page`), per model the
chosen phrase's attention over the regions as box heat (layer × head grid,
head average per layer, rollout) and, with several models, the compare
figure. bertviz's head and model views (:mod:`groundattn.viz.html`) are
written only when asked for: they load their libraries from a CDN, so they
need a network. The store, the image and each tokenizer are read once, whatever the
number of models: the sample is read by :mod:`groundattn.viz.scene`, the
models are loaded by :mod:`groundattn.viz.models`. The grounding accuracy
report over a split is :mod:`groundattn.viz.grounding`; the command line
imports it, the model specs and the error from here.

Shapes: L layers, H heads, N sequence, T text tokens, R regions (r0 included).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from groundattn.data.regions import RegionSource
from groundattn.model import load_tokenizer, pack
from groundattn.viz.compare import plot_compare
from groundattn.viz.errors import VisualizeError
from groundattn.viz.grounding import grounding_report
from groundattn.viz.html import DIRECTIONS, Direction, write_head_view, write_model_view
from groundattn.viz.image import (
    phrase_region_attention,
    plot_head_grid,
    plot_layer_average,
    plot_rollout,
    save_figure,
)
from groundattn.viz.labels import token_labels
from groundattn.viz.models import (
    INIT,
    MAX_CAPTION_TOKENS,
    LoadedModel,
    folder_name,
    load_model,
    parse_model_specs,
)
from groundattn.viz.page import PageModel, write_attention_page
from groundattn.viz.sample import select_sample
from groundattn.viz.scene import EncodedCaptions, SharedSample, encode_captions, read_scene

__all__ = [  # groundattn.cli imports these from here
    "DEFAULT_OUTPUTS",
    "OUTPUTS",
    "VisualizeError",
    "grounding_report",
    "parse_model_specs",
    "visualize",
]

OUTPUTS = ("attention", "head_view", "model_view", "heads", "layers", "rollout", "compare")
"""What :func:`visualize` can write: the attention page; per model two bertviz views and
three PNGs; the compare PNG."""
NETWORK_OUTPUTS = ("head_view", "model_view")
"""bertviz's views: they load require.js, d3 and jQuery from a CDN (not written by default)."""
DEFAULT_OUTPUTS = tuple(kind for kind in OUTPUTS if kind not in NETWORK_OUTPUTS)
"""What :func:`visualize` writes by default: everything that works offline."""


def visualize(
    out_dir: str | Path,
    *,
    data_root: str | Path,
    split: str,
    image_id: str | int,
    models: Mapping[str, str | Path | None] | None = None,
    captions: Sequence[str] | None = None,
    caption_index: tuple[int, int] = (0, 1),
    phrase: str | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    direction: Direction = "all",
    regions: RegionSource = "ground_truth",
    compare_layer: int | str = "last",
    max_caption_tokens: int = MAX_CAPTION_TOKENS,
    image_dir: str | Path | None = None,
    dpi: float = 150,
    outputs: Collection[str] = DEFAULT_OUTPUTS,
) -> list[Path]:
    """Draws one sample's attention for each model; returns the files written.

    Writes ``<out_dir>/attention.html`` (every model side by side),
    ``<out_dir>/<model>/{heads,layers,rollout}.png`` (and, if asked for,
    bertviz's ``{head_view,model_view}.html``), ``<out_dir>/compare.png`` with
    several models, and ``<out_dir>/sample.json`` (captions, phrase, tokens, labels).

    Args:
        out_dir: where the files go.
        data_root: data set root (``Sentences/``, ``Annotations/``, ``features/``, images).
        split: the split whose feature store holds the image.
        image_id: the image.
        models: name → a run's ``model/`` directory (or the run directory), or
            None for the default initialisation; default ``{"init": None}``.
            Each is loaded once; the store, image and tokenizers are shared.
        captions: two captions, plain text or Flickr30k Entities markup; default:
            the data set's captions ``caption_index``.
        caption_index: which of the image's captions are c1 and c2.
        phrase: the phrase whose attention is drawn: a marked-up phrase's text, or
            any text of the captions (first occurrence, c1 first); default: the
            first phrase grounded to some of the boxes but not all (see
            :func:`~groundattn.viz.scene.read_scene`).
        layers: layers shown (HTML views and PNGs; default all).
        heads: heads shown; the head averages and the compare figure average them.
        direction: the HTML views' block: ``"all"``, ``"text_to_region"``,
            ``"region_to_text"`` (the PNGs always show phrase → regions).
        regions: ``"ground_truth"``, ``"detected"`` or ``"all"`` boxes.
        compare_layer: layer of the compare figure's head average (``"last"``).
        max_caption_tokens: word pieces kept per caption.
        image_dir: folder of ``<image_id>.jpg`` (default: ``<root>/images`` …).
        dpi: resolution of the PNGs.
        outputs: the files to write, a subset of :data:`OUTPUTS`; default
            :data:`DEFAULT_OUTPUTS` (the 72-panel head grid of a 6 × 12 model is
            most of the time: leave it out of a four-model comparison that
            needs only ``{"compare"}``).

    Raises:
        VisualizeError: unknown image, phrase not in the captions, bad layers/heads.
        FileNotFoundError: no store, no picture, a model directory without config.json.
    """
    if direction not in DIRECTIONS:
        raise VisualizeError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not set(outputs) <= set(OUTPUTS):
        raise VisualizeError(f"outputs must be a subset of {OUTPUTS}, got {sorted(outputs)}")
    root, out = Path(data_root), Path(out_dir)
    models = dict(models) if models is not None else {INIT: None}
    if not models:
        raise VisualizeError("no model to draw")
    scene, feature_dim = read_scene(
        root, split, str(image_id), captions, caption_index, phrase, regions, image_dir
    )
    loaded = [load_model(name, path, feature_dim, root) for name, path in models.items()]
    shown = {  # checked for every model before anything is written
        m.name: (
            _check(layers, m.encoder.config.num_hidden_layers, "layers", m.name),
            _check(heads, m.encoder.config.num_attention_heads, "heads", m.name),
        )
        for m in loaded
    }
    tokenizers: dict[str | None, Any] = {}
    encoded: dict[str | None, EncodedCaptions] = {}
    for model in loaded:
        if model.bert not in tokenizers:
            tokenizers[model.bert] = load_tokenizer(model.bert)
            encoded[model.bert] = encode_captions(tokenizers[model.bert], scene, max_caption_tokens)

    boxes = scene.regions.boxes
    written, weights, rollouts, record, pages = [], {}, {}, {}, []
    for model in loaded:
        drawn = _draw_model(
            model, scene, encoded[model.bert], shown[model.name], out / folder_name(model.name),
            {"layers": layers, "heads": heads, "direction": direction}, outputs, dpi,
        )  # fmt: skip
        written += drawn.files
        pages.append(drawn.page)
        weights[model.name], rollouts[model.name] = drawn.weights, drawn.rollout
        record[model.name] = drawn.record
    if "attention" in outputs:
        page = write_attention_page(
            out / "attention.html", scene.image, boxes, pages, image_id=scene.image_id,
            split=split, phrase=scene.phrase, grounded=scene.grounded,
            captions=[c.text for c in scene.captions],
        )  # fmt: skip
        written.insert(0, page)
    if len(loaded) > 1 and "compare" in outputs:
        fig = plot_compare(
            scene.image, boxes, weights, layer=compare_layer, rollouts=rollouts,
            phrase=scene.phrase, outline=scene.grounded, image_id=scene.image_id,
            heads=_common_heads(shown),
        )  # fmt: skip
        written.append(save_figure(fig, out / "compare.png", dpi=dpi))
    written.append(_write_json(out / "sample.json", _sample_record(scene, split, record)))
    return written


@dataclass
class _Drawn:
    """What one model's drawing gives the page, the compare figure and sample.json."""

    files: list[Path]
    page: PageModel
    weights: Tensor  # (L, H', R) phrase → region attention of the shown heads
    rollout: Tensor  # (L, R) phrase → region rollout
    record: dict


def _draw_model(
    model: LoadedModel,
    scene: SharedSample,
    sample: EncodedCaptions,
    shown: tuple[list[int], list[int]],
    folder: Path,
    html: dict,
    outputs: Collection[str],
    dpi: float,
) -> _Drawn:
    """Runs one model on the sample and writes its views and figures into ``folder``.

    ``html`` holds the bertviz views' ``layers``, ``heads`` and ``direction``.
    """
    shown_layers, shown_heads = shown
    boxes = scene.regions.boxes
    batch = pack(
        [sample.token_ids], [sample.segment_ids],
        [torch.from_numpy(scene.regions.features)], [torch.from_numpy(scene.regions.normalized_boxes)],
    )  # fmt: skip
    with torch.inference_mode():
        output = model.encoder(batch, output_attentions=True)
    cut = select_sample(output.attention.probs, output, 0)  # (L, H, n, n)
    labels = token_labels(sample.tokens, scene.region_names)
    html = {**html, "text_positions": cut.text_positions, "region_positions": cut.region_positions}
    views = {"head_view": write_head_view, "model_view": write_model_view}
    files = [
        write(folder / f"{kind}.html", cut.attention, labels, **html)
        for kind, write in views.items()
        if kind in outputs
    ]
    rollout = cut.rollout()  # (L, n, n)
    page = PageModel(
        model.name, model.source, cut.attention, rollout, labels, cut.text_positions,
        cut.region_positions, sample.phrase_positions, shown_layers, shown_heads,
    )  # fmt: skip
    phrase_weights = phrase_region_attention(
        cut.attention, sample.phrase_positions, cut.region_positions
    )  # (L, H, R)
    rolled = phrase_region_attention(rollout, sample.phrase_positions, cut.region_positions)
    weights = phrase_weights[:, shown_heads]  # (L, H', R)
    draw = {"outline": scene.grounded, "layers": shown_layers, "phrase": scene.phrase}
    draw |= {"model": model.name}
    figures = {  # kind: (plot, region weights, its own options)
        "heads": (plot_head_grid, phrase_weights, {"heads": shown_heads}),
        "layers": (plot_layer_average, weights, {"heads": shown_heads}),
        "rollout": (plot_rollout, rolled, {}),
    }
    for kind, (plot, values, options) in figures.items():
        if kind in outputs:
            fig = plot(scene.image, boxes, values, **options, **draw)
            files.append(save_figure(fig, folder / f"{kind}.png", dpi=dpi))
    record = {"source": model.source, "tokens": sample.tokens, "labels": labels}
    record |= {"phrase_positions": sample.phrase_positions}
    return _Drawn(files, page, weights, rolled, record)


def _common_heads(shown: Mapping[str, tuple[list[int], list[int]]]) -> list[int] | None:
    """The heads shown of every model, if they are the same (for the compare figure's label)."""
    heads = {tuple(h) for _, h in shown.values()}
    return list(next(iter(heads))) if len(heads) == 1 else None


def _check(chosen: Sequence[int] | None, size: int, what: str, model: str) -> list[int]:
    if chosen is None:
        return list(range(size))
    out = sorted({int(i) for i in chosen})
    if not out or out[0] < 0 or out[-1] >= size:
        raise VisualizeError(
            f"{what} must lie in 0 … {size - 1} for model {model!r}, got {list(chosen)}"
        )
    return out


def _sample_record(scene: SharedSample, split: str, models: dict) -> dict:
    return {
        "image_id": scene.image_id,
        "split": split,
        "captions": [c.text for c in scene.captions],
        "phrase": scene.phrase,
        "phrase_caption": scene.phrase_caption + 1,
        "phrase_char_span": list(scene.phrase_span),
        "grounded_regions": scene.grounded,
        "region_names": scene.region_names,
        "region_boxes": scene.regions.boxes.tolist(),
        "models": models,
    }


def _write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path
