"""Grounding accuracy of one model per layer and head over a split (METHOD §8).

:func:`grounding_report` runs the encoder over the samples of the trainer's
validation, batched as there, counts the grounded text tokens whose attention
arg-max over the regions is one of their own (per layer and head, and for the
rollout) and draws the result with :func:`plot_grounding_accuracy`.

Shapes: B batch, L layers, H heads, N sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from groundattn.data.regions import RegionSource
from groundattn.data.store import FeatureStore
from groundattn.model import load_tokenizer
from groundattn.supervision import (
    grounding_chance,
    grounding_hits,
    phrase_grounding_hits,
    rollout,
)
from groundattn.tasks.vgp import VGPDataset, collate_vgp
from groundattn.tasks.vgp.task import GROUNDED_HEAD_ACCURACY
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
    uniform pick.

    Returns:
        The PNG.
    """
    root, out = Path(data_root), Path(out_dir)
    store_path = root / "features" / f"{split}.h5"
    with FeatureStore(store_path) as store:
        feature_dim = store.feature_dim
    model = load_model(name or INIT, model_dir, feature_dim)
    encoder = model.encoder.to(device)
    data, run = model.config.get("data", {}), model.config.get("run", {})
    dataset = VGPDataset(
        root, split, load_tokenizer(model.bert), regions=regions, max_images=max_images,
        max_caption_tokens=data.get("max_caption_tokens", MAX_CAPTION_TOKENS),
        negatives=data.get("negatives", "hard"), seed=run.get("seed", 0),
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_vgp)
    hits = rolled_hits = total = chance = 0
    phrase_hits = phrases = phrase_chance = 0
    with torch.inference_mode():
        for batch in loader:
            batch = batch.to(device)
            output = encoder(batch.inputs, output_attentions=True)
            probs = output.attention.probs.float()  # (B, L, H, N, N)
            h, count = grounding_hits(probs, batch.grounding, output.region_mask)  # (L, H), ()
            chance = chance + grounding_chance(batch.grounding, output.region_mask)
            r, _ = grounding_hits(
                rollout(probs, output.valid_mask), batch.grounding, output.region_mask
            )
            hits, rolled_hits, total = hits + h, rolled_hits + r[:, 0], total + count  # r: (L, 1)
            p_hits, p_count, p_chance = phrase_grounding_hits(
                probs, batch.phrase_mask, batch.phrase_regions, output.region_mask
            )
            phrase_hits, phrases = phrase_hits + p_hits, phrases + p_count
            phrase_chance = phrase_chance + p_chance
    if not int(total):
        raise VisualizeError(f"split {split!r} of {root} gives no grounded text token")
    accuracy = hits.double().cpu() / int(total)  # (L, H)
    rolled = rolled_hits.double().cpu() / int(total)  # (L,)
    chance = float(chance) / int(total)
    phrase_recall = phrase_hits.double().cpu() / max(1, int(phrases))  # (L, H)
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
        "grounded_tokens": int(total),
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
        "phrase_recall_at_1": {
            "phrases": int(phrases),
            "best_head": float(phrase_recall.flatten()[best]),
            "baseline": float(phrase_chance) / max(1, int(phrases)),
            "per_head": phrase_recall.tolist(),  # (L, H)
        },
    }
    # out/ exists: save_figure made it.
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return png
