"""The sample every model of a visualisation sees, read from a data set root.

:func:`read_scene` reads one image of a split (Flickr30k Entities layout with
``features/<split>.h5``, such as the embedded scenes): its regions, two
captions (the data set's or given ones), the phrase to draw and the regions it
is grounded to, a name per region and the picture. :func:`encode_captions`
lays the captions out for one tokenizer (METHOD §2) and finds the phrase's word
pieces. Everything is read once, whatever the number of models.

Shapes: R regions (r0 included).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from groundattn.data.flickr30k import (
    Caption,
    Phrase,
    parse_caption,
    read_annotations,
    read_sentences,
)
from groundattn.data.regions import ImageRegions, ground_chains, select_regions
from groundattn.data.store import FeatureStore
from groundattn.data.text import tokenize_captions
from groundattn.errors import MissingFileError
from groundattn.viz.errors import VisualizeError

logger = logging.getLogger(__name__)

IMAGE_FOLDERS = ("images", "flickr30k-images", "flickr30k_images")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class SharedSample:
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


def read_scene(
    root: Path, split: str, image_id: str, captions, caption_index, phrase, regions, image_dir
) -> tuple[SharedSample, int]:
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
    which, span, text, chain = _find_phrase(pair, phrase, chains, len(selected) - 1)
    names = _region_names(root, split, image_id, selected, chains, [*own, *pair])
    image = _open_image(root, image_id, image_dir, size)
    scene = SharedSample(
        image_id, image, selected, names, pair, text, which, span, chains.get(chain, [])
    )
    return scene, feature_dim


def _find_phrase(pair, phrase: str | None, chains: Mapping[str, list[int]], boxes: int):
    """(caption 0/1, character span, text, chain id) of the phrase to draw.

    By default the first visual phrase grounded to some of the ``boxes`` (r0
    left out) but not all, as only such a phrase can show whether a model
    looks at the right ones; else the first grounded one, else the first visual one.
    """
    marked = [(k, p) for k, c in enumerate(pair) for p in c.phrases]
    if phrase is None:
        visual = [(k, p) for k, p in marked if p.is_visual]
        grounded = [(k, p) for k, p in visual if chains.get(p.chain_id)]
        strict = [(k, p) for k, p in grounded if len(chains[p.chain_id]) < boxes]
        chosen = next(iter(strict + grounded + visual), None)
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
        for line in lines:  # JSON lines: one image per line
            parsed = json.loads(line) if line.strip() else {}
            if str(parsed.get("image_id")) == image_id:
                record = parsed
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
    raise MissingFileError(
        f"no picture of image {image_id} in {', '.join(map(str, folders))} ({'/'.join(IMAGE_SUFFIXES)})"
    )


@dataclass(frozen=True)
class EncodedCaptions:
    """The two captions laid out for one tokenizer, and where the phrase's word pieces are."""

    token_ids: list[int]  # [CLS] c1 [SEP] c2 [SEP]
    segment_ids: list[int]
    tokens: list[str]
    phrase_positions: list[int]


@dataclass(frozen=True)
class _Span:  # what tokenize_captions reads of a phrase ...
    char_span: tuple[int, int]


@dataclass(frozen=True)
class _Proxy:  # ... and of a caption
    text: str
    phrases: list[_Span]


def encode_captions(tokenizer, scene: SharedSample, max_tokens: int) -> EncodedCaptions:
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
    return EncodedCaptions(ids, segments, tokenizer.convert_ids_to_tokens(ids), positions)
