"""Training learns, through the ordinary runs and the tiny configs.

- Tiny worlds (:mod:`worlds`) whose answer is a linear function of one region's
  feature, its colour: VQA, referring expressions, phrase grounding and
  image-description identification must learn it; referring expressions must
  also learn a referent named by its place (a linear function of its box) and
  one named by two attributes that each leave two candidates.
- On the small embedded scenes, direct attention supervision must raise the
  grounding accuracy of the heads well above what no supervision reaches.
- Periodic validation (``run.eval_every``) keeps running past an epoch boundary.
"""

import json
from pathlib import Path

import pytest
from worlds import (
    COLOURS,
    write_conjunction_world,
    write_phrase_world,
    write_refer_world,
    write_vgp_world,
    write_vqa_world,
)

from groundattn.config import (
    PhraseGroundingConfig,
    PretrainConfig,
    RefCOCOConfig,
    VGPConfig,
    VQAConfig,
    load_config,
)
from groundattn.train.phrase_grounding import PhraseGroundingRecipe
from groundattn.train.pretrain import PretrainRecipe
from groundattn.train.refcoco import RefCOCORecipe
from groundattn.train.run import run
from groundattn.train.vgp import VGPRecipe
from groundattn.train.vqa import VQARecipe

CONFIGS = Path(__file__).parents[2] / "configs"
NO_CHECKPOINTS = "run.save_every=100000"  # the last step is saved all the same


def _vqa(root, *extra) -> VQAConfig:
    return load_config(
        VQAConfig,
        CONFIGS / "vqa" / "tiny.yaml",
        [f"data.root={root}", "data.min_answer_count=1", NO_CHECKPOINTS, *extra],
    )


def _refcoco(root, *extra) -> RefCOCOConfig:
    return load_config(
        RefCOCOConfig,
        CONFIGS / "refcoco" / "tiny.yaml",
        [f"data.root={root}", NO_CHECKPOINTS, *extra],
    )


def _phrase(root, *extra) -> PhraseGroundingConfig:
    return load_config(
        PhraseGroundingConfig,
        CONFIGS / "phrase_grounding" / "tiny.yaml",
        [f"data.root={root}", NO_CHECKPOINTS, *extra],
    )


def _vgp(root, *extra) -> VGPConfig:
    return load_config(
        VGPConfig, CONFIGS / "vgp" / "tiny.yaml", [f"data.root={root}", NO_CHECKPOINTS, *extra]
    )


def _curve(summary: dict, key: str) -> list[tuple[int, float]]:
    return [(h["step"], round(h[key], 3)) for h in summary["history"]]


# ---- tiny worlds ---------------------------------------------------------------------------


def _learn_refer_world(root: Path, tmp_path: Path, *, steps: int) -> dict:
    """A tiny refer world's run: ground-truth boxes, no test splits, validation every 100 steps."""
    return run(
        RefCOCORecipe(
            _refcoco(
                root,
                "data.boxes=ground_truth",
                "data.test_splits=[]",
                "optim.epochs=100",
                f"optim.max_steps={steps}",
                "run.eval_every=100",
            )
        ),
        tmp_path / "run",
    )


def test_vqa_learns_the_colour_of_the_shape(tmp_path):
    # 6 colours, a grey distractor beside the shape. Measured: 0.06 before, 0.60 at
    # step 300, 0.96 at 500, 1.0 from step 600 on.
    root = write_vqa_world(tmp_path / "data", {"train": 192, "val": 48}, colours=6)
    summary = run(
        VQARecipe(_vqa(root, "optim.epochs=100", "optim.max_steps=800", "run.eval_every=100")),
        tmp_path / "run",
    )
    assert summary["answers"] == 6 and summary["after"]["questions"] == 48
    assert summary["before"]["accuracy"] <= 0.35, _curve(summary, "accuracy")
    assert summary["after"]["accuracy"] >= 0.95, _curve(summary, "accuracy")


def test_refcoco_finds_the_shape_of_the_named_colour(tmp_path):
    # Four shapes of distinct colours (of 6) per image, one per cell; "the red shape".
    # Measured: 0.15 before, 0.48 at step 300, 0.96 at 400, 0.98 at 600 (chance 0.25).
    root = write_refer_world(tmp_path / "data", {"train": 96, "val": 48}, shapes=4, colours=6)
    summary = _learn_refer_world(root, tmp_path, steps=600)
    after = summary["after"]
    assert after["answerable"] == 1.0 and after["accuracy_baseline"] == pytest.approx(0.25)
    assert after["accuracy"] >= 0.95, _curve(summary, "accuracy")


def test_refcoco_finds_the_shape_at_the_named_place(tmp_path):
    # The same images; "the shape at the top left": the referent is a linear function of its box
    # geometry and the features do not tell it. Measured: 0.25 / 0.12 / 0.75 / 1.0 at steps
    # 0 / 100 / 200 / 300 (chance 0.25). With the geometry entering unstandardised (in [0, 1],
    # beside unit-variance features) it stayed at 0.10-0.19 for all 600 steps.
    root = write_refer_world(
        tmp_path / "data", {"train": 96, "val": 48}, shapes=4, colours=6, by_place=True
    )
    summary = _learn_refer_world(root, tmp_path, steps=400)
    assert summary["after"]["accuracy_baseline"] == pytest.approx(0.25)
    assert summary["after"]["accuracy"] >= 0.95, _curve(summary, "accuracy")


def test_refcoco_finds_the_shape_that_has_both_named_attributes(tmp_path):
    # "the red circle" beside a red star and a blue circle: colour alone or shape alone stays
    # at 0.5. Measured: 0.12 / 0.19 / 0.31 / 0.45 / 0.91 / 0.94 / 0.94 / 0.95 / 0.95 at steps
    # 0-800 (chance 0.25). With the shape spread over 48 correlated values it stops at 0.80-0.88
    # from step 300 on (the embedded scenes' RefCOCO+ never learns colour beside shape: README,
    # "Why it did not learn").
    root = write_conjunction_world(tmp_path / "data", {"train": 200, "val": 64}, shape_dims=4)
    summary = _learn_refer_world(root, tmp_path, steps=800)
    assert summary["after"]["accuracy_baseline"] == pytest.approx(0.25)
    assert summary["after"]["accuracy"] >= 0.9, _curve(summary, "accuracy")


def test_phrase_grounding_finds_the_shape_the_marked_phrase_names(tmp_path):
    # Four shapes of distinct colours (of 6) per image, one per cell; each caption names two
    # of them ("a red shape and a blue shape ."), and only the phrase's segment says which is
    # asked for: without it R@1 cannot pass 0.5. Measured (lr 3e-3, batch 32, run seeds 0 and
    # 1): 0.20 / 0.28 before, 0.30 / 0.63 at step 300, 0.97 / 0.98 at 400, 1.0 from 500 on
    # (chance 0.25; about 45 s on 2 busy cores). With all four shapes named it is slow and
    # fickle: 0.25 after 600 steps at lr 1e-3 (batch 16), 0.29 after 800 at 3e-3 (batch 16),
    # 0.31 after 600 at 3e-3 (batch 32), 0.94 at step 500 of a 1000-step schedule. R@5 is
    # trivial here: 4 candidates.
    root = write_phrase_world(
        tmp_path / "data", {"train": 96, "val": 24}, shapes=4, captions=4, mentioned=2
    )
    summary = run(
        PhraseGroundingRecipe(
            _phrase(
                root,
                "data.boxes=ground_truth",
                "data.test_splits=[]",
                "optim.lr=3e-3",
                "optim.batch_size=32",
                "optim.epochs=100",
                "optim.max_steps=600",
                "run.eval_every=100",
            )
        ),
        tmp_path / "run",
    )
    after = summary["after"]
    assert after["phrases"] == 24 * 4 * 2 and after["answerable"] == 1.0
    assert after["recall_at_1_baseline"] == pytest.approx(0.25)
    assert after["recall_at_5"] == after["recall_at_5_baseline"] == 1.0
    assert summary["before"]["recall_at_1"] <= 0.35, _curve(summary, "recall_at_1")
    assert after["recall_at_1"] >= 0.9, _curve(summary, "recall_at_1")


@pytest.mark.xfail(
    strict=True,
    reason="not learned: identification compares the caption's colour word with the region's "
    "colour, and small random encoders with dropout do not learn that comparison "
    "(benchmarks/verification.py: at width 64 a plain nn.TransformerEncoder and the tiny encoder "
    "with dropout 0.1 stop at 0.75, the captions-only level; without dropout the tiny encoder "
    "passes 95 % at step 1,000). In this world the tiny preset keeps the prior (0.49) for 800 "
    "steps; width 64, dropout 0 and a region scale three times the words' stop at 0.77 (96 "
    "images memorised, training loss 0.09). With 960 images, random negatives and an r0 without "
    "this world's brightness and noise it reaches 0.94 in seed 0 but 0.84 / 0.74 in seeds 1 / 2. "
    "README, 'Why it did not learn', Identification, has every figure. Open: a world and a "
    "small configuration that learn it in every seed through the ordinary config.",
)
def test_vgp_identifies_the_captions_that_name_the_colour(tmp_path):
    # One shape of 8 colours per image; five captions name its colour; the negative
    # caption is the dataset's own (the nearest image's). Of the validation samples,
    # 49 % are class 0 (both captions describe the image: the majority) and 4 % hold a
    # negative naming the same colour (no model can tell): the ceiling is 0.96.
    colours = write_vgp_world(tmp_path / "data", {"train": 96, "val": 48}, colours=8)
    assert len(set(colours)) == len(COLOURS)
    summary = run(
        VGPRecipe(
            _vgp(
                tmp_path / "data",
                "supervision.method=none",
                "optim.epochs=100",
                "optim.max_steps=800",
                "run.eval_every=100",
            )
        ),
        tmp_path / "run",
    )
    after = summary["after"]
    majority = after["id_accuracy_baseline"]
    assert 0.45 <= majority <= 0.55
    assert after["id_accuracy"] >= max(0.95 * 0.96, (majority + 1) / 2), _curve(
        summary, "id_accuracy"
    )


# ---- attention supervision on the small scenes ------------------------------------------------


def test_direct_supervision_grounds_the_heads(small_scenes, tmp_path):
    # Measured (60 steps, past the first epoch of 40; tiny preset, the paper's λ = 1):
    # grounding_mean 0.183 before; direct 0.267, none 0.199; uniform attention over the regions
    # 0.218. (At 40 steps direct reached 0.236: the 64-value features of 2026-12-07 ground later.)
    after = {}
    for method in ("direct", "none"):
        summary = run(
            VGPRecipe(
                _vgp(
                    small_scenes,
                    f"supervision.method={method}",
                    "supervision.weight=1.0",
                    "optim.epochs=10",
                    "optim.max_steps=60",
                )
            ),
            tmp_path / method,
        )
        before, after[method] = summary["before"]["grounding_mean"], summary["after"]
    direct, none = after["direct"]["grounding_mean"], after["none"]["grounding_mean"]
    chance = after["direct"]["grounding_baseline"]
    assert direct >= before + 0.04, (before, direct, none, chance)
    assert direct >= none + 0.04, (before, direct, none, chance)
    assert direct >= chance + 0.02, (before, direct, none, chance)  # above uniform attention


# ---- periodic validation past an epoch boundary ----------------------------------------------


def _periodic_validations(out: Path, summary: dict, every: int) -> None:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["epoch"] for r in records if "loss" in r) == 1  # the second epoch ran
    steps = summary["steps"]
    periodic = list(range(every, steps + 1, every))
    assert len(periodic) >= 2
    assert [h["step"] for h in summary["history"]] == [0, *periodic]
    assert [r["step"] for r in records if any(k.startswith("val.") for k in r)] == periodic


def test_vgp_validates_periodically_across_epochs(small_scenes, tmp_path):
    out = tmp_path / "run"
    # 480 samples: 15 batches of 32 an epoch, 30 steps in two.
    summary = run(
        VGPRecipe(
            _vgp(
                small_scenes,
                "optim.batch_size=32",
                "optim.epochs=2",
                "optim.max_steps=null",
                "run.eval_every=7",
                "data.max_val_images=3",
            )
        ),
        out,
    )
    assert summary["steps"] == 30
    _periodic_validations(out, summary, 7)
    assert all(len(h["grounding_per_head"]) == 2 * 4 for h in summary["history"])


def test_vqa_validates_periodically_across_epochs(small_scenes, tmp_path):
    out = tmp_path / "run"
    summary = run(
        VQARecipe(
            _vqa(
                small_scenes,
                "optim.epochs=2",
                "optim.max_steps=null",
                "run.eval_every=5",
                "data.max_val_questions=16",
            )
        ),
        out,
    )
    _periodic_validations(out, summary, 5)


def test_refcoco_validates_periodically_across_epochs(small_scenes, tmp_path):
    out = tmp_path / "run"
    summary = run(
        RefCOCORecipe(
            _refcoco(
                small_scenes,
                "optim.epochs=2",
                "optim.max_steps=null",
                "run.eval_every=5",
                "data.max_val_sentences=16",
            )
        ),
        out,
    )
    _periodic_validations(out, summary, 5)


def test_phrase_grounding_validates_periodically_across_epochs(small_scenes, tmp_path):
    out = tmp_path / "run"
    summary = run(
        PhraseGroundingRecipe(
            _phrase(
                small_scenes,
                "optim.batch_size=32",
                "optim.epochs=2",
                "optim.max_steps=null",
                "run.eval_every=8",
                "data.max_val_phrases=16",
                "data.test_splits=[]",
            )
        ),
        out,
    )
    _periodic_validations(out, summary, 8)
    assert all("recall_at_5_baseline" in h for h in summary["history"])


def test_pretrain_validates_periodically_across_epochs(small_scenes, tmp_path):
    out = tmp_path / "run"
    config = load_config(
        PretrainConfig,
        CONFIGS / "pretrain" / "tiny.yaml",
        [
            f"data.root={small_scenes}",
            NO_CHECKPOINTS,
            "optim.batch_size=32",
            "optim.epochs=2",
            "optim.max_steps=null",
            "run.eval_every=2",
            "data.max_val_images=3",
        ],
    )
    summary = run(PretrainRecipe(config), out)
    _periodic_validations(out, summary, 2)
    assert all("mlm_accuracy_baseline" in h for h in summary["history"])
