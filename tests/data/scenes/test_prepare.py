"""prepare_scenes: determinism, completion and overwrite rules, and the data card."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from groundattn.data.errors import FormatError
from groundattn.data.extractor import FEATURE_DIM
from groundattn.data.refcoco import load_refs
from groundattn.data.scenes import prepare_scenes
from groundattn.data.scenes.card import FORMAT_VERSION, check_current
from groundattn.data.scenes.prepare import PARTIAL_MARKER
from groundattn.data.store import FeatureStore


def _files(root: Path) -> dict[str, bytes]:
    """Every file but the HDF5 stores (compared by content), by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".h5"
    }


def test_same_seed_gives_the_same_files_whatever_the_workers(
    scenes_dir: Path, tmp_path: Path
) -> None:
    again = prepare_scenes(tmp_path / "again", size="small", seed=0, workers=2)
    first, second = _files(scenes_dir), _files(again)
    assert len(first) > 180 and first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []  # text, JSON, pickle and JPEG
    a, b = (
        FeatureStore(scenes_dir / "features" / "val.h5"),
        FeatureStore(again / "features" / "val.h5"),
    )
    for image_id in a.image_ids():
        assert np.array_equal(a[image_id].features, b[image_id].features)


def test_another_seed_gives_other_files(scenes_dir: Path, tmp_path: Path) -> None:
    other = prepare_scenes(tmp_path / "other", size="small", seed=1)
    name = "Sentences/100001.txt"
    assert (other / name).read_text() != (scenes_dir / name).read_text()
    assert (other / "vgp" / "train.csv").read_bytes() != (
        scenes_dir / "vgp" / "train.csv"
    ).read_bytes()


def test_a_complete_set_is_kept_and_others_are_refused(scenes_dir: Path, tmp_path: Path) -> None:
    before = (scenes_dir / "card.json").stat().st_mtime_ns
    assert prepare_scenes(scenes_dir, size="small", seed=0) == scenes_dir
    assert (scenes_dir / "card.json").stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="overwrite=True"):
        prepare_scenes(scenes_dir, size="small", seed=3)
    stray = tmp_path / "stray"
    stray.mkdir()
    with pytest.raises(FileExistsError, match="no card.json"):
        prepare_scenes(stray, size="small")
    with pytest.raises(ValueError, match="size must be one of"):
        prepare_scenes(tmp_path / "x", size="huge")


def test_a_set_of_an_older_format_is_refused_not_trained_on(
    scenes_dir: Path, tmp_path: Path
) -> None:
    check_current(scenes_dir)  # this version's own set
    check_current(tmp_path)  # a real data set (no grounded-scenes card) is not ours to judge
    old = tmp_path / "old"
    old.mkdir()
    card = json.loads((scenes_dir / "card.json").read_text())
    (old / "card.json").write_text(json.dumps({**card, "format_version": FORMAT_VERSION - 1}))
    with pytest.raises(
        FormatError, match=f"format_version: .* format {FORMAT_VERSION - 1},.*--overwrite"
    ):
        check_current(old)
    with pytest.raises(FormatError, match="--overwrite"):  # prepare refuses it the same way
        prepare_scenes(old, size="small", seed=0)


def test_overwrite_replaces_only_a_set_groundattn_wrote(tmp_path: Path) -> None:
    out = tmp_path / "set"
    out.mkdir()
    (out / "junk.txt").write_text("the user's")
    with pytest.raises(FileExistsError, match="no card.json"):
        prepare_scenes(out, size="small", seed=2, overwrite=True)
    assert (out / "junk.txt").read_text() == "the user's"
    (out / "junk.txt").unlink()
    out.rmdir()
    prepare_scenes(out, size="small", seed=2)
    prepare_scenes(out, size="small", seed=3, overwrite=True)
    assert json.loads((out / "card.json").read_text())["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no partial, no old


@pytest.mark.parametrize("suffix", [".partial", ".old"])
def test_a_users_directory_named_like_a_temporary_is_kept(tmp_path: Path, suffix: str) -> None:
    users = tmp_path / f"set{suffix}"
    users.mkdir()
    (users / "notes.txt").write_text("the user's")
    with pytest.raises(FileExistsError, match="not written by groundattn"):
        prepare_scenes(tmp_path / "set", size="small")
    assert (users / "notes.txt").read_text() == "the user's"
    assert not (tmp_path / "set").exists()


def test_an_interrupted_runs_own_partial_is_replaced(tmp_path: Path) -> None:
    partial = tmp_path / "set.partial"
    partial.mkdir()
    (partial / PARTIAL_MARKER).write_text("")
    (partial / "half-written.txt").write_text("")
    prepare_scenes(tmp_path / "set", size="small")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert not (tmp_path / "set" / PARTIAL_MARKER).exists()


def test_card_counts_match_the_files(scenes_dir: Path) -> None:
    card = json.loads((scenes_dir / "card.json").read_text())
    assert (card["size"], card["seed"], card["feature_dim"]) == ("small", 0, FEATURE_DIM)
    for split, counts in card["splits"].items():
        ids = (scenes_dir / f"{split}.txt").read_text().split()
        assert (
            counts["images"]
            == len(ids)
            == len(FeatureStore(scenes_dir / "features" / f"{split}.h5"))
        )
        lines = [
            line
            for i in ids
            for line in (scenes_dir / "Sentences" / f"{i}.txt").read_text().splitlines()
        ]
        assert counts["captions"] == len(lines)
        assert counts["phrases"] == sum(line.count("[/EN#") for line in lines)
        assert counts["notvisual_phrases"] == sum(line.count("[/EN#0/") for line in lines)
        with open(scenes_dir / "vgp" / f"{split}.csv", newline="") as f:
            labels = [int(row["type_label"]) for row in csv.DictReader(f)]
        assert counts["vgp_pairs"] == len(labels)
        assert list(counts["vgp_pairs_by_label"].values()) == [labels.count(i) for i in range(5)]
        vqa = json.loads((scenes_dir / "vqa" / f"v2_{split}_annotations.json").read_text())[
            "annotations"
        ]
        assert counts["vqa_questions"] == len(vqa)
        for answer_type, n in counts["vqa_questions_by_answer_type"].items():
            assert n == sum(a["answer_type"] == answer_type for a in vqa)
    refs = [vars(r) for r in load_refs(scenes_dir / "refcoco+" / "refs(unc).p")]
    for split, counts in card["refer"].items():
        assert counts["refs"] == sum(r["split"] == split for r in refs)
        assert counts["sentences"] == sum(len(r["sentences"]) for r in refs if r["split"] == split)
    markdown = (scenes_dir / "card.md").read_text()
    assert f"| images | {card['splits']['train']['images']} |" in markdown
