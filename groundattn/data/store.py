"""Region feature store: one HDF5 file per split, random access by image id.

Layout of the file: one group per image under ``/images/<image_id>`` holding
``boxes`` (K, 4) float32 pixel ``x1 y1 x2 y2``, ``features`` (K, F) float32,
``provenance`` (K,) uint8 (see :class:`Provenance`), and the attributes
``width`` and ``height``. The file attribute ``feature_dim`` is F.

Files are opened lazily, once per process, so a store can be handed to
DataLoader workers: each worker opens its own read-only handle.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from groundattn.data.errors import FormatError
from groundattn.errors import MissingFileError, NonFiniteError


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


class FeatureStoreWriter:
    """Writes a store atomically: to ``<path>.partial``, renamed on close."""

    def __init__(self, path: str | Path, feature_dim: int):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.partial, "w")
        self.file.attrs["feature_dim"] = feature_dim
        self.feature_dim = feature_dim
        self.images = self.file.create_group("images")

    def add(self, image_id: str | int, regions: RegionFeatures) -> None:
        """Adds one image; raises ValueError on inconsistent shapes or a repeated id."""
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
        group = self.images.create_group(key)
        group.create_dataset("boxes", data=regions.boxes.astype(np.float32))
        group.create_dataset("features", data=regions.features.astype(np.float32))
        group.create_dataset("provenance", data=regions.provenance.astype(np.uint8))
        group.attrs["width"] = int(regions.width)
        group.attrs["height"] = int(regions.height)

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()
            os.replace(self.partial, self.path)

    def abort(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> FeatureStoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


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
        order = np.argsort(rows)  # h5py reads increasing indices
        out = np.empty((len(rows), self.feature_dim), np.float32)
        out[order] = self._group(image_id)["features"][rows[order]]
        return _check_finite(out, self.path, image_id, "features", rows)

    def statistics(self, max_images: int = 4000) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension mean and standard deviation (F,) of the region features.

        Computed over every region of at most ``max_images`` images, taken evenly
        through the store (all of them when it holds fewer), in float64.
        """
        ids = self.image_ids()
        if not ids:
            raise ValueError(f"{self.path}: the feature store holds no image")
        chosen = ids[:: max(1, -(-len(ids) // max_images))]
        images = self._handle()["images"]
        features = np.concatenate(
            [_check_finite(images[i]["features"][()], self.path, i, "features") for i in chosen]
        ).astype(np.float64)
        return features.mean(0), features.std(0)

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
        return RegionFeatures(
            boxes=_check_finite(group["boxes"][()], self.path, image_id, "boxes"),
            features=_check_finite(group["features"][()], self.path, image_id, "features"),
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
    finite = np.isfinite(values)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        row = int(rows[row]) if rows is not None else row
        raise NonFiniteError(
            f"{path}: image {image_id}: {name} row {row} holds inf or nan "
            f"({int((~finite).sum())} non-finite values); rebuild the store from finite features"
        )
    return values
