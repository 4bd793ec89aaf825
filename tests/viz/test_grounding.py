import json

import pytest
import torch
from PIL import Image

from groundattn.eval.saved import load_run
from groundattn.model import load_tokenizer
from groundattn.tasks.vgp import VGPDataset, VGPTask, collate_vgp, summarize
from groundattn.tasks.vgp.supervision import Direct
from groundattn.viz.grounding import grounding_report

DPI = 40
L, H = 2, 4  # the tiny preset of model_dirs


def test_grounding_report_equals_the_trainers_validation_counts(scenes, model_dirs, tmp_path):
    png = grounding_report(
        tmp_path, data_root=scenes, split="val", model_dir=model_dirs["direct"], name="direct",
        max_images=2, batch_size=7, dpi=DPI,
    )  # fmt: skip
    assert png == tmp_path / "grounding_direct.png"
    with Image.open(png) as image:
        assert image.size[0] > 0
    report = json.loads(png.with_suffix(".json").read_text())
    accuracy, rolled = torch.tensor(report["accuracy"]), torch.tensor(report["rollout"])
    assert accuracy.shape == (L, H) and rolled.shape == (L,)
    assert ((accuracy >= 0) & (accuracy <= 1)).all() and ((rolled >= 0) & (rolled <= 1)).all()
    assert report["samples"] == 20 and report["grounded_tokens"] > 0
    # The same samples in one batch through the task's validation counts (padding differs).
    task = VGPTask(load_run(model_dirs["direct"], scenes).task.encoder, Direct()).eval()
    dataset = VGPDataset(scenes, "val", load_tokenizer(), max_images=2)
    with torch.no_grad():
        _, parts = task.validate(collate_vgp([dataset[i] for i in range(len(dataset))]))
    metrics = summarize(parts)
    assert torch.allclose(
        accuracy.flatten(), torch.tensor(metrics["grounding_per_head"]), atol=1e-6
    )
    assert torch.allclose(rolled, torch.tensor(metrics["rollout_per_layer"]), atol=1e-6)
    # Heads above the threshold and the zero-shot phrase recall: the same as the trainer's.
    assert report["grounded_heads"] == {"threshold": 0.5, "count": metrics["grounded_heads"]}
    recall = report["phrase_recall_at_1"]
    assert recall["phrases"] > 0 and 0 < recall["baseline"] < 1
    assert torch.allclose(
        torch.tensor(recall["per_head"]).flatten(),
        torch.tensor(metrics["phrase_recall_at_1_per_head"]),
        atol=1e-6,
    )
    assert recall["best_head"] == metrics["phrase_recall_at_1_best_head"]
    assert recall["baseline"] == metrics["phrase_recall_at_1_baseline"]
    # Region spread: one value per state (embeddings, then each of the tiny model's 2 layers).
    assert len(report["region_spread"]) == L + 1 == len(report["text_spread"])
    assert report["region_spread"] == pytest.approx(metrics["region_spread_per_layer"], abs=1e-6)
