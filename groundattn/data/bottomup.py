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

Conversion (:func:`tsv_to_store`) streams: memory stays that of a few lines
whatever the size of the file. ``workers`` processes decode and check the lines
while the main process writes, in the file's order, so the store is the same for
any number of workers. Features are stored as float16 by default (see
:mod:`groundattn.data.store`). Every ``checkpoint_every`` images the partial
store is flushed with where in the TSV it stands; a conversion that was killed or
interrupted continues from there with ``resume=True``, and gives the store an
uninterrupted one would. A malformed line removes the partial store (the TSV must
be fixed; nothing of it can be trusted to resume against).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import logging
import multiprocessing
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from groundattn.data.boxes import bad_box
from groundattn.data.errors import FormatError
from groundattn.data.store import (
    FLOAT16_LIMIT,
    FeatureStoreWriter,
    Provenance,
    RegionFeatures,
    to_float16,
)
from groundattn.errors import ExistingFileError, GroundattnError, MissingFileError

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
        raise FormatError(
            path, f"invalid base64 ({err}; {len(raw)} characters)", line=line, field=name
        ) from None


def _float32_rows(data: bytes, rows: int, name: str, path: Path, line: int) -> np.ndarray:
    # A read-only view of the decoded bytes: no copy on a little-endian machine.
    array = np.frombuffer(data, dtype=_FLOAT32_LE).astype(np.float32, copy=False)
    array = array.reshape(rows, -1)
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
    for line, raw, _, _, ended in _lines(path):
        image = _parse_checked(raw, fieldnames, path, line, feature_dim, ended)
        feature_dim = image.features.shape[1]
        yield image


def _lines(
    path: Path, offset: int = 0, before: int = 0
) -> Iterator[tuple[int, bytes, int, int, bool]]:
    """(line number, line without its end, start, end offsets, ended) of each non-blank line.

    ``offset``, ``before``: where to start, and the number of the line before it.
    ``ended`` is false for a last line without a line end: a file cut off there.
    """
    with path.open("rb") as file:
        file.seek(offset)
        for line, raw in enumerate(file, before + 1):
            start, offset = offset, offset + len(raw)
            ended = raw.endswith(b"\n")
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield line, raw, start, offset, ended


def _parse_checked(
    raw: bytes,
    fieldnames: Sequence[str],
    path: Path,
    line: int,
    feature_dim: int | None,
    ended: bool = True,
) -> TsvImage:
    """One line; for a last line without a line end, an error says the file is cut off."""
    fields = raw.split(b"\t")
    try:
        if len(fields) != len(fieldnames):
            raise FormatError(
                path,
                f"expected {len(fieldnames)} tab-separated fields ({', '.join(fieldnames)}), "
                f"got {len(fields)}",
                line=line,
            )
        return _parse_line(dict(zip(fieldnames, fields, strict=True)), path, line, feature_dim)
    except FormatError as error:
        if ended:
            raise
        raise _cut_off(error, fields, fieldnames, feature_dim) from None


def _cut_off(
    error: FormatError, fields: list[bytes], fieldnames: Sequence[str], feature_dim: int | None
) -> FormatError:
    """The error of a last line without a line end: the file is cut off inside it."""
    last = fieldnames[min(len(fields), len(fieldnames)) - 1]
    found = f"it stops in field {last} after {len(fields[-1])} characters"
    if last == "features" and feature_dim and len(fields) == len(fieldnames):
        named = dict(zip(fieldnames, fields, strict=True))
        try:
            num_boxes = int(named["num_boxes"])
            complete = 4 * -(-num_boxes * feature_dim * 4 // 3)  # base64 of K × F float32
            found = (
                f"it stops in field features after {len(fields[-1])} of the {complete} base64 "
                f"characters of num_boxes = {num_boxes} × F = {feature_dim} float32"
            )
        except ValueError:
            pass
    return FormatError(
        error.path,
        f"the file ends inside this line, without a line end: cut off (as a killed download "
        f"or copy leaves it)? {found}; {error.message}",
        line=error.line,
        field=error.field,
    )


def _boxes_fit(boxes: np.ndarray, width: int, height: int, slack: float = 1.0) -> bool:
    """Whether :func:`bad_box` finds nothing wrong, without its loop over the boxes."""
    x1, y1, x2, y2 = boxes.astype(np.float64).T  # (K,) each
    with np.errstate(invalid="ignore"):
        return bool(
            np.isfinite(boxes).all()
            and (x2 > x1).all()
            and (y2 > y1).all()
            and min(x1.min(), y1.min()) >= -slack
            and x2.max() <= width + slack
            and y2.max() <= height + slack
        )


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
    problem = None if _boxes_fit(boxes, width, height) else bad_box(boxes, width, height)
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


_Line = tuple[int, bytes, int, int, bool]  # see _lines


def _convert_lines(
    path: Path,
    fieldnames: Sequence[str],
    feature_dim: int,
    feature_dtype: str,
    lines: list[_Line],
) -> list[tuple[str, RegionFeatures]]:
    """Parsed, checked and converted lines: what a worker process does."""
    out = []
    for line, raw, _, _, ended in lines:
        image = _parse_checked(raw, fieldnames, path, line, feature_dim, ended)
        regions = with_whole_image(image)
        if feature_dtype == "float16":
            big = float(np.abs(regions.features).max())
            if big >= FLOAT16_LIMIT:
                raise FormatError(
                    path,
                    f"a feature of magnitude {big:g} overflows float16 (max 65504); "
                    "convert with float32 features",
                    line=line,
                    field="features",
                )
            regions = dataclasses.replace(regions, features=to_float16(regions.features))
        out.append((image.image_id, regions))
    return out


@contextlib.contextmanager
def _worker_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """Worker processes, started now (before the store is opened: none inherits it).

    Even one worker is a process of its own: decoding there keeps the writing
    process's memory flat however long the file (decoding and writing in one
    process fragments glibc's heap: its peak grew from 374 to 495 MiB between a
    1,000- and a 2,000-image TSV, ``benchmarks/features.py``), and the two overlap.
    """
    context = multiprocessing.get_context("fork")  # no re-import of the caller's __main__
    # Ctrl-C is the main process's to handle: it keeps the partial store for a resume.
    ignore = functools.partial(signal.signal, signal.SIGINT, signal.SIG_IGN)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=ignore) as pool:
        pool.submit(int).result()  # a fork pool starts all its workers on the first task
        try:
            yield pool
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _converted(
    batches: Iterator[list[_Line]], convert, pool: ProcessPoolExecutor
) -> Iterator[tuple[list[_Line], list[tuple[str, RegionFeatures]]]]:
    """(batch, converted batch) in the file's order; at most 2 per worker in flight."""
    pending: deque = deque()
    for batch in batches:
        pending.append((batch, pool.submit(convert, batch)))
        if len(pending) >= 2 * pool._max_workers:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()


def _digest(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _read_line(path: Path, start: int, end: int) -> bytes:
    with path.open("rb") as file:
        file.seek(start)
        return file.read(end - start).rstrip(b"\r\n")


def _converted_from(attrs, tsv_path: Path, fieldnames: Sequence[str]) -> str | None:
    """Why the store or partial store with ``attrs`` is not a conversion of this TSV (or None)."""
    if attrs.get("bottomup_fields") != ",".join(fieldnames):
        return f"not converted with the fields {','.join(fieldnames)}"
    first = next(_lines(tsv_path), None)
    if first is None or attrs.get("bottomup_first") != _digest(first[1]):
        return f"not converted from {tsv_path} (its first line differs)"
    start, end = int(attrs["bottomup_last_start"]), int(attrs["bottomup_offset"])
    if end and (
        tsv_path.stat().st_size < end
        or attrs["bottomup_last"] != _digest(_read_line(tsv_path, start, end))
    ):
        return f"not converted from {tsv_path} (its line {int(attrs['bottomup_line'])} differs)"
    return None


def _checkpoint(writer: FeatureStoreWriter, line: _Line | None, images: int) -> None:
    number, raw, start, end, _ = line or (0, b"", 0, 0, True)
    writer.file.attrs.update(
        {
            "bottomup_line": number,
            "bottomup_last_start": start,
            "bottomup_offset": end,
            "bottomup_last": _digest(raw),
            "bottomup_images": images,
        }
    )
    writer.flush()


def _complete_store(store_path: Path, tsv_path: Path, fieldnames: Sequence[str]) -> int:
    """Images of an existing store that is a complete conversion of the TSV; else an error."""
    try:
        with h5py.File(store_path, "r") as file:
            attrs = dict(file.attrs)
    except OSError:
        attrs = {}
    why = (
        _converted_from(attrs, tsv_path, fieldnames)
        if "bottomup_offset" in attrs
        else "not written by groundattn prepare bottomup"
    )
    if why is None and int(attrs["bottomup_offset"]) == tsv_path.stat().st_size:
        return int(attrs["bottomup_images"])
    raise ExistingFileError(f"{store_path} exists and is {why or 'not complete'}; it is kept")


def _resume(writer: FeatureStoreWriter, tsv_path: Path, fieldnames: Sequence[str]) -> tuple:
    """(byte offset, line number, images) where the partial store stands; later images removed."""
    attrs = writer.file.attrs
    why = _converted_from(attrs, tsv_path, fieldnames) if "bottomup_offset" in attrs else "empty"
    if why is not None:
        writer.suspend()
        raise FormatError(writer.partial, f"cannot be resumed: {why}; it is kept")
    line = int(attrs["bottomup_line"])
    images = writer.images
    # Images written after the last checkpoint (the kill came before the next one).
    for key in [k for k, g in images.items() if g.attrs.get("tsv_line", line + 1) > line]:
        del images[key]
    logger.info("%s: resuming after line %d (%d images)", writer.partial, line, len(images))
    return int(attrs["bottomup_offset"]), line, len(images)


def tsv_to_store(
    tsv_path: str | Path,
    store_path: str | Path,
    fieldnames: Sequence[str] = BOTTOMUP_FIELDS,
    *,
    feature_dtype: str = "float16",
    workers: int = 1,
    resume: bool = False,
    **options: int,
) -> int:
    """Streams a TSV into a feature store, adding the whole-image box to each image.

    The store is written to ``<store_path>.partial`` and renamed when complete. A
    malformed line removes the partial store; an interruption (Ctrl-C, a kill)
    keeps it, flushed at the last checkpoint, for ``resume``.

    Args:
        tsv_path: the bottom-up-attention TSV.
        store_path: the HDF5 store to write; never replaced.
        fieldnames: see :func:`iter_tsv`.
        feature_dtype: ``float16`` (half the size) or ``float32``.
        workers: processes that decode and check lines (the store is the same
            for any number).
        resume: continue the conversion that ``<store_path>.partial`` holds (start
            one if there is none); a complete ``store_path`` of this TSV is kept as
            it is and its number of images returned.
        options: ``log_every`` (progress is logged every this many images,
            10,000), ``checkpoint_every`` (the partial store is flushed every this
            many images, 1,000), ``batch_lines`` (lines handed to a worker at once, 8).

    Returns:
        The number of images in the store.

    Raises:
        FormatError: malformed TSV (see :func:`iter_tsv`; a last line without a
            line end says that the file is cut off), an empty file, an image id
            seen twice, a feature that overflows float16, or a partial store that
            is not of this TSV.
        ExistingFileError: ``store_path`` exists (and is not a complete conversion
            of this TSV, with ``resume``), or ``<store_path>.partial`` exists and
            ``resume`` is false.
    """
    tsv_path, store_path = Path(tsv_path), Path(store_path)
    options = {"log_every": 10_000, "checkpoint_every": 1_000, "batch_lines": 8, **options}
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not tsv_path.is_file():
        raise MissingFileError(f"TSV {tsv_path} does not exist")
    if store_path.exists() and resume:
        images = _complete_store(store_path, tsv_path, fieldnames)
        logger.info("%s: already complete (%d images of %s)", store_path, images, tsv_path)
        return images
    if store_path.exists():
        raise ExistingFileError(
            f"{store_path} exists; choose another --out or remove it (--resume keeps a "
            "complete store of this TSV)"
        )
    partial = store_path.with_name(store_path.name + ".partial")
    if not resume and partial.exists():
        raise ExistingFileError(
            f"{partial} exists: an interrupted conversion (continue it with --resume), "
            "or not groundattn's (then remove it)"
        )
    with _worker_pool(workers) as pool:
        return _convert(tsv_path, store_path, fieldnames, feature_dtype, resume, pool, **options)


def _convert(
    tsv_path: Path,
    store_path: Path,
    fieldnames: Sequence[str],
    feature_dtype: str,
    resume: bool,
    pool: ProcessPoolExecutor,
    log_every: int,
    checkpoint_every: int,
    batch_lines: int,
) -> int:
    partial = store_path.with_name(store_path.name + ".partial")
    if resume and partial.exists():
        with h5py.File(partial, "r") as file:
            feature_dim = int(file.attrs["feature_dim"])
            feature_dtype = str(file.attrs.get("feature_dtype", "float32"))
        writer = FeatureStoreWriter(store_path, feature_dim, feature_dtype, resume=True)
        offset, line, images = _resume(writer, tsv_path, fieldnames)
    else:
        first = next(_lines(tsv_path), None)
        if first is None:
            raise FormatError(tsv_path, "no image in the file")
        regions = _convert_lines(tsv_path, fieldnames, None, feature_dtype, [first])[0][1]
        feature_dim = regions.features.shape[1]
        writer = FeatureStoreWriter(store_path, feature_dim, feature_dtype)
        writer.file.attrs.update(
            {"bottomup_fields": ",".join(fieldnames), "bottomup_first": _digest(first[1])}
        )
        _checkpoint(writer, None, 0)
        offset, line, images = 0, 0, 0
    convert = functools.partial(_convert_lines, tsv_path, fieldnames, feature_dim, feature_dtype)
    batches = _batched(_lines(tsv_path, offset, line), batch_lines)
    last, checkpointed = None, images
    try:
        for batch, converted in _converted(batches, convert, pool):
            for tsv_line, (image_id, regions) in zip(batch, converted, strict=True):
                if image_id in writer.images:
                    first_line = writer.images[image_id].attrs.get("tsv_line")
                    raise FormatError(
                        tsv_path,
                        f"image {image_id} already on line {first_line}",
                        line=tsv_line[0],
                        field="image_id",
                    )
                writer.add(image_id, regions, attrs={"tsv_line": tsv_line[0]})
                last, images = tsv_line, images + 1
                if images % log_every == 0:
                    logger.info("%s: %d images written", tsv_path, images)
            if images - checkpointed >= checkpoint_every:
                _checkpoint(writer, last, images)
                checkpointed = images
        if last is not None:
            _checkpoint(writer, last, images)
    except (GroundattnError, ValueError):  # the data are wrong: nothing is kept
        writer.abort()
        raise
    except BaseException:  # interrupted, killed or out of disk: kept for a resume
        try:
            if last is not None:
                _checkpoint(writer, last, images)
        finally:
            writer.suspend()
        raise
    writer.close()
    logger.info("%s: %d images written to %s", tsv_path, images, store_path)
    return images


def _batched(items: Iterator, size: int) -> Iterator[list]:
    while batch := list(itertools.islice(items, size)):
        yield batch
