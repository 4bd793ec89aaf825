"""The ``groundattn`` command: a thin shell over the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from groundattn.train.registry import TASKS

DEFAULT_DATA = Path("data/scenes")
VIZ_OUTPUTS = (
    "attention",
    "head_view",
    "model_view",
    "heads",
    "layers",
    "rollout",
    "compare",
)  # groundattn.viz.run.OUTPUTS
VIZ_NETWORK = ("head_view", "model_view")  # groundattn.viz.run.NETWORK_OUTPUTS (bertviz: a CDN)


def _prepare_scenes(args) -> None:
    from groundattn.data.scenes import prepare_scenes

    path = prepare_scenes(args.out, size=args.size, seed=args.seed, overwrite=args.overwrite)
    print(f"grounded scenes in {path} (see {path / 'card.md'})")


def _prepare_features(args) -> None:
    import time

    from groundattn.data.backbone import build_backbone
    from groundattn.data.featurize import featurize_images

    backbone = build_backbone(args.backbone, args.device, args.image_size)
    start = time.perf_counter()
    n = featurize_images(
        args.images,
        args.out,
        boxes=args.boxes,
        grid=tuple(args.grid),
        backbone=backbone,
        batch_size=args.batch_size,
    )
    seconds = time.perf_counter() - start
    print(
        f"{n} images -> {args.out} ({backbone.name}, {backbone.feature_dim} values per box, "
        f"{n / seconds:.1f} images/s)"
    )


def _prepare_bottomup(args) -> None:
    import time

    from groundattn.data.bottomup import tsv_to_store
    from groundattn.errors import GroundattnError

    if args.workers < 1:
        raise GroundattnError(f"--workers must be >= 1, got {args.workers}")
    start = time.perf_counter()
    n = tsv_to_store(
        args.tsv, args.out, feature_dtype=args.dtype, workers=args.workers, resume=args.resume
    )
    seconds = time.perf_counter() - start
    print(f"{n} images -> {args.out} ({seconds:.0f} s)")


def _train(args) -> None:
    from groundattn.config import load_config
    from groundattn.train.registry import recipe_class
    from groundattn.train.run import run

    recipe = recipe_class(args.task)
    config = load_config(recipe.config_class, args.config, args.set)
    summary = run(recipe(config), args.out, resume=args.resume)
    print(format_before_after(summary) if args.task == "vgp" else format_metrics(summary))
    print(f"summary: {Path(args.out) / 'summary.json'}")


def format_metrics(summary: dict) -> str:
    """Validation metrics before and after training, and of every evaluated split."""
    lines = [f"{summary.get('task', 'run')}: {summary['steps']} steps, {summary['seconds']:.0f} s"]
    for key, value in summary["after"].items():
        if isinstance(value, float):
            before = summary["before"].get(key, float("nan"))
            lines.append(f"  {key:<28} before {before:8.4f}   after {value:8.4f}")
    for split, metrics in summary.get("splits", {}).items():
        lines.append(
            f"  {split}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        )
    return "\n".join(lines)


def _evaluate(args) -> None:
    from groundattn.eval.saved import evaluate

    metrics = evaluate(
        args.model,
        args.data,
        args.split,
        overrides=args.set,
        out_dir=args.out,
        batch_size=args.batch_size,
    )
    print(json.dumps(metrics, indent=2))


def _experiment(args) -> None:
    from groundattn.config import ExperimentConfig, load_config
    from groundattn.data.scenes import prepare_scenes
    from groundattn.data.scenes.card import check_current
    from groundattn.eval.experiment import run_experiment

    config = load_config(ExperimentConfig, args.config, args.set)
    if config.writes_scenes:  # never into a directory that exists: that one is only read
        print(f"preparing the embedded grounded scenes in {config.data_root} (once)")
        prepare_scenes(config.data_root, size="default")
    check_current(config.data_root)
    run_experiment(config, args.out, announce=print)
    print((Path(args.out) / "results.md").read_text())


def format_before_after(summary: dict) -> str:
    """A small table of the validation metrics before and after fine-tuning."""
    keys = [
        ("id_accuracy", "identification accuracy"),
        ("vgp_accuracy", "VGP accuracy"),
        ("vgp_macro_f1", "VGP macro-F1"),
        ("grounding_best", "grounding accuracy, best head"),
        ("grounding_mean", "grounding accuracy, mean of heads"),
        ("rollout_best", "grounding accuracy, rollout best layer"),
    ]
    before, after = summary["before"], summary["after"]
    width = max(len(label) for _, label in keys)
    lines = [
        f"VGP fine-tuning, method {summary['method']}, {summary['steps']} steps, {summary['seconds']:.0f} s",
        f"{'validation':<{width}}  before   after",
    ]
    lines += [
        f"{label:<{width}}  {100 * before[k]:6.1f}  {100 * after[k]:6.1f}" for k, label in keys
    ]
    return "\n".join(lines)


def _demo(args) -> None:
    from groundattn.config import VGPConfig, load_config
    from groundattn.data.scenes import prepare_scenes
    from groundattn.data.scenes.card import check_current
    from groundattn.train.run import run
    from groundattn.train.vgp import VGPRecipe

    data = Path(args.data)
    if not data.exists():
        print(f"preparing the embedded grounded scenes in {data} (once)")
        prepare_scenes(data, size="default")
    check_current(data)
    config = load_config(VGPConfig, args.config, [f"data.root={data}", *args.set])
    out = Path(args.out)
    summary = run(VGPRecipe(config), out, resume=(out / "checkpoints").is_dir())
    print(format_before_after(summary))


def _add_visualize_arguments(parser) -> None:
    """The options of ``groundattn visualize`` (an ``argparse`` parser)."""
    add = parser.add_argument
    add("--data", required=True, help="data set root (e.g. data/scenes)")
    add("--split", default="val", help="split whose feature store holds the image(s)")
    add("--out", required=True, help="output folder")
    add(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="a run (or its model/ folder); repeat to compare; 'init': the default initialisation",
    )
    add("--image", help="image id (not with --grounding)")
    add(
        "--caption",
        action="append",
        metavar="TEXT",
        help="give twice: c1 then c2, plain text or Flickr30k markup (default: the data set's)",
    )
    add(
        "--caption-index",
        type=int,
        nargs=2,
        default=[0, 1],
        metavar=("I", "J"),
        help="which of the image's captions are c1 and c2 (default: 0 1)",
    )
    add(
        "--phrase",
        help="phrase whose attention is drawn (default: the first one grounded to some of the "
        "boxes but not all)",
    )
    add("--layers", type=int, nargs="+", metavar="L", help="layers shown (default: all)")
    add("--heads", type=int, nargs="+", metavar="H", help="heads shown (default: all)")
    add(
        "--direction",
        default="all",
        choices=("all", "text_to_region", "region_to_text"),
        help="block of the HTML views",
    )
    add(
        "--regions",
        default="ground_truth",
        choices=["ground_truth", "detected", "all"],
        help="which boxes the encoder sees",
    )
    add("--image-dir", help="folder of <image id>.jpg (default: <data>/images)")
    add("--dpi", type=float, default=150, help="resolution of the PNGs")
    add(
        "--outputs",
        nargs="+",
        choices=VIZ_OUTPUTS,
        default=[kind for kind in VIZ_OUTPUTS if kind not in VIZ_NETWORK],
        metavar="KIND",
        help=f"files to write, of {', '.join(VIZ_OUTPUTS)}. attention: groundattn's own "
        "attention page (attention.html, plain JavaScript and SVG, works offline, every model "
        "side by side); head_view, model_view: bertviz's views, which load require.js, d3 and "
        "jQuery from a CDN and need a network (default: all but those two)",
    )
    add("--grounding", action="store_true", help="grounding accuracy report over --split instead")
    add("--max-images", type=int, default=100, help="images of the report (0: all)")


def _visualize(args) -> None:
    from groundattn.viz.run import VisualizeError, grounding_report, parse_model_specs, visualize

    models = parse_model_specs(args.model)
    if args.grounding:
        pngs = [
            grounding_report(
                args.out,
                data_root=args.data,
                split=args.split,
                model_dir=path,
                name=name if args.model else None,
                max_images=args.max_images or None,
                regions=args.regions,
                dpi=args.dpi,
            )
            for name, path in models.items()
        ]
        written = [f for png in pngs for f in (png, png.with_suffix(".json"))]
    elif args.image is None:
        raise VisualizeError("--image is needed (or --grounding for the accuracy report)")
    else:
        written = visualize(
            args.out,
            data_root=args.data,
            split=args.split,
            image_id=args.image,
            models=models,
            captions=args.caption,
            caption_index=tuple(args.caption_index),
            phrase=args.phrase,
            layers=args.layers,
            heads=args.heads,
            direction=args.direction,
            regions=args.regions,
            image_dir=args.image_dir,
            dpi=args.dpi,
            outputs=args.outputs,
        )
    print("\n".join(map(str, written)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="groundattn", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="prepare the embedded data (once) and fine-tune with direct supervision"
    )
    demo.add_argument("--data", default=str(DEFAULT_DATA), help="where the grounded scenes live")
    demo.add_argument("--config", default="configs/vgp/demo.yaml")
    demo.add_argument("--out", default="runs/demo")
    _add_set(demo)
    demo.set_defaults(func=_demo)

    _add_prepare_commands(commands.add_parser("prepare", help="prepare data"))
    _add_train_commands(commands.add_parser("train", help="train a model"))
    evaluate = commands.add_parser("evaluate", help="score a run's model/ on a split of its task")
    evaluate.add_argument("--model", required=True, help="a run's model/ directory")
    evaluate.add_argument("--data", help="data root (default: the one it was trained on)")
    evaluate.add_argument("--split", default="val")
    evaluate.add_argument(
        "--out",
        help="where predictions go (VQA; default: a new evaluations/<split>-<k>/ beside model/)",
    )
    evaluate.add_argument("--batch-size", type=int, default=64)
    _add_set(evaluate, "override, e.g. data.boxes=ground_truth")
    evaluate.set_defaults(func=_evaluate)

    experiment = commands.add_parser(
        "experiment", help="the paper's Table 1: pretrain, each method, every task, seeds"
    )
    experiment.add_argument("--config", default="configs/experiment/quick.yaml")
    experiment.add_argument("--out", default="runs/experiment")
    _add_set(experiment, "override a field of the experiment config, e.g. seeds=[0]")
    experiment.set_defaults(func=_experiment)

    visualize = commands.add_parser(
        "visualize", help="bertviz views, attention drawn on the image, grounding accuracy maps"
    )
    _add_visualize_arguments(visualize)
    visualize.set_defaults(func=_visualize)
    return parser


def _add_set(parser: argparse.ArgumentParser, help: str = "override a config field") -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def _add_prepare_commands(parser: argparse.ArgumentParser) -> None:
    prepare = parser.add_subparsers(dest="what", required=True)
    scenes = prepare.add_parser("scenes", help="write the embedded grounded-scenes data set")
    scenes.add_argument("--out", required=True)
    scenes.add_argument("--size", default="default", choices=["small", "default"])
    scenes.add_argument("--seed", type=int, default=0)
    scenes.add_argument("--overwrite", action="store_true")
    scenes.set_defaults(func=_prepare_scenes)
    features = prepare.add_parser("features", help="feature store for a folder of images")
    features.add_argument("--images", required=True)
    features.add_argument("--out", required=True, help="the .h5 store to write")
    features.add_argument(
        "--boxes", help='JSON {"<image stem>": [[x1, y1, x2, y2], ...]}; default: a grid'
    )
    features.add_argument("--grid", type=int, nargs=2, default=[4, 4], metavar=("ROWS", "COLS"))
    features.add_argument(
        "--backbone",
        default="pixels",
        help="what describes a box: pixels (hand-made colour and shape statistics, 64 values; "
        "right for the embedded scenes) or efficientnet_lite0 (ImageNet CNN, RoIAlign, 1280 values)",
    )
    features.add_argument(
        "--device", default="cpu", help="where a CNN backbone runs: cpu, cuda, cuda:N or auto"
    )
    features.add_argument("--batch-size", type=int, default=16, help="images per backbone batch")
    features.add_argument(
        "--image-size",
        type=int,
        help="CNN input: longer side in pixels, padded square (default 448)",
    )
    features.set_defaults(func=_prepare_features)
    bottomup = prepare.add_parser("bottomup", help="bottom-up-attention TSV into a feature store")
    bottomup.add_argument("--tsv", required=True)
    bottomup.add_argument("--out", required=True, help="the .h5 store to write (never replaced)")
    bottomup.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted conversion from <out>.partial (a complete <out> of this "
        "TSV is kept as it is)",
    )
    bottomup.add_argument(
        "--workers", type=int, default=1, help="processes that decode the lines (same store)"
    )
    bottomup.add_argument(
        "--dtype",
        default="float16",
        choices=["float16", "float32"],
        help="how features are stored (float16: half the size)",
    )
    bottomup.set_defaults(func=_prepare_bottomup)


def _add_train_commands(parser: argparse.ArgumentParser) -> None:
    train = parser.add_subparsers(dest="task", required=True)
    for name, task in TASKS.items():
        sub = train.add_parser(name, help=task.help)
        sub.add_argument("--config", required=True)
        sub.add_argument("--out", required=True)
        _add_set(sub, "override, e.g. optim.lr=3e-5")
        sub.add_argument(
            "--resume", action="store_true", help="continue from the last complete checkpoint"
        )
        sub.set_defaults(func=_train)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from groundattn.errors import GroundattnError

    try:
        args.func(args)
    except GroundattnError as e:
        print(f"groundattn: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the system's own error about a path the user named
        if e.filename is None:
            raise
        print(f"groundattn: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
