"""Everything about one image, made in one (worker) process.

Each image draws from its own random streams, spawned from ``(seed, index)``,
one per concern, so that the data set does not depend on the number of workers
and changing how questions are asked leaves the pictures alone.

Regions of the feature store, in order: the whole image (``WHOLE_IMAGE``), the
ground-truth objects in scene (= XML ``<object>``) order (``GROUND_TRUTH``),
then the detector's boxes in ``detections.json`` order, by falling score
(``DETECTED``). Row ``1 + k`` is object ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from groundattn.data.extractor import extract_regions
from groundattn.data.scenes.captions import Captions, make_captions
from groundattn.data.scenes.refer import Referent, make_referents, simulate_detections
from groundattn.data.scenes.render import render_scene, save_image
from groundattn.data.scenes.vgp import LabelledPair, image_pairs
from groundattn.data.scenes.vqa import SceneQuestion, human_answers, make_questions
from groundattn.data.scenes.world import Scene, sample_scene, with_boxes
from groundattn.data.store import Provenance, RegionFeatures

STREAMS = ("world", "render", "captions", "vgp", "vqa", "refer", "detector")


@dataclass(frozen=True)
class ImageJob:
    """What a worker needs to make one image."""

    seed: int
    index: int
    image_id: int
    split: str
    single_shape: bool
    questions: int
    image_dir: str


@dataclass
class ImageResult:
    """One image's scene and annotations, and its regions for the feature store."""

    job: ImageJob
    scene: Scene
    captions: Captions
    pairs: list[LabelledPair]
    questions: list[tuple[SceneQuestion, list[dict]]]
    referents: list[Referent]
    detections: list[dict]  # box as x1 y1 x2 y2
    regions: RegionFeatures


def region_boxes(scene: Scene, detections: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Store boxes ``(K, 4)`` and provenance ``(K,)``: whole image, objects, detections."""
    boxes = [(0.0, 0.0, float(scene.width), float(scene.height))]
    boxes += [o.box for o in scene.objects] + [tuple(d["box"]) for d in detections]
    provenance = [Provenance.WHOLE_IMAGE] + [Provenance.GROUND_TRUTH] * len(scene.objects)
    provenance += [Provenance.DETECTED] * len(detections)
    return np.array(boxes, dtype=np.float32), np.array(provenance, dtype=np.uint8)


def build_image(job: ImageJob) -> ImageResult:
    """Samples, renders (writing ``<image_dir>/<image_id>.jpg``) and annotates one image."""
    streams = np.random.SeedSequence([job.seed, job.index]).spawn(len(STREAMS))
    rng = {name: np.random.default_rng(s) for name, s in zip(STREAMS, streams, strict=True)}
    scene = sample_scene(rng["world"], job.single_shape)
    image, boxes = render_scene(scene, rng["render"])
    scene = with_boxes(scene, boxes)
    save_image(image, Path(job.image_dir) / f"{job.image_id}.jpg")
    captions = make_captions(scene, job.index, rng["captions"])
    pairs = image_pairs(job.image_id, captions.phrases, rng["vgp"])
    questions = make_questions(scene, job.image_id, rng["vqa"], job.questions)
    answered = [(q, human_answers(q, scene, rng["vqa"])) for q in questions]
    referents = make_referents(scene, rng["refer"])
    detections = simulate_detections(scene, rng["detector"])
    region_box, provenance = region_boxes(scene, detections)
    # Features come from the image as saved (JPEG), as a reader of the files would see it.
    with Image.open(Path(job.image_dir) / f"{job.image_id}.jpg") as saved:
        features = extract_regions(saved, region_box)
    regions = RegionFeatures(region_box, features, provenance, scene.width, scene.height)
    return ImageResult(job, scene, captions, pairs, answered, referents, detections, regions)
