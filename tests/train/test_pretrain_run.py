import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from groundattn.config import ConfigError, PretrainConfig, VGPConfig, load_config
from groundattn.eval.saved import evaluate
from groundattn.train.pretrain import PretrainRecipe
from groundattn.train.run import run
from groundattn.train.vgp import VGPRecipe

CONFIGS = Path(__file__).parents[2] / "configs"
TINY = CONFIGS / "pretrain" / "tiny.yaml"


def _config(root, *extra):
    return load_config(PretrainConfig, TINY, [f"data.root={root}", *extra])


def test_tiny_run_and_evaluation(small_scenes, tmp_path):
    out = tmp_path / "run"
    summary = run(PretrainRecipe(_config(small_scenes, "optim.max_steps=3")), out)
    assert summary["task"] == "pretrain" and summary["steps"] == 3 and summary["mrc"]
    assert summary["region_classes"] == ["circle", "square", "triangle", "star", "cross", "diamond"]
    for when in ("before", "after"):
        assert 0 <= summary[when]["mlm_accuracy"] <= 1 and 0 <= summary[when]["mrc_accuracy"] <= 1
        assert summary[when]["mlm_tokens"] > 0 and summary[when]["mrc_regions"] > 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "loss_mlm", "loss_mrc"} <= set(next(r for r in records if "loss" in r))
    model = out / "model"
    assert json.loads((model / "config.json").read_text())["task"] == "pretrain"
    assert json.loads((model / "region_classes.json").read_text())["category_ids"] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    weights = load_file(str(model / "model.safetensors"))
    assert (
        "mlm.bias" in weights
        and "mrc.classifier.weight" in weights
        and "mlm.decoder.weight" not in weights
    )
    again = evaluate(model, split="val", task="pretrain")
    assert again["mlm_accuracy"] == pytest.approx(summary["after"]["mlm_accuracy"])
    assert again["mrc_accuracy"] == pytest.approx(summary["after"]["mrc_accuracy"])


def test_mrc_switched_off_with_a_warning(small_scenes, tmp_path, caplog):
    from groundattn.model import load_tokenizer

    tokenizer = load_tokenizer()
    with caplog.at_level(logging.WARNING):
        recipe = PretrainRecipe(_config(small_scenes, "data.region_classes=null"))
        recipe.datasets(tokenizer)
    assert (
        recipe.region_classes is None and "switched off: data.region_classes is null" in caplog.text
    )
    # An instances file of other images: no region matches, MRC goes off.
    instances = json.loads((small_scenes / "refcoco+" / "instances.json").read_text())
    for entry in instances["images"]:
        entry["id"] += 10**6
    for entry in instances["annotations"]:
        entry["image_id"] += 10**6
    other = tmp_path / "instances.json"
    other.write_text(json.dumps(instances))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        recipe = PretrainRecipe(
            _config(small_scenes, f"data.region_classes={other}", "data.detection_classes=null")
        )
        datasets = recipe.datasets(tokenizer)
    assert recipe.region_classes is None and "matches a box" in caplog.text
    assert datasets["train"].region_classes is None
    summary = run(
        PretrainRecipe(
            _config(small_scenes, "data.region_classes=missing.json", "optim.max_steps=2")
        ),
        tmp_path / "off",
    )
    assert (
        not summary["mrc"]
        and "mrc_accuracy" not in summary["after"]
        and summary["after"]["mrc_regions"] == 0
    )


def test_vgp_starts_from_the_pretrained_encoder(small_scenes, pretrained, tmp_path, caplog):
    config = load_config(
        VGPConfig,
        CONFIGS / "vgp" / "tiny.yaml",
        [
            f"data.root={small_scenes}",
            f"model.init={pretrained}",
            "optim.max_steps=2",
            "optim.lr=1e-12",
        ],
    )
    with caplog.at_level(logging.INFO, logger="groundattn.train.models"):
        summary = run(VGPRecipe(config), tmp_path / "vgp")
    assert "task heads not used here: mlm, mrc" in caplog.text and summary["steps"] == 2
    start, end = (
        load_file(str(pretrained / "model.safetensors")),
        load_file(str(tmp_path / "vgp" / "model" / "model.safetensors")),
    )
    torch.testing.assert_close(
        end["encoder.encoder.layer.1.output.dense.weight"],
        start["encoder.encoder.layer.1.output.dense.weight"],
        atol=1e-6,
        rtol=0,
    )
    metrics = evaluate(tmp_path / "vgp" / "model", split="val", task="vgp")
    assert metrics["task"] == "vgp" and metrics["id_accuracy"] == pytest.approx(
        summary["after"]["id_accuracy"]
    )
    with pytest.raises(ConfigError, match="a vgp model, not a pretrain one"):
        evaluate(tmp_path / "vgp" / "model", task="pretrain")


@pytest.mark.skipif(sys.platform != "linux", reason="gloo process group on Linux")
def test_two_processes_give_the_losses_of_one(small_scenes, same_losses_in_two_processes):
    # No dropout: the two runs draw their masks from different random streams.
    args = [f"data.root={small_scenes}", "model.dropout=0", "optim.max_steps=3", "run.log_every=1"]
    same_losses_in_two_processes("pretrain", TINY, args, ["loss", "loss_mlm", "loss_mrc"])
