"""One small grounded-scenes set, generated once and shared by the tests of this folder."""

import json
from pathlib import Path

import pytest

from groundattn.data.scenes import prepare_scenes


@pytest.fixture(scope="session")
def scenes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small set (seed 0), read-only for the tests."""
    return prepare_scenes(tmp_path_factory.mktemp("scenes") / "small", size="small", seed=0)


@pytest.fixture(scope="session")
def world(scenes_dir: Path) -> dict[int, dict]:
    """The structured records of ``world.jsonl`` by image id."""
    lines = (scenes_dir / "world.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return {r["image_id"]: r for r in records}
