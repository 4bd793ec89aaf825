"""Region feature store: one HDF5 file per split, random access by image id.

Layout of the file: one group per image under ``/images/<image_id>`` holding
``boxes`` (K, 4) float32 pixel ``x1 y1 x2 y2``, ``features`` (K, F) float32 or
float16 (the writer's ``feature_dtype``; readers always return float32),
``provenance`` (K,) uint8 (see :class:`Provenance`), and the attributes
``width`` and ``height``. The file attribute ``feature_dim`` is F.

float16 halves the size of the store (a 20,000-image bottom-up store: 3 GB instead
of 6 GB) and of what a random read moves; region features of a CNN after ReLU and
pooling lie well inside its range (±65504), and its 11-bit mantissa (relative error
≤ 2^-11) is below what training on them resolves. The writer refuses values that
overflow it rather than store inf.

Files are opened lazily, once per process, so a store can be handed to
DataLoader workers: each worker opens its own read-only handle.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from groundattn.data.boxes import normalize_boxes
from groundattn.data.errors import FormatError
from groundattn.errors import ExistingFileError, MissingFileError, NonFiniteError


class Provenance(enum.IntEnum):
    """Where a box comes from."""

    WHOLE_IMAGE = 0
    GROUND_TRUTH = 1
    DETECTED = 2
    GRID = 3


@dataclass(frozen=True)
class RegionFeatures:
    """The regions of one image."""

    boxes: np.ndarray  # (K, 4) float32, pixels, x1 y1 x2 y2
    features: np.ndarray  # (K, F) float32
    provenance: np.ndarray  # (K,) uint8, Provenance codes
    width: int
    height: int


FEATURE_DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class RegionStatistics:
    """What :meth:`FeatureStore.statistics` reads: float64 arrays."""

    feature_mean: np.ndarray  # (F,)
    feature_std: np.ndarray  # (F,) population standard deviation
    boxes: np.ndarray  # (N, 4) x1 y1 x2 y2 divided by the image's width and height


class FeatureStoreWriter:
    """Writes a store atomically: to ``<path>.partial``, renamed on close.

    Args:
        path: the store to write.
        feature_dim: F.
        feature_dtype: how features are stored, ``float32`` or ``float16``.
        resume: add to the ``<path>.partial`` that an interrupted writer left
            (:meth:`flush` made what it holds durable) instead of starting one.

    Raises:
        ExistingFileError: ``<path>.partial`` exists and ``resume`` is false: it may
            be another run's, or a user's; it is never replaced.
        MissingFileError: ``resume`` and there is no ``<path>.partial``.
        FormatError: ``resume`` and the partial is not a store of this F and dtype.
    """

    def __init__(
        self,
        path: str | Path,
        feature_dim: int,
        feature_dtype: str = "float32",
        resume: bool = False,
    ):
        if feature_dtype not in FEATURE_DTYPES:
            raise ValueError(
                f"feature_dtype must be one of {FEATURE_DTYPES}, got {feature_dtype!r}"
            )
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.feature_dim, self.feature_dtype = feature_dim, np.dtype(feature_dtype)
        if resume:
            self.file = _open_partial(self.partial, feature_dim, feature_dtype)
            self.images = self.file["images"]
            return
        if self.partial.exists():
            raise ExistingFileError(
                f"{self.partial} exists (left by an interrupted run, or not groundattn's); "
                "resume that run, or remove the file"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.partial, "w-")
        self.file.attrs["feature_dim"] = feature_dim
        self.file.attrs["feature_dtype"] = feature_dtype
        self.images = self.file.create_group("images")

    def add(
        self,
        image_id: str | int,
        regions: RegionFeatures,
        attrs: Mapping[str, int | str] | None = None,
    ) -> None:
        """Adds one image; raises ValueError on inconsistent shapes or a repeated id.

        ``attrs``: more attributes of the image's group (e.g. the source line).
        """
        key = str(image_id)
        if not key or "/" in key or key in (".", ".."):
            raise ValueError(
                f"image id {key!r} cannot name an HDF5 group (empty, '/', '.' or '..')"
            )
        k = regions.boxes.shape[0]
        if regions.boxes.shape != (k, 4):
            raise ValueError(f"image {key}: boxes must be (K, 4), got {regions.boxes.shape}")
        if regions.features.shape != (k, self.feature_dim):
            raise ValueError(
                f"image {key}: features must be ({k}, {self.feature_dim}), "
                f"got {regions.features.shape}"
            )
        if regions.provenance.shape != (k,):
            raise ValueError(
                f"image {key}: provenance must be ({k},), got {regions.provenance.shape}"
            )
        if key in self.images:
            raise ValueError(f"image {key} is already in {self.path}")
        for name in ("boxes", "features"):
            _check_finite(getattr(regions, name), self.path, key, name)
        features = regions.features
        if features.dtype != self.feature_dtype:
            if self.feature_dtype == np.float16 and np.abs(features).max() >= FLOAT16_LIMIT:
                raise ValueError(
                    f"image {key}: a feature of magnitude {float(np.abs(features).max()):g} "
                    "overflows float16 (max 65504); store float32 features"
                )
            features = (to_float16 if self.feature_dtype == np.float16 else np.float32)(features)
        group = self.images.create_group(key)
        group.create_dataset("boxes", data=regions.boxes.astype(np.float32, copy=False))
        group.create_dataset("features", data=features)
        group.create_dataset("provenance", data=regions.provenance.astype(np.uint8, copy=False))
        group.attrs["width"] = int(regions.width)
        group.attrs["height"] = int(regions.height)
        for name, value in (attrs or {}).items():
            group.attrs[name] = value

    def flush(self) -> None:
        """Makes what was added so far durable in ``<path>.partial`` (for a resume)."""
        self.file.flush()

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()
            os.replace(self.partial, self.path)

    def abort(self) -> None:
        """Closes and removes ``<path>.partial``: on an error nothing is left behind."""
        self.file.close()
        self.partial.unlink(missing_ok=True)

    def suspend(self) -> None:
        """Closes and keeps ``<path>.partial`` as it is, for a resume."""
        if self.file.id.valid:
            self.file.close()

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


FLOAT16_LIMIT = 65520.0  # float32 values of this magnitude or more round to inf in float16
# float16 → float32 by table: exact, and 10× faster than numpy's cast.
_FLOAT32_OF_FLOAT16 = np.arange(2**16, dtype=np.uint16).view(np.float16).astype(np.float32)


def to_float16(values: np.ndarray) -> np.ndarray:
    """float32 → float16, rounded to nearest even as ``astype`` does, several times faster.

    numpy converts in scalar code; torch's vectorised conversion gives the same bits.
    Chunks of at most 16,384 values keep torch on this thread (no pool start-up, and
    no threads inside DataLoader or conversion workers).
    """
    import torch

    flat = torch.from_numpy(np.ascontiguousarray(values, np.float32).reshape(-1))
    out = torch.empty(flat.shape, dtype=torch.float16)
    for source, target in zip(flat.split(16_384), out.split(16_384), strict=True):
        target.copy_(source)
    return out.numpy().reshape(values.shape)


def to_float32(values: np.ndarray) -> np.ndarray:
    """Features read from a store as float32 (an exact table lookup for float16)."""
    if values.dtype == np.float16:
        return np.take(_FLOAT32_OF_FLOAT16, values.view(np.uint16))
    return values.astype(np.float32, copy=False)


def _open_partial(partial: Path, feature_dim: int, feature_dtype: str) -> h5py.File:
    """An interrupted writer's ``<path>.partial``, opened to add to, if it fits."""
    if not partial.is_file():
        raise MissingFileError(f"{partial} does not exist: there is no interrupted run to resume")
    try:
        file = h5py.File(partial, "r+")
    except OSError as error:
        raise FormatError(
            partial,
            f"cannot be opened to resume ({error}); the run that wrote it was probably killed "
            "while writing: remove it and start again",
        ) from None
    found = (
        file.attrs.get("feature_dim"),
        file.attrs.get("feature_dtype", "float32"),
        "images" in file,
    )
    if found != (feature_dim, feature_dtype, True):
        file.close()
        raise FormatError(
            partial,
            f"holds (F, dtype, /images) = {found}, expected ({feature_dim}, {feature_dtype}, "
            "True): not the partial store of this run",
        )
    return file


class FeatureStore:
    """Read-only random access to a store written by :class:`FeatureStoreWriter`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingFileError(f"feature store {self.path} does not exist")
        self._file: h5py.File | None = None
        self._pid: int | None = None
        # Read what is needed and close again: no handle may be inherited by forked workers.
        try:
            f = h5py.File(self.path, "r")
        except OSError as error:
            raise FormatError(
                self.path, f"not an HDF5 file ({error}); expected a feature store"
            ) from None
        with f:
            if "feature_dim" not in f.attrs or "images" not in f:
                raise FormatError(
                    self.path,
                    "not a groundattn feature store (no feature_dim attribute or /images group); "
                    "write one with `groundattn prepare features` or `prepare bottomup`",
                )
            self.feature_dim = int(f.attrs["feature_dim"])

    def _handle(self) -> h5py.File:
        # One handle per process: h5py handles must not cross a fork.
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._pid = None, None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"path": self.path, "feature_dim": self.feature_dim}

    def __setstate__(self, state: dict) -> None:
        self.path, self.feature_dim = state["path"], state["feature_dim"]
        self._file, self._pid = None, None

    def __contains__(self, image_id: str | int) -> bool:
        return str(image_id) in self._handle()["images"]

    def __len__(self) -> int:
        return len(self._handle()["images"])

    def image_ids(self) -> list[str]:
        return list(self._handle()["images"].keys())

    def _group(self, image_id: str | int) -> h5py.Group:
        images = self._handle()["images"]
        key = str(image_id)
        if key not in images:
            raise FormatError(
                self.path, f"image {key} is not in this feature store (no group /images/{key})"
            )
        return images[key]

    def features(self, image_id: str | int, rows: np.ndarray) -> np.ndarray:
        """(len(rows), F) features of some rows of one image, read without the others."""
        rows = np.asarray(rows)
        dataset = self._group(image_id)["features"]
        if len(rows) == len(dataset) and (rows == np.arange(len(rows))).all():
            out = to_float32(dataset[()])  # every row in order: one read, 3× a selection's speed
        else:
            order = np.argsort(rows)  # h5py reads increasing indices
            out = np.empty((len(rows), self.feature_dim), np.float32)
            out[order] = to_float32(dataset[rows[order]])
        return _check_finite(out, self.path, image_id, "features", rows)

    def statistics(self, max_images: int = 4000) -> RegionStatistics:
        """Per-dimension mean and population standard deviation of the features, and the
        normalised boxes, of every region of at most ``max_images`` images taken evenly
        through the store (all of them when it holds fewer): what the encoder's
        standardising statistics are computed from.

        The features are read once, one image at a time: each image's mean and sum of
        squared deviations (float64) are merged into the running ones (Chan et al.'s
        parallel update), so memory holds one image's features whatever the store's size.
        The boxes, 4 values a region, are kept.
        """
        ids = self.image_ids()
        if not ids:
            raise ValueError(f"{self.path}: the feature store holds no image")
        chosen = ids[:: max(1, -(-len(ids) // max_images))]
        images = self._handle()["images"]
        count, mean, squares = 0, np.zeros(self.feature_dim), np.zeros(self.feature_dim)
        boxes = []
        for i in chosen:
            group = images[i]
            x = _check_finite(group["features"][()], self.path, i, "features").astype(np.float64)
            size = (int(group.attrs["width"]), int(group.attrs["height"]))
            boxes.append(
                normalize_boxes(_check_finite(group["boxes"][()], self.path, i, "boxes"), *size)
            )
            if not len(x):
                continue
            x_mean = x.mean(axis=0)  # (F,)
            delta, total = x_mean - mean, count + len(x)
            squares += ((x - x_mean) ** 2).sum(axis=0) + delta**2 * count * len(x) / total
            mean += delta * len(x) / total
            count = total
        return RegionStatistics(
            feature_mean=mean,
            feature_std=np.sqrt(squares / max(count, 1)),
            boxes=np.concatenate(boxes).astype(np.float64),
        )

    def layout(self, image_id: str | int) -> RegionFeatures:
        """Boxes, provenance and size of one image, with an empty (K, 0) feature array."""
        group = self._group(image_id)
        boxes = _check_finite(group["boxes"][()], self.path, image_id, "boxes")
        return RegionFeatures(
            boxes=boxes,
            features=np.zeros((len(boxes), 0), np.float32),
            provenance=group["provenance"][()],
            width=int(group.attrs["width"]),
            height=int(group.attrs["height"]),
        )

    def __getitem__(self, image_id: str | int) -> RegionFeatures:
        group = self._group(image_id)
        features = to_float32(group["features"][()])
        return RegionFeatures(
            boxes=_check_finite(group["boxes"][()], self.path, image_id, "boxes"),
            features=_check_finite(features, self.path, image_id, "features"),
            provenance=group["provenance"][()],
            width=int(group.attrs["width"]),
            height=int(group.attrs["height"]),
        )


def _check_finite(
    values: np.ndarray,
    path: Path,
    image_id: str | int,
    name: str,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """``values``, or an error naming the image and the first store row that is inf or nan.

    ``rows``: the store rows that ``values`` holds, when it is not all of them in order.
    """
    if values.dtype == np.float16:  # np.isfinite is slow on float16: test the exponent bits
        finite = (values.view(np.uint16) & 0x7C00) != 0x7C00
    else:
        finite = np.isfinite(values)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        row = int(rows[row]) if rows is not None else row
        raise NonFiniteError(
            f"{path}: image {image_id}: {name} row {row} holds inf or nan "
            f"({int((~finite).sum())} non-finite values); rebuild the store from finite features"
        )
    return values
