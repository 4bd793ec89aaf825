"""A catalogue of bad inputs, each driven through the command line.

Every case breaks one thing a user can get wrong — a file of each format, an id
missing across files, a config value, a model path, a size, a directory that is
not groundattn's — and expects exactly one ``groundattn: error:`` line naming
where and what (exit status 2), no traceback, nothing trained or exported, and
every file of the user's (the data root and the paths the case created) intact.
"""

from __future__ import annotations

import base64
import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from groundattn.cli import main
from groundattn.data.store import FeatureStore, FeatureStoreWriter, RegionFeatures

ROOT = Path(__file__).parent.parent


@dataclass
class Case:
    name: str
    setup: Callable[[Path, Path], list[str]]  # (data root copy, tmp dir) -> argv
    expect: str  # a fragment of the error line


def _train(task: str, root: Path, tmp: Path, *sets: str) -> list[str]:
    argv = ["train", task, "--config", str(ROOT / "configs" / task / "tiny.yaml")]
    argv += ["--out", str(tmp / "run")]
    for s in (f"data.root={root}", "optim.max_steps=1", *sets):
        argv += ["--set", s]
    return argv


def _old_scenes(root: Path, tmp: Path) -> list[str]:
    card = json.loads((root / "card.json").read_text())
    (root / "card.json").write_text(json.dumps({**card, "format_version": 1}))
    config = str(ROOT / "configs" / "experiment" / "tiny.yaml")
    return ["experiment", "--config", config, "--out", str(tmp / "x"), "--set", f"data_root={root}"]


def _first(root: Path, split: str = "val") -> str:
    return (root / f"{split}.txt").read_text().split()[0]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _rewrite_store(path: Path, change: Callable[[str, RegionFeatures], RegionFeatures]) -> None:
    with FeatureStore(path) as store:
        entries = {i: store[i] for i in store.image_ids()}
        dim = store.feature_dim
    path.unlink()
    first = next(iter(entries))
    with FeatureStoreWriter(path, change(first, entries[first]).features.shape[1] or dim) as w:
        for image, regions in entries.items():
            w.add(image, change(image, regions))


def _with_features(regions: RegionFeatures, features: np.ndarray) -> RegionFeatures:
    return RegionFeatures(
        regions.boxes, features, regions.provenance, regions.width, regions.height
    )


def _nan(root: Path) -> None:
    """One NaN written past the store writer, which refuses it."""
    with h5py.File(root / "features" / "val.h5", "r+") as f:
        features = f["images"][_first(root)]["features"]
        values = features[()]
        values[1, 3] = np.nan
        features[...] = values


def _sentences_four(root, tmp):
    path = root / "Sentences" / f"{_first(root)}.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:4]) + "\n")
    return _train("vgp", root, tmp)


def _sentences_bracket(root, tmp):
    path = root / "Sentences" / f"{_first(root)}.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["[/EN#1/people A man sits", *lines[1:]]) + "\n")
    return _train("vgp", root, tmp)


def _annotation_truncated(root, tmp):
    _truncate(root / "Annotations" / f"{_first(root)}.xml")
    return _train("vgp", root, tmp)


def _annotation_number(root, tmp):
    path = root / "Annotations" / f"{_first(root)}.xml"
    text = path.read_text()
    start = text.index("<xmin>") + len("<xmin>")
    path.write_text(text[:start] + "left" + text[text.index("</xmin>") :])
    return _train("vgp", root, tmp)


def _vgp_column(root, tmp):
    path = root / "vgp" / "train.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0].replace("type_label", "label"), *lines[1:]]) + "\n")
    return _train("vgp", root, tmp)


def _vgp_label(root, tmp):
    path = root / "vgp" / "train.csv"
    path.write_text(path.read_text() + f"{_first(root, 'train')},a man,the man,a,b,7\n")
    return _train("vgp", root, tmp)


def _split_missing(root, tmp):
    (root / "val.txt").unlink()
    return _train("vgp", root, tmp)


def _store_not_hdf5(root, tmp):
    (root / "features" / "train.h5").write_text("image,features\n1,0.5\n")
    return _train("vgp", root, tmp)


def _store_missing_image(root, tmp):
    image = _first(root)
    for folder, suffix in (("Sentences", "txt"), ("Annotations", "xml")):
        shutil.copy(root / folder / f"{image}.{suffix}", root / folder / f"424242.{suffix}")
    (root / "val.txt").write_text((root / "val.txt").read_text() + "424242\n")
    return _train("vgp", root, tmp)


def _store_nan(root, tmp):
    _nan(root)
    return _train("vgp", root, tmp)


def _store_width(root, tmp):
    for split in ("train", "val"):
        _rewrite_store(
            root / "features" / f"{split}.h5", lambda _, r: _with_features(r, r.features[:, :32])
        )
    return _train("vgp", root, tmp, f"model.init={tmp.parent / 'finished' / 'model'}")


def _vqa_truncated(root, tmp):
    _truncate(root / "vqa" / "v2_OpenEnded_train_questions.json")
    return _train("vqa", root, tmp)


def _vqa_wrong_type(root, tmp):
    (root / "vqa" / "v2_train_annotations.json").write_text(json.dumps({"annotations": 5}))
    return _train("vqa", root, tmp)


def _vqa_image_unknown(root, tmp):
    path = root / "vqa" / "v2_OpenEnded_val_questions.json"
    data = json.loads(path.read_text())
    data["questions"][0]["image_id"] = 424242
    path.write_text(json.dumps(data))
    return _train("vqa", root, tmp)


class _Exploit:
    def __reduce__(self):
        return (print, ("pickle ran code",))


def _refs_malicious(root, tmp):
    (root / "refcoco+" / "refs(unc).p").write_bytes(pickle.dumps([_Exploit()]))
    return _train("refcoco", root, tmp)


def _refs_truncated(root, tmp):
    _truncate(root / "refcoco+" / "refs(unc).p")
    return _train("refcoco", root, tmp)


def _instances_empty(root, tmp):
    path = root / "refcoco+" / "instances.json"
    data = json.loads(path.read_text())
    data["annotations"] = []
    path.write_text(json.dumps(data))
    return _train("refcoco", root, tmp)


def _config(*sets):
    return lambda root, tmp: _train("vgp", root, tmp, *sets)


def _init(make: Callable[[Path], Path]):
    def setup(root, tmp):
        return _train("vgp", root, tmp, f"model.init={make(tmp)}")

    return setup


def _copied_model(tmp: Path, change: Callable[[Path], None]) -> Path:
    model = tmp / "model"
    shutil.copytree(tmp.parent / "finished" / "model", model)
    change(model)
    return model


def _flip(model: Path) -> None:
    weights = bytearray((model / "model.safetensors").read_bytes())
    weights[-5] ^= 1
    (model / "model.safetensors").write_bytes(bytes(weights))


def _evaluate(*extra):
    def setup(root, tmp):
        model = tmp / "model"
        shutil.copytree(tmp.parent / "finished" / "model", model)
        return ["evaluate", "--model", str(model), "--data", str(root), *extra]

    return setup


def _images(tmp: Path, root: Path, count: int = 2) -> Path:
    images = tmp / "images"
    images.mkdir()
    for file in sorted((root / "images").iterdir())[:count]:
        shutil.copy(file, images)
    return images


def _features(*extra, images=None):
    def setup(root, tmp):
        folder = images(tmp, root) if images else _images(tmp, root)
        return ["prepare", "features", "--images", str(folder), "--out", str(tmp / "s.h5"), *extra]

    return setup


def _corrupt_jpeg(tmp, root):
    folder = _images(tmp, root)
    (folder / "999.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    return folder


def _boxes(entry):
    def setup(root, tmp):
        folder = _images(tmp, root, 1)
        image = next(folder.iterdir()).stem
        (tmp / "boxes.json").write_text(json.dumps({image: entry}))
        out = str(tmp / "s.h5")
        return ["prepare", "features", "--images", str(folder), "--out", out, "--boxes", str(tmp / "boxes.json")]  # fmt: skip

    return setup


def _tsv(rows: list[list[str]]):
    def setup(root, tmp):
        (tmp / "f.tsv").write_text("".join("\t".join(r) + "\n" for r in rows))
        return ["prepare", "bottomup", "--tsv", str(tmp / "f.tsv"), "--out", str(tmp / "bu.h5")]

    return setup


def _b64(a) -> str:
    return base64.b64encode(np.asarray(a, np.float32).tobytes()).decode()


_TSV_ROW = ["7", "32", "24", "1", _b64([[1, 1, 5, 20]]), _b64([[1, 2, 3, 4]])]


def _tsv_cut_off(root, tmp):
    """The second line cut inside its features, as a killed download leaves the file."""
    line = "\t".join(_TSV_ROW)
    (tmp / "f.tsv").write_text(line + "\n" + line.replace("7", "8", 1)[:-5])
    return ["prepare", "bottomup", "--tsv", str(tmp / "f.tsv"), "--out", str(tmp / "bu.h5")]


def _store_exists(root, tmp):
    (tmp / "f.tsv").write_text("\t".join(_TSV_ROW) + "\n")
    (tmp / "bu.h5").write_text("a user's file")
    return ["prepare", "bottomup", "--tsv", str(tmp / "f.tsv"), "--out", str(tmp / "bu.h5")]


def _overwrite_user_dir(root, tmp):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("years of work")
    return ["prepare", "scenes", "--out", str(tmp / "mine"), "--size", "small", "--overwrite"]


def _user_partial(root, tmp):
    (tmp / "scenes.partial").mkdir()
    (tmp / "scenes.partial" / "notes.txt").write_text("mine")
    return ["prepare", "scenes", "--out", str(tmp / "scenes"), "--size", "small"]


def _finished_run(root, tmp):
    shutil.copytree(tmp.parent / "finished", tmp / "run")
    return _train("vgp", root, tmp)


def _resume_changed(root, tmp):
    shutil.copytree(tmp.parent / "finished", tmp / "run")
    (tmp / "run" / "summary.json").unlink()
    shutil.rmtree(tmp / "run" / "model")
    return [*_train("vgp", root, tmp, "supervision.method=none"), "--resume"]


def _experiment_real_root(root, tmp):
    shutil.rmtree(root / "vgp")
    (root / "card.json").unlink()
    argv = ["experiment", "--config", str(ROOT / "configs/experiment/tiny.yaml")]
    return [*argv, "--out", str(tmp / "exp"), "--set", f"data_root={root}"]


CASES = [
    # readers: truncated and wrong-typed files of every format
    Case("sentences with 4 captions", _sentences_four, "expected 5 captions"),
    Case("sentences with an unclosed phrase", _sentences_bracket, ".txt, line 1"),
    Case("annotation XML truncated", _annotation_truncated, ".xml"),
    Case("annotation box not a number", _annotation_number, "xmin"),
    Case("VGP CSV without type_label", _vgp_column, "missing column(s) type_label"),
    Case("VGP label out of range", _vgp_label, "field type_label: expected an integer in 0..4"),
    Case("feature store not HDF5", _store_not_hdf5, "not an HDF5 file"),
    Case("VQA questions truncated", _vqa_truncated, "v2_OpenEnded_train_questions.json"),
    Case("VQA annotations of the wrong type", _vqa_wrong_type, "v2_train_annotations.json"),
    Case("refs pickle that runs code", _refs_malicious, "refs(unc).p"),
    Case("refs pickle truncated", _refs_truncated, "refs(unc).p"),
    Case("TSV row short of fields", _tsv([["7", "32", "24"]]), "f.tsv, line 1"),
    Case(
        "TSV inverted box",
        _tsv([["7", "32", "24", "1", _b64([[10, 10, 5, 20]]), _b64([[1, 2]])]]),
        "f.tsv, line 1",
    ),
    Case("TSV cut off inside its last line", _tsv_cut_off, "f.tsv, line 2, field features"),
    Case("corrupt JPEG", _features("--grid", "2", "2", images=_corrupt_jpeg), "999.jpg"),
    Case("box outside its image", _boxes([[10, 10, 5000, 40]]), "boxes.json"),
    Case("boxes file of another format", _boxes({"whole_image": 0}), "boxes.json"),
    # missing ids across files
    Case("split file missing", _split_missing, "val.txt"),
    Case("image in no feature store", _store_missing_image, "424242"),
    Case("question on an unknown image", _vqa_image_unknown, "424242"),
    Case("ref of an unknown annotation", _instances_empty, "instances.json"),
    # values: non-finite inputs, config types and ranges, sizes
    Case("NaN region features", _store_nan, "val.h5"),
    Case("feature width of another model", _store_width, "32"),
    Case("embedded scenes of an older format", _old_scenes, "card.json, field format_version"),
    Case("batch_size: true", _config("optim.batch_size=true"), "optim.batch_size"),
    Case("lr: .inf", _config("optim.lr=.inf"), "optim.lr"),
    Case("lr as a string", _config('optim.lr="1e-4"'), "optim.lr"),
    Case("unknown field", _config("optim.bogus=1"), "optim.bogus"),
    Case("unknown method", _config("supervision.method=bogus"), "supervision.method"),
    Case("supervised layer out of range", _config("supervision.layers=[9]"), "supervision.layers"),
    Case("negative batch size", _config("optim.batch_size=-4"), "optim.batch_size"),
    Case("grid of -2 x 4", _features("--grid", "-2", "4"), "--grid"),
    Case("grid of 0 x 4", _features("--grid", "0", "4"), "--grid"),
    Case("evaluate --batch-size 0", _evaluate("--batch-size", "0"), "--batch-size"),
    # model paths
    Case("model.init missing", _init(lambda tmp: tmp / "nothing"), "nothing"),
    Case("model.init a run directory", _init(lambda tmp: tmp.parent / "finished"), "finished"),
    Case(
        "model.init not safetensors",
        _init(lambda tmp: (tmp / "w.txt").write_text("weights") and tmp / "w.txt"),
        "w.txt",
    ),
    Case("model.init with a flipped bit", _init(lambda tmp: _copied_model(tmp, _flip)), "sha256"),
    Case(
        "model config.json not JSON",
        _init(lambda tmp: _copied_model(tmp, lambda m: (m / "config.json").write_text("{"))),
        "config.json",
    ),
    Case("evaluate on a missing split", _evaluate("--split", "nope"), "nope"),
    Case(
        "evaluate a missing model",
        lambda root, tmp: ["evaluate", "--model", str(tmp / "nothing"), "--data", str(root)],
        "nothing",
    ),
    # files that are not groundattn's, and runs that are not what they claim
    Case("--overwrite on a user's directory", _overwrite_user_dir, "mine"),
    Case("a user's <out>.partial", _user_partial, "scenes.partial"),
    Case("prepare bottomup onto an existing file", _store_exists, "bu.h5 exists"),
    Case("training into a finished run", _finished_run, "holds a finished run"),
    Case("--resume with another method", _resume_changed, "supervision.method"),
    Case("experiment on a real root missing files", _experiment_real_root, "vgp/train.csv"),
]


@pytest.fixture(scope="module")
def finished(small_scenes, tmp_path_factory):
    """A finished one-step VGP run of the tiny config (model/, checkpoints/)."""
    out = tmp_path_factory.mktemp("catalogue") / "finished"
    argv = ["train", "vgp", "--config", str(ROOT / "configs/vgp/tiny.yaml"), "--out", str(out)]
    argv += ["--set", f"data.root={small_scenes}", "--set", "optim.max_steps=1"]
    argv += ["--set", "run.save_every=1"]
    assert main(argv) == 0
    return out


def _snapshot(*folders: Path) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_input_is_one_clear_error(case, small_scenes, finished, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(small_scenes, root)
    tmp = finished.parent / tmp_path.name  # beside the finished run, which setups may copy
    tmp.mkdir()
    argv = case.setup(root, tmp)
    before = _snapshot(root, tmp)
    capsys.readouterr()
    assert main(argv) == 2, f"{case.name}: not refused"
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("groundattn: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert case.expect in errors[0], errors[0]
    assert "pickle ran code" not in out
    after = _snapshot(root, tmp)
    assert {k: v for k, v in after.items() if k in before} == before, "a user's file changed"
    assert not (tmp / "run" / "model").exists() or case.name == "training into a finished run"
