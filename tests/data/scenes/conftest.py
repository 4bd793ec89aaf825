"""One small grounded-scenes set, generated once and shared by the tests of this folder."""

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def scenes_dir(small_scenes: Path) -> Path:
    """The suite's small set (seed 0), read-only for the tests."""
    return small_scenes


@pytest.fixture(scope="session")
def world(scenes_dir: Path) -> dict[int, dict]:
    """The structured records of ``world.jsonl`` by image id."""
    lines = (scenes_dir / "world.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return {r["image_id"]: r for r in records}
