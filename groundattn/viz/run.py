"""What ``groundattn visualize`` does: run encoders on one sample, draw what they attend to.

:func:`visualize` reads one image of a data set root (Flickr30k Entities layout
with ``features/<split>.h5``, such as the embedded scenes), lays out two of
its captions and its regions (METHOD §2), runs every model given once with
``output_attentions=True`` and writes, per model, the bertviz head and model
views and the chosen phrase's attention over the regions as box heat (layer ×
head grid, head average per layer, rollout); with several models, the compare
figure. The store, the image and each tokenizer are read once, whatever the
number of models. :func:`grounding_report` measures grounding accuracy per
layer and head over a split (METHOD §8), batched as in the trainer's validation.

Shapes: L layers, H heads, N sequence, T text tokens, R regions (r0 included).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from groundattn.data.flickr30k import (
    Caption,
    Phrase,
    parse_caption,
    read_annotations,
    read_sentences,
)
from groundattn.data.regions import ImageRegions, RegionSource, ground_chains, select_regions
from groundattn.data.store import FeatureStore
from groundattn.data.text import tokenize_captions
from groundattn.model import VLEncoder, from_pretrained, load_tokenizer, pack
from groundattn.supervision import grounding_hits, rollout
from groundattn.tasks.vgp import VGPDataset, collate_vgp
from groundattn.train.models import load_trained_encoder
from groundattn.viz.compare import plot_compare
from groundattn.viz.heatmap import plot_grounding_accuracy
from groundattn.viz.html import DIRECTIONS, Direction, write_head_view, write_model_view
from groundattn.viz.image import (
    phrase_region_attention,
    plot_head_grid,
    plot_layer_average,
    plot_rollout,
    save_figure,
)
from groundattn.viz.labels import token_labels
from groundattn.viz.sample import select_sample

logger = logging.getLogger(__name__)

INIT = "init"
"""Model spec for the default initialisation (MiniLM-L6, new visual parts, seed 0)."""
IMAGE_FOLDERS = ("images", "flickr30k-images", "flickr30k_images")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_CAPTION_TOKENS = 32  # the training default (DataSection.max_caption_tokens)
OUTPUTS = ("head_view", "model_view", "heads", "layers", "rollout", "compare")
"""What :func:`visualize` can write: per model two HTML views and three PNGs; the compare PNG."""


class VisualizeError(ValueError):
    """A sample that cannot be drawn as asked: unknown image, phrase, layer …"""


@dataclass
class LoadedModel:
    """An encoder ready to run, with what its run's config says about its inputs."""

    name: str
    encoder: VLEncoder
    bert: str | None  # tokenizer directory (None: the default MiniLM-L6)
    config: dict = field(default_factory=dict)  # the run's config.json ({} for INIT)
    source: str = INIT


def load_model(name: str, model_dir: str | Path | None, feature_dim: int) -> LoadedModel:
    """The encoder of a run's ``model/`` export (or of a run directory holding one);
    ``None`` gives the default initialisation, seeded so that it is reproducible."""
    if model_dir is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            encoder, _ = from_pretrained(visual_feature_dim=feature_dim)
        return LoadedModel(name, encoder.eval(), None)
    directory = Path(model_dir)
    if (
        not (directory / "config.json").is_file()
        and (directory / "model" / "config.json").is_file()
    ):
        directory = directory / "model"
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"model {name!r}: {model_dir} has no config.json "
            "(expected a run's model/ directory, or a run directory holding one)"
        )
    config = json.loads((directory / "config.json").read_text())
    if not isinstance(config.get("model"), dict):
        raise ValueError(f"{directory / 'config.json'}: no 'model' section (not a run's export)")
    encoder = load_trained_encoder(directory, feature_dim)
    return LoadedModel(name, encoder.eval(), config["model"].get("bert"), config, str(directory))


def parse_model_specs(specs: Sequence[str]) -> dict[str, str | None]:
    """``["none=runs/none", "runs/direct/model", "init"]`` → name → directory (None: INIT).

    A bare directory is named after its run (the parent of ``model/``)."""
    models: dict[str, str | None] = {}
    for spec in specs or [INIT]:
        name, sep, value = spec.partition("=")
        if not sep:
            path = Path(spec)
            name, value = (path.parent.name if path.name == "model" else path.name) or spec, spec
        if not name or name in models:
            raise VisualizeError(f"--model {spec!r}: empty or repeated model name")
        models[name] = None if value == INIT else value
    return models


# --- the sample shared by every model ----------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    """One image with its regions and two captions, before tokenisation."""

    image_id: str
    image: Image.Image
    regions: ImageRegions
    region_names: list[str | None]  # (R,), r0 first
    captions: tuple[Caption, Caption]
    phrase: str
    phrase_caption: int  # 0: c1, 1: c2
    phrase_span: tuple[int, int]  # characters of the phrase caption
    grounded: list[int]  # the phrase's region slots


@dataclass(frozen=True)
class _Span:
    char_span: tuple[int, int]


@dataclass(frozen=True)
class _Proxy:
    text: str
    phrases: list[_Span]


def _read_scene(
    root: Path, split: str, image_id: str, captions, caption_index, phrase, regions, image_dir
) -> tuple[_Scene, int]:
    """Reads everything the models share; returns it and the store's feature dimension."""
    store_path = root / "features" / f"{split}.h5"
    with FeatureStore(store_path) as store:
        if image_id not in store:
            raise VisualizeError(
                f"image {image_id} is not in split {split!r} (feature store {store_path})"
            )
        entry = store[image_id]
        selected = select_regions(entry, regions)
        feature_dim, size = store.feature_dim, (entry.width, entry.height)
    sentences = root / "Sentences" / f"{image_id}.txt"
    own = read_sentences(sentences) if sentences.is_file() else []
    if captions is None:
        if not own:
            raise VisualizeError(f"{sentences} does not exist: pass the two captions")
        if len(caption_index) != 2 or not all(0 <= i < len(own) for i in caption_index):
            raise VisualizeError(
                f"caption_index must be two of 0 … {len(own) - 1}, got {caption_index}"
            )
        pair = (own[caption_index[0]], own[caption_index[1]])
    else:
        pair = tuple(parse_caption(c) if "[/EN#" in c else Caption(c.strip(), []) for c in captions)
        if len(pair) != 2:
            raise VisualizeError(f"two captions are needed, got {len(pair)}")
    annotation = root / "Annotations" / f"{image_id}.xml"
    chains = (
        ground_chains(read_annotations(annotation).boxes, selected) if annotation.is_file() else {}
    )
    which, span, text, chain = _find_phrase(pair, phrase, chains)
    names = _region_names(root, split, image_id, selected, chains, [*own, *pair])
    image = _open_image(root, image_id, image_dir, size)
    scene = _Scene(image_id, image, selected, names, pair, text, which, span, chains.get(chain, []))
    return scene, feature_dim


def _find_phrase(pair, phrase: str | None, chains: Mapping[str, list[int]]):
    """(caption 0/1, character span, text, chain id) of the phrase to draw."""
    marked = [(k, p) for k, c in enumerate(pair) for p in c.phrases]
    if phrase is None:
        visual = [(k, p) for k, p in marked if p.is_visual]
        chosen = next(
            ((k, p) for k, p in visual if chains.get(p.chain_id)), visual[0] if visual else None
        )
        if chosen is None:
            raise VisualizeError("the captions mark no grounded phrase: pass the phrase to draw")
        return chosen[0], chosen[1].char_span, chosen[1].text, chosen[1].chain_id
    wanted = " ".join(phrase.split()).lower()
    for k, p in marked:
        if p.text.lower() == wanted:
            return k, p.char_span, p.text, p.chain_id
    pattern = re.compile(r"\s+".join(map(re.escape, phrase.split())), re.IGNORECASE)
    for k, caption in enumerate(pair):
        match = pattern.search(caption.text) if wanted else None
        if match:
            start, end = match.span()
            inside: Phrase | None = next(
                (p for p in caption.phrases if p.char_span[0] <= start and end <= p.char_span[1]),
                None,
            )
            return k, (start, end), match.group(), inside.chain_id if inside else None
    raise VisualizeError(
        f"phrase {phrase!r} is not in the captions {pair[0].text!r} and {pair[1].text!r}"
    )


def _region_names(root, split, image_id, selected, chains, captions) -> list[str | None]:
    """Object names of the embedded scenes, else the first phrase of the most
    specific chain grounded to each region, else None (``[IMG:k]``)."""
    names: list[str | None] = [None] * len(selected)
    for slot, objects in enumerate(_scene_objects(root, split, image_id, selected.store_rows)):
        names[slot] = objects
    first_phrase: dict[str, str] = {}
    for caption in captions:
        for p in caption.phrases:
            if p.is_visual:
                first_phrase.setdefault(p.chain_id, p.text.lower())
    order = {chain: n for n, chain in enumerate(first_phrase)}
    ranked = sorted(
        (c for c in chains if c in first_phrase), key=lambda c: (len(chains[c]), order[c])
    )
    for chain in ranked:
        for slot in chains[chain]:
            names[slot] = names[slot] or first_phrase[chain]
    return names


def _scene_objects(
    root: Path, split: str, image_id: str, store_rows: np.ndarray
) -> list[str | None]:
    """``colour shape`` per region from ``features/<split>_boxes.json`` and ``world.jsonl``."""
    rows_file, world = root / "features" / f"{split}_boxes.json", root / "world.jsonl"
    if not (rows_file.is_file() and world.is_file()):
        return []
    entry = json.loads(rows_file.read_text(encoding="utf-8")).get(image_id)
    record = None
    with open(world, encoding="utf-8") as lines:
        for line in lines:  # one image per line, "image_id" first: parse only the right one
            if f'"image_id": {image_id},' in line[:40] or f'"image_id": "{image_id}",' in line[:40]:
                record = json.loads(line)
                break
    if entry is None or record is None:
        return []
    objects = {g["row"]: record["objects"][g["object_index"]] for g in entry["ground_truth"]}
    return [
        f"{objects[r]['colour']} {objects[r]['shape']}" if r in objects else None
        for r in store_rows.tolist()
    ]


def _open_image(root: Path, image_id: str, image_dir, size: tuple[int, int]) -> Image.Image:
    folders = [Path(image_dir)] if image_dir is not None else [root / f for f in IMAGE_FOLDERS]
    for path in (folder / f"{image_id}{suffix}" for folder in folders for suffix in IMAGE_SUFFIXES):
        if path.is_file():
            with Image.open(path) as opened:
                image = opened.convert("RGB")
            if image.size != size:  # boxes are in the store's pixels
                logger.warning("%s is %s, the store says %s: resized", path, image.size, size)
                image = image.resize(size)
            return image
    raise FileNotFoundError(
        f"no picture of image {image_id} in {', '.join(map(str, folders))} ({'/'.join(IMAGE_SUFFIXES)})"
    )


@dataclass(frozen=True)
class _Encoded:
    token_ids: list[int]  # [CLS] c1 [SEP] c2 [SEP]
    segment_ids: list[int]
    tokens: list[str]
    phrase_positions: list[int]


def _encode(tokenizer, scene: _Scene, max_tokens: int) -> _Encoded:
    """Word pieces of the two captions and the phrase's positions (character offsets)."""
    proxies = [
        _Proxy(c.text, [_Span(scene.phrase_span)] if k == scene.phrase_caption else [])
        for k, c in enumerate(scene.captions)
    ]
    c1, c2 = tokenize_captions(tokenizer, proxies, max_tokens)
    span = (c1, c2)[scene.phrase_caption].phrase_spans[0]
    if span is None:
        raise VisualizeError(
            f"phrase {scene.phrase!r} lies past the first {max_tokens} word pieces"
        )
    offset = 1 if scene.phrase_caption == 0 else len(c1.token_ids) + 2
    ids = [
        tokenizer.cls_token_id,
        *c1.token_ids,
        tokenizer.sep_token_id,
        *c2.token_ids,
        tokenizer.sep_token_id,
    ]
    segments = [0] * (len(c1.token_ids) + 2) + [1] * (len(c2.token_ids) + 1)
    positions = list(range(span[0] + offset, span[1] + offset))
    return _Encoded(ids, segments, tokenizer.convert_ids_to_tokens(ids), positions)


# --- visualize ---------------------------------------------------------------------------


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
    outputs: Collection[str] = OUTPUTS,
) -> list[Path]:
    """Draws one sample's attention for each model; returns the files written.

    Writes ``<out_dir>/<model>/{head_view,model_view}.html`` and
    ``{heads,layers,rollout}.png``, ``<out_dir>/compare.png`` with several
    models, and ``<out_dir>/sample.json`` (captions, phrase, tokens, labels).

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
            first phrase grounded to a region.
        layers: layers shown (HTML views and PNGs; default all).
        heads: heads shown; the head averages and the compare figure average them.
        direction: the HTML views' block: ``"all"``, ``"text_to_region"``,
            ``"region_to_text"`` (the PNGs always show phrase → regions).
        regions: ``"ground_truth"``, ``"detected"`` or ``"all"`` boxes.
        compare_layer: layer of the compare figure's head average (``"last"``).
        max_caption_tokens: word pieces kept per caption.
        image_dir: folder of ``<image_id>.jpg`` (default: ``<root>/images`` …).
        dpi: resolution of the PNGs.
        outputs: the files to write, a subset of :data:`OUTPUTS` (the 72-panel
            head grid of a 6 × 12 model is most of the time: leave it out of a
            four-model comparison that needs only ``{"compare"}``).

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
    scene, feature_dim = _read_scene(
        root, split, str(image_id), captions, caption_index, phrase, regions, image_dir
    )
    loaded = [load_model(name, path, feature_dim) for name, path in models.items()]
    shown = {  # checked for every model before anything is written
        m.name: (
            _check(layers, m.encoder.config.num_hidden_layers, "layers", m.name),
            _check(heads, m.encoder.config.num_attention_heads, "heads", m.name),
        )
        for m in loaded
    }
    tokenizers: dict[str | None, Any] = {}
    encoded: dict[str | None, _Encoded] = {}
    for model in loaded:
        if model.bert not in tokenizers:
            tokenizers[model.bert] = load_tokenizer(model.bert)
            encoded[model.bert] = _encode(tokenizers[model.bert], scene, max_caption_tokens)

    boxes = scene.regions.boxes
    written, weights, rollouts, record = [], {}, {}, {}
    for model in loaded:
        sample = encoded[model.bert]
        shown_layers, shown_heads = shown[model.name]
        batch = pack(
            [sample.token_ids], [sample.segment_ids],
            [torch.from_numpy(scene.regions.features)], [torch.from_numpy(scene.regions.normalized_boxes)],
        )  # fmt: skip
        with torch.inference_mode():
            output = model.encoder(batch, output_attentions=True)
        cut = select_sample(output.attention.probs, output, 0)  # (L, H, n, n)
        labels = token_labels(sample.tokens, scene.region_names)
        html = {"layers": layers, "heads": heads, "direction": direction}
        html |= {"text_positions": cut.text_positions, "region_positions": cut.region_positions}
        folder = out / _folder_name(model.name)
        views = {"head_view": write_head_view, "model_view": write_model_view}
        written += [
            write(folder / f"{kind}.html", cut.attention, labels, **html)
            for kind, write in views.items()
            if kind in outputs
        ]
        phrase_weights = phrase_region_attention(
            cut.attention, sample.phrase_positions, cut.region_positions
        )
        rolled = phrase_region_attention(
            cut.rollout(), sample.phrase_positions, cut.region_positions
        )  # (L, R)
        weights[model.name] = phrase_weights[:, shown_heads]  # (L, H', R)
        rollouts[model.name] = rolled
        draw = {"outline": scene.grounded, "layers": shown_layers, "phrase": scene.phrase}
        figures = {  # kind: (plot, region weights, its own options)
            "heads": (plot_head_grid, phrase_weights, {"heads": shown_heads}),
            "layers": (plot_layer_average, weights[model.name], {}),
            "rollout": (plot_rollout, rolled, {}),
        }
        for kind, (plot, values, options) in figures.items():
            if kind in outputs:
                fig = plot(scene.image, boxes, values, **options, **draw)
                written.append(save_figure(fig, folder / f"{kind}.png", dpi=dpi))
        record[model.name] = {"source": model.source, "tokens": sample.tokens, "labels": labels}
        record[model.name] |= {"phrase_positions": sample.phrase_positions}
    if len(loaded) > 1 and "compare" in outputs:
        fig = plot_compare(
            scene.image, boxes, weights, layer=compare_layer, rollouts=rollouts,
            phrase=scene.phrase, outline=scene.grounded,
        )  # fmt: skip
        written.append(save_figure(fig, out / "compare.png", dpi=dpi))
    written.append(_write_json(out / "sample.json", _sample_record(scene, split, record)))
    return written


def _check(chosen: Sequence[int] | None, size: int, what: str, model: str) -> list[int]:
    if chosen is None:
        return list(range(size))
    out = sorted({int(i) for i in chosen})
    if not out or out[0] < 0 or out[-1] >= size:
        raise VisualizeError(
            f"{what} must lie in 0 … {size - 1} for model {model!r}, got {list(chosen)}"
        )
    return out


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip(".") or "model"


def _sample_record(scene: _Scene, split: str, models: dict) -> dict:
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


# --- grounding report ------------------------------------------------------------------


def grounding_report(
    out_dir: str | Path,
    *,
    data_root: str | Path,
    split: str,
    model_dir: str | Path | None,
    name: str | None = None,
    max_images: int | None = 100,
    batch_size: int = 16,
    regions: RegionSource = "ground_truth",
    device: str | torch.device = "cpu",
    dpi: float = 150,
) -> Path:
    """Grounding accuracy per layer and head (and of the rollout) over a split.

    The samples are those of the trainer's validation (:class:`VGPDataset` at
    epoch 0, with the run's ``max_caption_tokens``, negatives and seed), so with
    ``max_images`` = the run's ``data.max_val_images`` the numbers equal its
    ``grounding_per_head`` and ``rollout_per_layer`` (up to the precision the
    run validated in). Writes ``grounding[_<name>].png`` and the numbers as
    ``.json`` next to it.

    Args:
        out_dir: where the files go.
        data_root: data set root.
        split: the split (``<split>.txt`` and ``features/<split>.h5``).
        model_dir: a run's ``model/`` directory, or None for the default initialisation.
        name: the model's name, for the title and the file names.
        max_images: the split's first images used (None: all).
        batch_size: samples per forward pass.
        regions: which boxes the encoder sees.
        device: where the encoder runs.
        dpi: resolution of the PNG.

    Returns:
        The PNG.
    """
    root, out = Path(data_root), Path(out_dir)
    store_path = root / "features" / f"{split}.h5"
    with FeatureStore(store_path) as store:
        feature_dim = store.feature_dim
    model = load_model(name or INIT, model_dir, feature_dim)
    encoder = model.encoder.to(device)
    data, run = model.config.get("data", {}), model.config.get("run", {})
    dataset = VGPDataset(
        root, split, load_tokenizer(model.bert), regions=regions, max_images=max_images,
        max_caption_tokens=data.get("max_caption_tokens", MAX_CAPTION_TOKENS),
        negatives=data.get("negatives", "hard"), seed=run.get("seed", 0),
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_vgp)
    hits = rolled_hits = total = 0
    with torch.inference_mode():
        for batch in loader:
            batch = batch.to(device)
            output = encoder(batch.inputs, output_attentions=True)
            probs = output.attention.probs.float()  # (B, L, H, N, N)
            h, count = grounding_hits(probs, batch.grounding, output.region_mask)  # (L, H), ()
            r, _ = grounding_hits(
                rollout(probs, output.valid_mask), batch.grounding, output.region_mask
            )
            hits, rolled_hits, total = hits + h, rolled_hits + r[:, 0], total + count  # r: (L, 1)
    if not int(total):
        raise VisualizeError(f"split {split!r} of {root} gives no grounded text token")
    accuracy = hits.double().cpu() / int(total)  # (L, H)
    rolled = rolled_hits.double().cpu() / int(total)  # (L,)
    label = name or (model.source if model_dir is not None else INIT)
    fig = plot_grounding_accuracy(
        accuracy,
        rollout=rolled,
        title=f"Grounding accuracy: {label}, {split} ({len(dataset)} samples)",
    )
    stem = f"grounding_{_folder_name(name)}" if name else "grounding"
    png = save_figure(fig, out / f"{stem}.png", dpi=dpi)
    best = int(accuracy.argmax())
    H = accuracy.shape[1]
    _write_json(
        out / f"{stem}.json",
        {
            "model": label,
            "source": model.source,
            "split": split,
            "images": len(dataset.image_ids),
            "samples": len(dataset),
            "grounded_tokens": int(total),
            "accuracy": accuracy.tolist(),  # (L, H)
            "rollout": rolled.tolist(),  # (L,)
            "best": {"layer": best // H, "head": best % H, "accuracy": float(accuracy.max())},
            "mean": float(accuracy.mean()),
            "rollout_best": {"layer": int(rolled.argmax()), "accuracy": float(rolled.max())},
        },
    )
    return png


# --- command line ------------------------------------------------------------------------
