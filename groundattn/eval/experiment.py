"""The paper's experiment (Table 1) from one call: pretrain, fine-tune, evaluate, report.

Stages, each a run directory under ``out``:

- ``pretrain/``: VL pretraining once (MLM + MRC); its model is "Original";
- ``vgp/<row>/seed-<s>/``: VGP fine-tuning from Original for each row of the
  config (``rows``: a label and its VGP overrides; by default the paper's
  rows of ``methods``, one per supervision method, under the method's name);
- ``vqa/<model>/seed-<s>/``, ``refcoco-detected/<model>/seed-<s>/``,
  ``refcoco-ground_truth/<model>/seed-<s>/``: every downstream task from
  Original and from each fine-tuned model;
- ``phrase-grounding/<model>/seed-<s>/``: the same for phrase grounding, when
  the configuration names a ``phrase_grounding`` config.

A stage whose ``summary.json`` exists is reused; one with checkpoints resumes
from the last complete one, so a crashed experiment continues where it
stopped. The report is written at the end: ``results.md`` (Table 1 with a
"Chance / prior" row, read from the baselines in Original's stage summaries,
and each row's paired difference to w/o Attention over seeds with a 95 %
t-interval, see :mod:`groundattn.eval.report`), ``results.csv`` (every seed and
the chance row), ``differences.csv``, ``results.png``, the learning curves of every stage
(``learning_curves.{png,csv}``) and the attention of the rows side by side. Every
row gets the same downstream runs, seeds and statistics; the report orders and
labels the rows as the config does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import yaml

import groundattn
from groundattn.config import (
    ConfigError,
    ExperimentConfig,
    ExperimentRow,
    PhraseGroundingConfig,
    PretrainConfig,
    RefCOCOConfig,
    VGPConfig,
    VQAConfig,
    load_config,
)
from groundattn.errors import MissingFileError
from groundattn.eval.curves import write_curves
from groundattn.eval.report import (
    CHANCE,
    ORIGINAL,
    differences_table,
    markdown_table,
    results_figure,
    write_csv,
    write_differences_csv,
)
from groundattn.train.checkpoint import MANIFEST_FILE
from groundattn.train.checkpoint_io import replace_file
from groundattn.train.run import flatten as _flatten

log = logging.getLogger(__name__)

BOXES = ("detected", "ground_truth")
GROUNDING = ("grounding_best", "grounding_mean", "rollout_best")


STAGE_FILE = "stage.json"


def data_fingerprint(root: Path) -> str:
    """sha256 over the relative path, size and modification time of every file under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the relative path and bytes of every file of the groundattn package that runs.

    A stage made by other code is another stage: reusing it after a fix would
    report the old code's numbers under the new code's name.
    """
    package = Path(groundattn.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and p.suffix != ".pyc"):
        digest.update(f"{path.relative_to(package)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def model_fingerprint(model_dir: Path) -> str:
    """sha256 of a finished stage's export manifest (which holds the sha256 of its weights)."""
    return hashlib.sha256((model_dir / MANIFEST_FILE).read_bytes()).hexdigest()


def _stage_identity(config, data: str, parent: Path | None) -> dict:
    return {
        "config": config.model_dump(mode="json"),
        "data": data,
        "parent": None if parent is None else model_fingerprint(parent),
        "code": code_fingerprint(),
    }


def _check_identity(out: Path, identity: dict) -> None:
    """Refuses a stage directory made with another configuration, data, parent model or code."""
    file = out / STAGE_FILE
    if not file.is_file():
        if (out / "summary.json").is_file():
            raise ConfigError(
                f"{out}: a finished stage without {STAGE_FILE} (made by an older groundattn): "
                "cannot tell what it was run with; choose another --out"
            )
        return
    old, new = _flatten(json.loads(file.read_text())), _flatten(identity)
    changed = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    if changed:
        raise ConfigError(
            f"{out} was run with another configuration, data, parent model or groundattn code "
            f"(differs in: {', '.join(changed)}); choose another --out, or restore what it was run with"
        )


def _stage(
    out: Path, identity: dict, run: Callable[[Path, bool], dict], announce: Callable[[str], None]
) -> dict:
    _check_identity(out, identity)
    summary_file = out / "summary.json"
    if summary_file.is_file():
        announce(f"reuse  {out}")
        return json.loads(summary_file.read_text())
    out.mkdir(parents=True, exist_ok=True)
    # Every rank of a distributed experiment writes it: whole, so no rank reads it half written.
    replace_file(out / STAGE_FILE, json.dumps(identity, indent=2).encode())
    announce(f"{'resume' if (out / 'checkpoints').is_dir() else 'run   '} {out}")
    resume = out.is_dir()  # the experiment's own stage directory: continue what is there
    started = time.perf_counter()
    summary = run(out, resume)
    announce(f"       {out}: {time.perf_counter() - started:.0f} s")
    return summary


def run_experiment(
    config: ExperimentConfig, out: str | Path, *, announce: Callable[[str], None] = log.info
) -> list[dict]:
    """Runs (or reuses) every stage and writes the report.

    Returns the chance record first (method ``"chance"``), then one record per (model, seed).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_data_root(config)
    started = time.perf_counter()
    data = data_fingerprint(Path(config.data_root))
    stages = _Stages(config, out, data, announce)
    pretrain_cfg = stages.config(
        PretrainConfig, config.pretrain, "pretrain", f"run.seed={config.seeds[0]}"
    )
    stages.run("pretrain", pretrain_cfg, out / "pretrain", None)
    original = out / "pretrain" / "model"

    records = []
    rows = config.variants
    for seed in config.seeds:
        vgp_summaries = {}
        for row in rows:
            cfg = vgp_config(config, row, original, seed)
            vgp_summaries[row.key] = stages.run(
                "vgp", cfg, out / "vgp" / row.key / f"seed-{seed}", original
            )
        starts = {
            ORIGINAL: original,
            **{row.key: out / "vgp" / row.key / f"seed-{seed}" / "model" for row in rows},
        }
        for name, init in starts.items():
            record, vqa, refs, phrase = stages.downstream(name, init, seed)
            # Grounding on the VGP validation: Original is every VGP run's "before" (with no
            # VGP row, Original alone, its VGP columns stay empty).
            vgp = (
                vgp_summaries[name]["after"]
                if name != ORIGINAL
                else next((v["before"] for v in vgp_summaries.values()), {})
            )
            if vgp:
                record.update(vgp_columns(vgp, fine_tuned=name != ORIGINAL))
            records.append(record)
            if name == ORIGINAL and seed == config.seeds[0]:  # baselines: the same for all models
                records.insert(0, _chance_record(seed, vqa, refs, vgp))
                if phrase is not None:
                    records[0].update(phrase_grounding_columns(phrase, "_baseline"))
    write_report(
        records,
        out,
        minutes=(time.perf_counter() - started) / 60,
        config=config,
        data=data,
    )
    write_curves(out)
    if config.visualize and len(rows) > 1:
        _compare_attention(config, out)
    return records


class _Stages:
    """The experiment's stages: each config with the preset's overrides, run or reused."""

    def __init__(self, config: ExperimentConfig, out: Path, data: str, announce):
        self.experiment, self.out, self.data, self.announce = config, out, data, announce

    def config(self, cls, file: Path, stage: str, *sets: str):
        """A stage's config: its file, the data root, the preset's overrides, then ``sets``."""
        extra = [
            f"data.root={self.experiment.data_root}",
            *self.experiment.overrides.get(stage, []),
        ]
        return load_config(cls, file, [*extra, *sets])

    def run(self, task: str, cfg, out: Path, init: Path | None) -> dict:
        """The summary of the stage at ``out``: run, resumed, or reused if it is this one."""
        from groundattn.train.registry import recipe_class
        from groundattn.train.run import run

        recipe = recipe_class(task)
        return _stage(
            out,
            _stage_identity(cfg, self.data, init),
            lambda o, r: run(recipe(cfg), o, resume=r),
            self.announce,
        )

    def downstream(self, name: str, init: Path, seed: int) -> tuple[dict, dict, dict, dict | None]:
        """VQA, RefCOCO+ with each box set and (if asked) phrase grounding from ``init``:
        the model's record and the VQA, RefCOCO+ (by boxes) and phrase-grounding summaries."""
        experiment, out = self.experiment, self.out
        record = {"method": name, "seed": seed}
        common = (f"model.init={init}", f"run.seed={seed}")
        vqa_cfg = self.config(VQAConfig, experiment.vqa, "vqa", *common)
        vqa = self.run("vqa", vqa_cfg, out / "vqa" / name / f"seed-{seed}", init)
        record["vqa_val"] = vqa["after"]["accuracy"]
        refs = {}
        for boxes in BOXES:
            ref_cfg = self.config(
                RefCOCOConfig, experiment.refcoco, "refcoco", *common, f"data.boxes={boxes}"
            )
            where = out / f"refcoco-{boxes}" / name / f"seed-{seed}"
            ref = refs[boxes] = self.run("refcoco", ref_cfg, where, init)
            for split, metrics in ref["splits"].items():
                record[f"refcoco_{boxes}_{split}"] = metrics["accuracy"]
        phrase = None
        if experiment.phrase_grounding is not None:
            phrase_cfg = self.config(
                PhraseGroundingConfig, experiment.phrase_grounding, "phrase_grounding", *common
            )
            where = out / "phrase-grounding" / name / f"seed-{seed}"
            phrase = self.run("phrase-grounding", phrase_cfg, where, init)
            record.update(phrase_grounding_columns(phrase))
        return record, vqa, refs, phrase


def vgp_config(
    config: ExperimentConfig, row: ExperimentRow, original: Path, seed: int
) -> VGPConfig:
    """The VGP config of one row and seed: the experiment's, then the row's overrides."""
    sets = [
        f"data.root={config.data_root}",
        *config.overrides.get("vgp", []),
        f"model.init={original}",
        *row.set,
        f"run.seed={seed}",
    ]
    try:
        return load_config(VGPConfig, config.vgp, sets)
    except ConfigError as error:
        raise ConfigError(f"row {row.label!r}: {error}") from None


def check_data_root(config: ExperimentConfig) -> None:
    """Refuses, before any stage runs, a data root that lacks a file some stage reads.

    The error lists every missing root-relative path with what makes it.
    """
    root = Path(config.data_root)
    if not root.is_dir():
        raise MissingFileError(
            f"data_root {root} does not exist (the embedded scenes are written only at "
            f"data/scenes; set prepare_scenes=true to write them at {root})"
        )
    stages = [
        (PretrainConfig, config.pretrain, "pretrain"),
        (VGPConfig, config.vgp, "vgp"),
        (VQAConfig, config.vqa, "vqa"),
        (RefCOCOConfig, config.refcoco, "refcoco"),
    ]
    if config.phrase_grounding is not None:
        stages.append((PhraseGroundingConfig, config.phrase_grounding, "phrase_grounding"))
    needs: dict[str, str] = {}
    for cls, file, stage in stages:
        extra = [f"data.root={root}", *config.overrides.get(stage, [])]
        needs.update(load_config(cls, file, extra).data.needs())
    for row in config.variants:  # every row's configuration is valid before any stage runs
        vgp_config(config, row, Path("pretrain/model"), config.seeds[0])
    missing = [f"{name} ({how})" for name, how in needs.items() if not (root / name).exists()]
    if missing:
        raise MissingFileError(
            f"data_root {root}: {len(missing)} of the {len(needs)} paths the experiment reads "
            f"are missing: {'; '.join(missing)}"
        )


def phrase_grounding_columns(summary: dict, suffix: str = "") -> dict[str, float | None]:
    """``phrase_grounding_<split>_r1`` and ``_r5`` of a phrase-grounding summary's splits
    (``suffix="_baseline"``: their uniform-pick baselines, for the chance row)."""
    return {
        f"phrase_grounding_{split}_r{k}": metrics.get(f"recall_at_{k}{suffix}")
        for split, metrics in summary["splits"].items()
        for k in (1, 5)
    }


def vgp_columns(summary: dict, *, fine_tuned: bool) -> dict[str, float | None]:
    """A model's VGP columns from a VGP validation (``after``, or Original's ``before``): the
    attention grounding, the last layer's region spread and, once fine-tuned, its VGP
    classification (before fine-tuning that head is untrained: no value)."""
    return {
        **{k: summary[k] for k in GROUNDING},
        "vgp_accuracy": summary["vgp_accuracy"] if fine_tuned else None,
        "region_spread": summary["region_spread_per_layer"][-1],
    }


def _chance_record(seed: int, vqa: dict, refs: dict[str, dict], vgp_before: dict) -> dict:
    """The trivial baseline of every column from Original's summaries (``None`` where absent)."""
    record = {"method": CHANCE, "seed": seed, "vqa_val": vqa["after"].get("accuracy_baseline")}
    for boxes, ref in refs.items():
        for split, metrics in ref["splits"].items():
            record[f"refcoco_{boxes}_{split}"] = metrics.get("accuracy_baseline")
    # Uniform attention over the sample's regions is the chance level of all three.
    record.update(dict.fromkeys(GROUNDING, vgp_before.get("grounding_baseline")))
    record["vgp_accuracy"] = vgp_before.get("vgp_accuracy_baseline")
    return record


def write_report(
    records: list[dict], out: Path, *, minutes: float, config: ExperimentConfig, data: str = ""
) -> Path:
    """Writes ``results.{md,csv,png,json}`` and ``differences.csv``; returns ``results.md``."""
    labels = {row.key: row.label for row in config.variants}
    (out / "results.json").write_text(json.dumps(records, indent=2))
    write_csv(records, out / "results.csv")
    write_differences_csv(records, out / "differences.csv", labels)
    figure = results_figure(records, labels)
    figure.savefig(out / "results.png", dpi=120)
    lines = [
        "# Attention supervision: downstream results",
        "",
        markdown_table(records, labels),
        "",
        differences_table(records, labels),
        "",
        f"Data: `{config.data_root}`; "
        f"rows {', '.join(labels.values()) or '(none: Original alone)'}; seeds {config.seeds};",
        f"this run of the experiment took {minutes:.1f} min (stages reused from earlier runs take no time).",
        "VQA: official accuracy on val. RefCOCO+: accuracy (IoU ≥ 0.5) with detected and ground-truth boxes.",
        *(
            [
                "Phrase grounding: Recall@1 and Recall@5 (IoU ≥ 0.5 with a box of the phrase) over the phrases",
                "with a box, with the boxes of its config (`data.boxes`).",
            ]
            if config.phrase_grounding is not None
            else []
        ),
        "Grounding: share of grounded words whose attention arg-max over regions is their region, on the VGP",
        "validation set (best head, mean over heads, best rollout layer); Original = before VGP fine-tuning.",
        "Every seed's numbers are in `results.csv`, the paired differences (fractions) in `differences.csv`.",
        "",
        "![results](results.png)",
        "",
        "Learning curves of every stage (validation against optimizer steps, baselines dashed;",
        "numbers in `learning_curves.csv`):",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "## What was run",
        "",
        f"Data root `{config.data_root}`, fingerprint `{data[:16]}` (sha256 over its files' paths, sizes",
        f"and times); groundattn code `{code_fingerprint()[:16]}` (sha256 over the package's files); every",
        f"stage's resolved configuration is its `{STAGE_FILE}`. The experiment configuration:",
        "",
        "```yaml",
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False).rstrip(),
        "```",
    ]
    if config.visualize and len(labels) > 1:
        lines += [
            "",
            "Attention of the same phrase after each fine-tuned model:",
            "",
            "![attention](attention/compare.png)",
        ]
    path = out / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _compare_attention(config: ExperimentConfig, out: Path) -> None:
    """The rows side by side for one phrase of one validation image."""
    from groundattn.data.flickr30k import read_split
    from groundattn.viz.run import visualize

    seed = config.seeds[0]
    image = read_split(Path(config.data_root) / "val.txt")[0]
    models = {r.key: str(out / "vgp" / r.key / f"seed-{seed}" / "model") for r in config.variants}
    visualize(
        out / "attention",
        data_root=config.data_root,
        split="val",
        image_id=image,
        models=models,
        outputs={"compare"},
    )
