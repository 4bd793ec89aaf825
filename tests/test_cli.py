"""Each command end to end, in-process, for a couple of steps."""

import base64
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from groundattn.cli import build_parser, main
from groundattn.config import (
    ExperimentConfig,
    VGPConfig,
    load_config,
)
from groundattn.data.store import FeatureStore, Provenance
from groundattn.train.registry import TASKS, recipe_class

ROOT = Path(__file__).parent.parent


def _header_commands(file: Path) -> list[list[str]]:
    """The commands in a config's first line: ``# groundattn …`` (and ``(or: groundattn …)``)."""
    first = file.read_text().splitlines()[0]
    assert first.startswith("# groundattn "), f"{file} is not headed by the command that runs it"
    return [
        shlex.split(part.strip(" ()"))[1:] for part in first[2:].replace("(or:", "\0").split("\0")
    ]


def test_the_registry_names_each_recipe_by_its_own_name():
    for name in TASKS:
        assert recipe_class(name).name == name  # the name a model's config.json records


def _config_class(args) -> type:
    if args.command == "train":
        return recipe_class(args.task).config_class
    return {"experiment": ExperimentConfig, "demo": VGPConfig}[args.command]


def test_every_config_parses_with_the_command_that_heads_it():
    launchers = ROOT / "configs" / "accelerate"
    files = sorted(f for f in (ROOT / "configs").rglob("*.yaml") if f.parent != launchers)
    assert len(files) >= 16
    parser = build_parser()
    for file in files:
        for argv in _header_commands(file):
            args = parser.parse_args(argv)  # the header command is a valid command line
            assert (ROOT / args.config).resolve() == file.resolve(), (
                f"{file}: header runs {args.config}"
            )
            config = load_config(_config_class(args), file, getattr(args, "set", None) or [])
            if isinstance(config, ExperimentConfig):  # each stage with the preset's overrides
                stages = {"pretrain", "vgp", "vqa", "refcoco", "phrase_grounding"}
                for stage in stages:
                    path = getattr(config, stage)
                    if path is None:
                        continue
                    load_config(
                        recipe_class(stage.replace("_", "-")).config_class,
                        ROOT / path,
                        [f"data.root={config.data_root}", *config.overrides.get(stage, [])],
                    )


def test_accelerate_configs_launch_a_groundattn_command():
    from accelerate.commands.config.config_args import load_config_from_file

    files = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
    assert {f.name for f in files} == {"multi-gpu.yaml", "multi-node.yaml"}
    for file in files:
        config = load_config_from_file(str(file))
        assert config.distributed_type == "MULTI_GPU" and config.num_processes > 1
        # The header: accelerate launch --config_file <this file> … -m groundattn.cli <command>.
        header = shlex.split(file.read_text().splitlines()[0][2:])
        assert header[:4] == ["accelerate", "launch", "--config_file", str(file.relative_to(ROOT))]
        command = header[header.index("groundattn.cli") + 1 :]
        args = build_parser().parse_args(command)
        load_config(_config_class(args), ROOT / args.config, [])
    multi_node = load_config_from_file(str(ROOT / "configs/accelerate/multi-node.yaml"))
    assert multi_node.num_machines > 1 and multi_node.main_process_ip


def test_prepare_scenes_and_train_vgp(tmp_path, capsys):
    data = tmp_path / "scenes"
    assert main(["prepare", "scenes", "--out", str(data), "--size", "small"]) == 0
    assert (data / "card.md").is_file()
    out = tmp_path / "run"
    args = [
        "train",
        "vgp",
        "--config",
        str(ROOT / "configs/vgp/tiny.yaml"),
        "--out",
        str(out),
        "--set",
        f"data.root={data}",
        "--set",
        "optim.max_steps=2",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "grounding accuracy, best head" in printed and "before" in printed
    # The same out directory again, with or without --resume: refused before any work.
    assert main(args) == 2
    assert "holds a finished run" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # its own checkpoints: it may continue (or extend) itself


def test_bad_config_is_reported_with_the_field(tmp_path, capsys):
    args = [
        "train",
        "vgp",
        "--config",
        str(ROOT / "configs/vgp/tiny.yaml"),
        "--out",
        str(tmp_path / "r"),
        "--set",
        "supervision.method=bogus",
    ]
    assert main(args) == 2
    assert "supervision.method" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"not a safetensors file", b"\x08" + b"\x00" * 7 + b"{}"])
def test_corrupt_model_init_is_one_error_line(small_scenes, tmp_path, capsys, content):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(content)
    args = ["train", "vgp", "--config", str(ROOT / "configs/vgp/tiny.yaml")]
    args += ["--out", str(tmp_path / "r"), "--set", f"data.root={small_scenes}"]
    assert main([*args, "--set", f"model.init={weights}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("groundattn: error: "), err
    assert str(weights) in err[0] and "Traceback" not in err[0]


def test_a_missing_path_the_user_named_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert (
        main(["prepare", "features", "--images", str(missing), "--out", str(tmp_path / "s.h5")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"groundattn: error: {missing}: No such file or directory"]


def test_every_user_error_is_a_groundattn_error():
    # One error mechanism: the CLI catches GroundattnError, and every error type a
    # user can cause derives from it.
    from groundattn.config import ConfigError
    from groundattn.data.errors import FormatError, UnsafePickleError
    from groundattn.errors import ExistingFileError, GroundattnError, MissingFileError
    from groundattn.train.checkpoint_io import CheckpointError
    from groundattn.viz.errors import VisualizeError

    for error in (ConfigError, FormatError, UnsafePickleError, CheckpointError, VisualizeError):
        assert issubclass(error, GroundattnError), error
    assert issubclass(MissingFileError, FileNotFoundError)
    assert issubclass(ExistingFileError, FileExistsError)


def test_prepare_features_from_images(small_scenes, tmp_path, caplog):
    images = tmp_path / "images"
    images.mkdir()
    for file in sorted((small_scenes / "images").iterdir())[:3]:
        shutil.copy(file, images)
    grid = tmp_path / "grid.h5"
    assert (
        main(
            ["prepare", "features", "--images", str(images), "--out", str(grid), "--grid", "2", "3"]
        )
        == 0
    )
    first = sorted(p.stem for p in images.iterdir())[0]
    with FeatureStore(grid) as store:
        regions = store[first]
        assert len(store) == 3 and regions.boxes.shape == (7, 4)
        assert (
            regions.provenance[0] == Provenance.WHOLE_IMAGE
            and (regions.provenance[1:] == Provenance.GRID).all()
        )
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({first: [[1, 2, 30, 40]]}))
    given = tmp_path / "given.h5"
    assert (
        main(
            [
                "prepare",
                "features",
                "--images",
                str(images),
                "--out",
                str(given),
                "--boxes",
                str(boxes),
            ]
        )
        == 0
    )
    with FeatureStore(given) as store:
        assert (
            store[first].boxes.shape == (2, 4) and store[first].provenance[1] == Provenance.DETECTED
        )
        assert [len(store[i].boxes) for i in store.image_ids() if i != first] == [1, 1]
    assert "2 of 3 images have no entry" in caplog.text  # said, not silent


def test_prepare_features_rejects_bad_boxes(small_scenes, tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"100001": [[10, 10, 5, 20]]}))
    assert (
        main(
            [
                "prepare",
                "features",
                "--images",
                str(small_scenes / "images"),
                "--out",
                str(tmp_path / "s.h5"),
                "--boxes",
                str(boxes),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "boxes.json" in err and "x2 <= x1" in err
    assert not (tmp_path / "s.h5").exists()


def test_prepare_bottomup(tmp_path):
    tsv = tmp_path / "features.tsv"
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32)
    feats = np.ones((2, 4), np.float32)
    enc = lambda a: base64.b64encode(a.tobytes()).decode()  # noqa: E731
    tsv.write_text("\t".join(["7", "32", "24", "2", enc(boxes), enc(feats)]) + "\n")
    out = tmp_path / "bu.h5"
    assert main(["prepare", "bottomup", "--tsv", str(tsv), "--out", str(out)]) == 0
    with FeatureStore(out) as store:
        assert store["7"].features.shape == (3, 4)


@pytest.mark.parametrize("argv", [["prepare"], ["train"], []])
def test_missing_subcommand_exits(argv):
    with pytest.raises(SystemExit):
        main(argv)


def test_visualize_outputs_match_the_library():
    from groundattn.cli import VIZ_NETWORK, VIZ_OUTPUTS, build_parser
    from groundattn.viz.run import DEFAULT_OUTPUTS, NETWORK_OUTPUTS, OUTPUTS

    assert VIZ_OUTPUTS == OUTPUTS and VIZ_NETWORK == NETWORK_OUTPUTS
    args = build_parser().parse_args(
        ["visualize", "--data", "d", "--model", "runs/x", "--out", "v"]
    )
    assert tuple(args.outputs) == DEFAULT_OUTPUTS


def test_every_training_command_evaluate_and_experiment(small_scenes, tmp_path, capsys):
    def train(task, out, *extra):
        config = ROOT / "configs" / task / "tiny.yaml"
        sets = [f"data.root={small_scenes}", "optim.max_steps=2", *extra]
        argv = ["train", task, "--config", str(config), "--out", str(out)]
        return main([*argv, *[x for s in sets for x in ("--set", s)]])

    assert train("pretrain", tmp_path / "pretrain") == 0
    init = f"model.init={tmp_path / 'pretrain' / 'model'}"
    assert train("vqa", tmp_path / "vqa", init) == 0
    assert train("refcoco", tmp_path / "ref", init, "data.boxes=ground_truth") == 0
    assert "testA" in capsys.readouterr().out
    argv = ["evaluate", "--model", str(tmp_path / "ref" / "model"), "--split", "testB"]
    assert main([*argv, "--set", "data.boxes=detected"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
    sets = [f"data_root={small_scenes}", "seeds=[0]", "methods=[direct]", "visualize=false"]
    sets += [
        f"{task}={ROOT / 'configs' / task / 'tiny.yaml'}"
        for task in ("pretrain", "vgp", "vqa", "refcoco")
    ]
    argv = [
        "experiment",
        "--config",
        str(ROOT / "configs/experiment/tiny.yaml"),
        "--out",
        str(tmp_path / "exp"),
    ]
    assert main([*argv, *[x for s in sets for x in ("--set", s)]]) == 0
    assert "| Direct Attention |" in capsys.readouterr().out


def test_train_and_evaluate_phrase_grounding(small_scenes, tmp_path, capsys):
    out = tmp_path / "phrase"
    argv = [
        "train",
        "phrase-grounding",
        "--config",
        str(ROOT / "configs/phrase_grounding/tiny.yaml"),
    ]
    argv += ["--out", str(out), "--set", f"data.root={small_scenes}", "--set", "optim.max_steps=2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "recall_at_5_baseline" in printed and "  test: recall_at_1" in printed
    summary = json.loads((out / "summary.json").read_text())
    argv = ["evaluate", "--model", str(out / "model"), "--split", "test"]
    assert main(argv) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["task"] == "phrase-grounding" and metrics["split"] == "test"
    for key in ("recall_at_1", "recall_at_5", "recall_at_1_baseline", "phrases_no_box"):
        assert metrics[key] == pytest.approx(summary["splits"]["test"][key]), key
    assert main([*argv, "--set", "data.boxes=ground_truth"]) == 0
    assert json.loads(capsys.readouterr().out)["answerable"] == 1.0


def test_experiment_reads_a_real_root_and_never_writes_into_it(small_scenes, tmp_path, capsys):
    root = tmp_path / "flickr30k"  # a user's real root: some files, no card.json
    shutil.copytree(small_scenes / "Sentences", root / "Sentences")
    (root / "train.txt").write_text("1\n")
    before = sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*"))
    argv = ["experiment", "--config", str(ROOT / "configs/experiment/tiny.yaml")]
    argv += ["--out", str(tmp_path / "exp"), "--set", f"data_root={root}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"groundattn: error: data_root {root}: ")
    for missing in ("Annotations (", "val.txt", "vgp/train.csv", "features/val.h5"):
        assert missing in err
    assert "prepare features" in err and "Sentences (" not in err
    assert sorted((p.relative_to(root), p.stat().st_mtime_ns) for p in root.rglob("*")) == before
    assert not (tmp_path / "exp" / "pretrain").exists()  # refused before any stage


def test_the_embedded_scenes_are_written_only_at_their_default_place(tmp_path, capsys):
    typo = tmp_path / "flickr30k-entitis"
    argv = ["experiment", "--config", str(ROOT / "configs/experiment/quick.yaml")]
    assert main([*argv, "--out", str(tmp_path / "exp"), "--set", f"data_root={typo}"]) == 2
    err = capsys.readouterr().err
    assert f"data_root {typo} does not exist" in err and "prepare_scenes=true" in err
    assert not typo.exists()
    assert not ExperimentConfig(data_root=typo).writes_scenes
    assert ExperimentConfig(data_root=typo, prepare_scenes=True).writes_scenes
