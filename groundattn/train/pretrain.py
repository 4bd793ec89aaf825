"""The VL pretraining run (METHOD §1): MLM with visual context + masked region classification.

The run's ``model/`` is the paper's "Original" model (no VGP fine-tuning);
VGP, VQA and RefCOCO runs start from it with ``model.init: <run>/model``.

MRC needs region classes (see :mod:`groundattn.tasks.pretrain.dataset` for
the rule). It is switched off, with a logged warning, when
``masking.region_probability`` is 0, ``data.region_classes`` is null, the
instances file does not exist, or none of the training regions matches one of
its boxes (a data set whose image ids are not the instances file's). The
summary's ``mrc`` says whether it ran.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from groundattn.config import ConfigError, PretrainConfig
from groundattn.tasks.pretrain import (
    CaptionDataset,
    PretrainTask,
    RegionClasses,
    collate_pretrain,
    summarize,
)
from groundattn.train.run import Recipe, split_paths

log = logging.getLogger(__name__)

CLASSES_FILE = "region_classes.json"


class PretrainRecipe(Recipe):
    """Masked language modelling and masked region classification on captions.

    The summary holds ``task``, ``mrc`` (whether MRC ran), ``region_classes``,
    ``steps``, ``seconds``, ``before``/``after`` (``mlm_accuracy``, and
    ``mrc_accuracy`` when MRC ran) and ``history``.
    """

    name = "pretrain"
    config_class = PretrainConfig
    collate = staticmethod(collate_pretrain)
    summarize = staticmethod(summarize)

    def __init__(self, config: PretrainConfig):
        super().__init__(config)
        self.region_classes: RegionClasses | None = None

    def required_paths(self) -> list[tuple[str, Path]]:
        return split_paths(self.config.data)

    def _load_classes(self) -> RegionClasses | None:
        data, masking = self.config.data, self.config.masking
        if masking.region_probability == 0:
            log.info("masked region classification off: masking.region_probability is 0")
            return None
        if data.region_classes is None:
            log.warning("masked region classification switched off: data.region_classes is null")
            return None
        path = data.root / data.region_classes
        if not path.is_file():
            log.warning(
                "masked region classification switched off: %s does not exist, so regions have no class",
                path,
            )
            return None
        return RegionClasses.load(
            path, data.root / data.detection_classes if data.detection_classes else None
        )

    def eval_dataset(self, tokenizer, split: str, max_images: int | None = None) -> CaptionDataset:
        data, masking = self.config.data, self.config.masking
        return CaptionDataset(
            data.root,
            split,
            tokenizer,
            max_caption_tokens=data.max_caption_tokens,
            regions=data.regions,
            max_regions=data.max_regions,
            region_classes=self.region_classes,
            token_probability=masking.token_probability,
            region_probability=masking.region_probability,
            max_images=max_images,
            seed=self.config.run.seed,
        )

    def datasets(self, tokenizer) -> dict[str, CaptionDataset]:
        data = self.config.data
        self.region_classes = self._load_classes()
        train = self.eval_dataset(tokenizer, data.train_split)
        if self.region_classes is not None and not train.labelled_regions:
            log.warning(
                "masked region classification switched off: no %s region of split %s matches a box of %s",
                data.regions,
                data.train_split,
                data.root / data.region_classes,
            )
            self.region_classes = None
            train = self.eval_dataset(tokenizer, data.train_split)
        return {
            "train": train,
            "val": self.eval_dataset(tokenizer, data.val_split, data.max_val_images),
        }

    def train_store(self) -> Path:
        data = self.config.data
        return data.root / "features" / f"{data.train_split}.h5"

    def build_task(self, encoder) -> PretrainTask:
        classes = len(self.region_classes) if self.region_classes is not None else 0
        return PretrainTask(encoder, classes, self.config.masking.mrc_weight)

    def summary_head(self) -> dict:
        classes = self.region_classes
        return {
            "task": self.name,
            "mrc": classes is not None,
            "region_classes": classes.names if classes else [],
        }

    def export(self, model_dir: Path) -> None:
        classes = self.region_classes
        saved = {"category_ids": classes.category_ids, "names": classes.names} if classes else None
        (model_dir / CLASSES_FILE).write_text(json.dumps(saved, indent=2))

    def load_export(self, model_dir: Path) -> None:
        saved = json.loads((model_dir / CLASSES_FILE).read_text())
        if saved is None:
            self.region_classes = None
            return
        self.region_classes = self._load_classes()
        found = self.region_classes.category_ids if self.region_classes else None
        if found != saved["category_ids"]:
            raise ConfigError(
                f"{model_dir}: trained on region classes {saved['category_ids']}, the data gives {found}"
            )
