"""Bottom-up-attention TSV region features, streamed into the feature store.

A TSV (Anderson et al. 2018; used by LXMERT, VL-BERT …) holds one image per line,
tab-separated, without header: ``image_id, image_w, image_h, num_boxes, boxes,
features``; ``boxes`` (num_boxes × 4, ``x1 y1 x2 y2`` pixels) and ``features``
(num_boxes × F) are base64 of little-endian float32 bytes. Files are tens of GB:
they are read one line at a time.

The lines are split on tabs rather than with :mod:`csv`: the fields (numbers and
base64) never need quoting, and this avoids raising the process-wide csv field
size limit that a multi-megabyte field would otherwise need.

The TSV has no whole-image box. :func:`tsv_to_store` adds one as the first region
(``r0`` of the VL-BERT layout), as VL-BERT does: box ``(0, 0, w, h)``, feature the
mean of the image's region features, provenance ``WHOLE_IMAGE``; the TSV's boxes
follow with provenance ``DETECTED``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groundattn.data.boxes import bad_box
from groundattn.data.errors import FormatError
from groundattn.data.store import FeatureStoreWriter, Provenance, RegionFeatures

logger = logging.getLogger(__name__)

BOTTOMUP_FIELDS = ("image_id", "image_w", "image_h", "num_boxes", "boxes", "features")
_FLOAT32_LE = np.dtype("<f4")


@dataclass(frozen=True)
class TsvImage:
    """One line of a bottom-up-attention TSV."""

    image_id: str
    width: int
    height: int
    boxes: np.ndarray  # (K, 4) float32, pixels, x1 y1 x2 y2
    features: np.ndarray  # (K, F) float32
    line: int  # line of the TSV, for messages


def _positive_int(raw: bytes, name: str, path: Path, line: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise FormatError(
            path, f"expected an integer, got {raw[:40]!r}", line=line, field=name
        ) from None
    if value <= 0:
        raise FormatError(path, f"expected a positive integer, got {value}", line=line, field=name)
    return value


def _decode(raw: bytes, name: str, path: Path, line: int) -> bytes:
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error as err:
        raise FormatError(path, f"invalid base64 ({err})", line=line, field=name) from None


def _float32_rows(data: bytes, rows: int, name: str, path: Path, line: int) -> np.ndarray:
    array = np.frombuffer(data, dtype=_FLOAT32_LE).astype(np.float32).reshape(rows, -1)
    if not np.isfinite(array).all():
        raise FormatError(path, "contains NaN or infinite values", line=line, field=name)
    return array


def iter_tsv(path: str | Path, fieldnames: Sequence[str] = BOTTOMUP_FIELDS) -> Iterator[TsvImage]:
    """Yields the images of a bottom-up-attention TSV, one line at a time.

    Args:
        path: the TSV.
        fieldnames: names of the tab-separated fields in order; must include those of
            ``BOTTOMUP_FIELDS`` (other layouts, e.g. LXMERT's with object classes,
            name theirs; the fields not listed there are skipped).

    Raises:
        FormatError: naming the line and field: a wrong number of fields, a
            non-integer size or ``num_boxes``, bad base64, a byte count that is not
            ``num_boxes × 4 × 4`` for boxes or ``num_boxes × F × 4`` for features, a
            feature size F that differs from the first line's, non-finite values.
    """
    path = Path(path)
    missing = [name for name in BOTTOMUP_FIELDS if name not in fieldnames]
    if missing:
        raise ValueError(f"fieldnames {list(fieldnames)} lack {missing}")
    feature_dim: int | None = None
    with path.open("rb") as file:
        for line, raw in enumerate(file, 1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            fields = raw.split(b"\t")
            if len(fields) != len(fieldnames):
                raise FormatError(
                    path,
                    f"expected {len(fieldnames)} tab-separated fields ({', '.join(fieldnames)}), "
                    f"got {len(fields)}",
                    line=line,
                )
            image = _parse_line(dict(zip(fieldnames, fields, strict=True)), path, line, feature_dim)
            feature_dim = image.features.shape[1]
            yield image


def _parse_line(
    fields: dict[str, bytes], path: Path, line: int, feature_dim: int | None
) -> TsvImage:
    """One TSV line; ``feature_dim`` is F of the first line (None on the first line)."""
    try:
        image_id = fields["image_id"].decode("utf-8").strip()
    except UnicodeDecodeError:
        image_id = ""
    if not image_id:
        raise FormatError(path, "expected a non-empty UTF-8 id", line=line, field="image_id")
    width, height, num_boxes = (
        _positive_int(fields[name], name, path, line)
        for name in ("image_w", "image_h", "num_boxes")
    )

    box_bytes = _decode(fields["boxes"], "boxes", path, line)
    if len(box_bytes) != num_boxes * 4 * 4:
        hint = " (float64 boxes?)" if len(box_bytes) == num_boxes * 4 * 8 else ""
        raise FormatError(
            path,
            f"expected num_boxes × 4 × 4 = {num_boxes * 16} bytes of float32, "
            f"got {len(box_bytes)}{hint}",
            line=line,
            field="boxes",
        )
    feature_bytes = _decode(fields["features"], "features", path, line)
    dim, remainder = divmod(len(feature_bytes), num_boxes * 4)
    if remainder or dim == 0 or dim != (feature_dim or dim):
        size = f"F = {feature_dim} (from the first line)" if feature_dim else "F"
        raise FormatError(
            path,
            f"expected num_boxes × {size} × 4 bytes of float32 with num_boxes = "
            f"{num_boxes}, got {len(feature_bytes)}",
            line=line,
            field="features",
        )
    boxes = _float32_rows(box_bytes, num_boxes, "boxes", path, line)
    problem = bad_box(boxes, width, height)
    if problem:
        raise FormatError(path, f"{problem} (image {image_id})", line=line, field="boxes")
    return TsvImage(
        image_id=image_id,
        width=width,
        height=height,
        boxes=boxes,
        features=_float32_rows(feature_bytes, num_boxes, "features", path, line),
        line=line,
    )


def with_whole_image(image: TsvImage) -> RegionFeatures:
    """The image's regions for the store, the whole-image box ``r0`` first."""
    whole_box = np.array([[0.0, 0.0, image.width, image.height]], dtype=np.float32)  # (1, 4)
    whole_feature = image.features.mean(axis=0, keepdims=True)  # (1, F)
    num_boxes = image.boxes.shape[0]
    provenance = np.full(num_boxes + 1, Provenance.DETECTED, dtype=np.uint8)  # (K + 1,)
    provenance[0] = Provenance.WHOLE_IMAGE
    return RegionFeatures(
        boxes=np.concatenate([whole_box, image.boxes]),  # (K + 1, 4)
        features=np.concatenate([whole_feature, image.features]),  # (K + 1, F)
        provenance=provenance,
        width=image.width,
        height=image.height,
    )


def tsv_to_store(
    tsv_path: str | Path,
    store_path: str | Path,
    fieldnames: Sequence[str] = BOTTOMUP_FIELDS,
    log_every: int = 10_000,
) -> int:
    """Streams a TSV into a feature store, adding the whole-image box to each image.

    The store is written atomically: on any error nothing is left at ``store_path``.

    Args:
        tsv_path: the bottom-up-attention TSV.
        store_path: the HDF5 store to write (replaced if it exists).
        fieldnames: see :func:`iter_tsv`.
        log_every: log progress every this many images.

    Returns:
        The number of images written.

    Raises:
        FormatError: malformed TSV (see :func:`iter_tsv`), an empty file, or an
            image id seen twice.
    """
    tsv_path = Path(tsv_path)
    images = iter_tsv(tsv_path, fieldnames)
    first = next(images, None)
    if first is None:
        raise FormatError(tsv_path, "no image in the file")
    count = 0
    with FeatureStoreWriter(store_path, feature_dim=first.features.shape[1]) as writer:
        seen: dict[str, int] = {}
        for image in itertools.chain([first], images):
            if image.image_id in seen:
                raise FormatError(
                    tsv_path,
                    f"image {image.image_id} already on line {seen[image.image_id]}",
                    line=image.line,
                    field="image_id",
                )
            seen[image.image_id] = image.line
            writer.add(image.image_id, with_whole_image(image))
            count += 1
            if count % log_every == 0:
                logger.info("%s: %d images written", tsv_path, count)
    logger.info("%s: %d images written to %s", tsv_path, count, store_path)
    return count
