"""Grounding accuracy of one model per layer and head over a split (METHOD §8).

:func:`grounding_report` runs the encoder over the samples of the trainer's
validation, batched as there, through the VGP task's validation counts (the
grounded text tokens whose attention arg-max over the regions is one of their
own, per layer and head, and for the rollout) and draws the result with
:func:`plot_grounding_accuracy`.

Shapes: B batch, L layers, H heads, N sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from groundattn.data.regions import RegionSource
from groundattn.data.store import FeatureStore
from groundattn.eval.loop import validation_sums
from groundattn.model import load_tokenizer
from groundattn.tasks.vgp import VGPDataset, VGPTask, collate_vgp
from groundattn.tasks.vgp.task import GROUNDED_HEAD_ACCURACY, summarize
from groundattn.viz.errors import VisualizeError
from groundattn.viz.heatmap import plot_grounding_accuracy
from groundattn.viz.image import save_figure
from groundattn.viz.models import INIT, MAX_CAPTION_TOKENS, folder_name, load_model


def grounding_report(
    out_dir: str | Path,
    *,
    data_root: str | Path,
    split: str,
    model_dir: str | Path | None,
    name: str | None = None,
    max_images: int | None = 100,
    batch_size: int = 16,
    regions: RegionSource = "ground_truth",
    device: str | torch.device = "cpu",
    dpi: float = 150,
    threshold: float = GROUNDED_HEAD_ACCURACY,
) -> Path:
    """Grounding accuracy per layer and head (and of the rollout) over a split.

    The samples are those of the trainer's validation (:class:`VGPDataset` at
    epoch 0, with the run's ``max_caption_tokens``, negatives and seed), so with
    ``max_images`` = the run's ``data.max_val_images`` the numbers equal its
    ``grounding_per_head`` and ``rollout_per_layer`` (up to the precision the
    run validated in). Writes ``grounding[_<name>].png`` and the numbers as
    ``.json`` next to it.

    Args:
        out_dir: where the files go.
        data_root: data set root.
        split: the split (``<split>.txt`` and ``features/<split>.h5``).
        model_dir: a run's ``model/`` directory, or None for the default initialisation.
        name: the model's name, for the title and the file names.
        max_images: the split's first images used (None: all).
        batch_size: samples per forward pass.
        regions: which boxes the encoder sees.
        device: where the encoder runs.
        dpi: resolution of the PNG.
        threshold: the accuracy from which a head counts in ``grounded_heads``.

    The JSON also holds ``grounded_heads`` (how many heads reach ``threshold``)
    and ``phrase_recall_at_1``: zero-shot phrase grounding by attention, the
    arg-max over the regions (r0 excluded) of the mean attention of a phrase's
    tokens, per head and for the best head (by grounding accuracy), beside a
    uniform pick; and ``region_spread`` / ``text_spread``, how distinct a sample's
    candidate regions and its words stay from the embeddings to the last layer
    (:func:`~groundattn.supervision.token_spread`).

    Returns:
        The PNG.
    """
    root, out = Path(data_root), Path(out_dir)
    store_path = root / "features" / f"{split}.h5"
    with FeatureStore(store_path) as store:
        feature_dim = store.feature_dim
    model = load_model(name or INIT, model_dir, feature_dim, root)
    encoder = model.encoder.to(device)
    data, run = model.config.get("data", {}), model.config.get("run", {})
    dataset = VGPDataset(
        root, split, load_tokenizer(model.bert), regions=regions, max_images=max_images,
        max_caption_tokens=data.get("max_caption_tokens", MAX_CAPTION_TOKENS),
        negatives=data.get("negatives", "hard"), seed=run.get("seed", 0),
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_vgp)
    # The trainer's validation counts; the task's own heads are untrained and go unread.
    device = torch.device(device)
    counts, _ = validation_sums(VGPTask(encoder).to(device), loader, device)
    total = int(counts["grounding_total"])
    if not total:
        raise VisualizeError(f"split {split!r} of {root} gives no grounded text token")
    metrics = summarize(counts)
    L = len(metrics["rollout_per_layer"])
    accuracy = torch.tensor(metrics["grounding_per_head"], dtype=torch.float64).view(L, -1)
    rolled = torch.tensor(metrics["rollout_per_layer"], dtype=torch.float64)  # (L,)
    chance = metrics["grounding_baseline"]
    phrase_recall = torch.tensor(metrics["phrase_recall_at_1_per_head"]).view_as(accuracy)
    label = name or (model.source if model_dir is not None else INIT)
    fig = plot_grounding_accuracy(
        accuracy,
        rollout=rolled,
        chance=chance,
        title=f"Grounding accuracy: {label}, {split} ({len(dataset)} samples)",
    )
    stem = f"grounding_{folder_name(name)}" if name else "grounding"
    png = save_figure(fig, out / f"{stem}.png", dpi=dpi)
    best = int(accuracy.argmax())
    H = accuracy.shape[1]
    report = {
        "model": label,
        "source": model.source,
        "split": split,
        "images": len(dataset.image_ids),
        "samples": len(dataset),
        "grounded_tokens": total,
        "accuracy": accuracy.tolist(),  # (L, H)
        "rollout": rolled.tolist(),  # (L,)
        "best": {"layer": best // H, "head": best % H, "accuracy": float(accuracy.max())},
        "mean": float(accuracy.mean()),
        "chance": chance,
        "rollout_best": {"layer": int(rolled.argmax()), "accuracy": float(rolled.max())},
        "grounded_heads": {
            "threshold": threshold,
            "count": int((accuracy >= threshold).sum()),
        },
        # How distinct the sample's regions (and its words) stay, embeddings then each layer.
        "region_spread": metrics["region_spread_per_layer"],  # (L + 1,)
        "text_spread": metrics["text_spread_per_layer"],  # (L + 1,)
        "phrase_recall_at_1": {
            "phrases": int(counts["phrase_total"]),
            "best_head": metrics["phrase_recall_at_1_best_head"],
            "baseline": metrics["phrase_recall_at_1_baseline"],
            "per_head": phrase_recall.tolist(),  # (L, H)
        },
    }
    # out/ exists: save_figure made it.
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return png
