"""A feature store for any folder of images, with the pixel extractor.

Boxes come from a JSON file mapping an image's file stem to a list of pixel
boxes ``[x1, y1, x2, y2]`` (``{"1000": [[10, 20, 50, 80], ...]}``), stored as
detected boxes; without a file, each image gets a regular grid of boxes
(provenance GRID), for data sets without a detector. Every image also gets
its whole-image box first. What describes a box is a
:class:`~groundattn.data.backbone.RegionExtractor` (the pixel statistics by
default, or a pretrained CNN), run on batches of images.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from groundattn.config import ConfigError
from groundattn.data.backbone import PixelRegionExtractor, RegionExtractor
from groundattn.data.boxes import bad_box
from groundattn.data.errors import FormatError
from groundattn.data.extractor import grid_boxes
from groundattn.data.store import FeatureStoreWriter, Provenance, RegionFeatures
from groundattn.errors import MissingFileError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _read_boxes(path: Path) -> dict[str, np.ndarray]:
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(path, str(e), line=e.lineno) from None
    if not isinstance(raw, dict):
        raise FormatError(path, "expected an object mapping image ids to lists of [x1, y1, x2, y2]")
    boxes = {}
    for image_id, items in raw.items():
        try:
            array = np.asarray(items, dtype=np.float32)
        except (TypeError, ValueError):
            array = np.empty((0,))  # not a list of numbers: reported below
        if array.ndim != 2 or array.shape[1] != 4:
            raise FormatError(
                path,
                f"expected a list of [x1, y1, x2, y2], got shape {array.shape}",
                field=image_id,
            )
        problem = bad_box(array, np.inf, np.inf)  # the image's size is checked once it is read
        if problem:
            raise FormatError(path, problem, field=image_id)
        boxes[str(image_id)] = array
    return boxes


def _open_image(file: Path) -> Image.Image:
    try:
        image = Image.open(file)
        image.load()
    except (OSError, SyntaxError) as error:  # PIL's errors for a truncated or foreign file
        raise FormatError(file, f"not a readable image ({error})") from None
    return image


def _batches(files: list[Path], size: int):
    for i in range(0, len(files), size):
        yield files[i : i + size]


def featurize_images(
    images: str | Path,
    out: str | Path,
    *,
    boxes: str | Path | None = None,
    grid: tuple[int, int] = (4, 4),
    backbone: RegionExtractor | None = None,
    batch_size: int = 16,
) -> int:
    """Writes the store ``out`` for every image of ``images``; returns the image count.

    Args:
        images: a folder of images (``IMAGE_SUFFIXES``); the file stem is the image id.
        out: the ``.h5`` store to write (atomically).
        boxes: JSON of detected boxes per image stem; None: a ``grid`` of boxes.
        grid: rows and columns of the grid.
        backbone: what describes a box; default: the pixel statistics.
        batch_size: images given to the backbone at once.
    """
    images, out = Path(images), Path(out)
    backbone = backbone if backbone is not None else PixelRegionExtractor()
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MissingFileError(f"{images}: no image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    given = _read_boxes(Path(boxes)) if boxes is not None else None
    if given is not None:
        missing = sorted(set(given) - {f.stem for f in files})
        if missing:
            raise FormatError(
                Path(boxes), f"boxes for images not in {images}: {', '.join(missing[:5])}"
            )
        boxless = [f.stem for f in files if f.stem not in given]
        if boxless:
            log.warning(
                "%s: %d of %d images have no entry (e.g. %s): stored with the whole-image box alone",
                boxes, len(boxless), len(files), ", ".join(boxless[:3]),
            )  # fmt: skip
    columns, rows = grid
    if columns < 1 or rows < 1:
        raise ConfigError(
            f"--grid: expected two positive integers (columns rows), got {columns} {rows}"
        )
    if batch_size < 1:
        raise ConfigError(f"--batch-size: expected a positive integer, got {batch_size}")
    with (
        FeatureStoreWriter(out, backbone.feature_dim) as writer,
        tqdm(total=len(files), desc=f"features ({backbone.name})", unit="image") as progress,
    ):
        for batch in _batches(files, batch_size):
            pictures, layouts = [], []
            for file in batch:
                with _open_image(file) as image:
                    pictures.append(image.convert("RGB"))
                layouts.append(
                    _layout(pictures[-1], file, given, Path(boxes) if boxes else None, grid)
                )
            features = backbone.extract(pictures, [layout.boxes for layout in layouts])
            for file, layout, values in zip(batch, layouts, features, strict=True):
                writer.add(
                    file.stem,
                    RegionFeatures(
                        boxes=layout.boxes,
                        features=values,
                        provenance=layout.provenance,
                        width=layout.width,
                        height=layout.height,
                    ),
                )
            progress.update(len(batch))
    return len(files)


def _layout(
    image: Image.Image,
    file: Path,
    given: dict[str, np.ndarray] | None,
    boxes_file: Path | None,
    grid: tuple[int, int],
) -> RegionFeatures:
    """The whole-image box then the image's own (given or grid) boxes, with no features yet."""
    w, h = image.size
    if given is not None:
        own = given.get(file.stem, np.zeros((0, 4), np.float32))
        problem = bad_box(own, w, h)
        if problem:
            raise FormatError(boxes_file, f"{problem} {file.name}", field=file.stem)
        provenance = Provenance.DETECTED
    else:
        own = grid_boxes(w, h, *grid).astype(np.float32)
        provenance = Provenance.GRID
    return RegionFeatures(
        boxes=np.concatenate([np.array([[0, 0, w, h]], np.float32), own]),
        features=np.zeros((len(own) + 1, 0), np.float32),
        provenance=np.array([Provenance.WHOLE_IMAGE] + [provenance] * len(own), np.uint8),
        width=w,
        height=h,
    )
