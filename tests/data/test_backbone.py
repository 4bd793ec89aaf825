"""Region backbones: batch independence, a linear probe on EfficientNet features, CLI errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from groundattn.cli import main
from groundattn.config import ConfigError
from groundattn.data.backbone import build_backbone, resolve_device
from groundattn.data.extractor import FEATURE_DIM
from groundattn.data.scenes.render import render_scene
from groundattn.data.scenes.world import COLOURS, Scene, SceneObject

IMAGE_SIZE = 96  # rendered scenes, pixels
PROBE_COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")


@pytest.fixture(scope="module")
def efficientnet():
    return build_backbone("efficientnet_lite0", "cpu", image_size=128)


def _single_shape(rng: np.random.Generator, colour: str, shape: str) -> tuple[Image.Image, tuple]:
    """One shape of ``colour`` on a grey background, somewhere in a small image; its tight box."""
    side = int(rng.integers(28, 44))
    x0, y0 = (int(v) for v in rng.integers(0, IMAGE_SIZE - side, size=2))
    obj = SceneObject(shape, colour, "large", COLOURS[colour], (x0, y0, x0 + side, y0 + side))
    grey = int(rng.integers(95, 120))
    image, boxes = render_scene(Scene(IMAGE_SIZE, IMAGE_SIZE, "grey", grey, (obj,)), rng)
    return image, boxes[0]


def test_features_do_not_depend_on_the_batch(efficientnet):
    rng = np.random.default_rng(0)
    shapes = [_single_shape(rng, c, "circle") for c in PROBE_COLOURS]
    images = [image for image, _ in shapes]
    images[2] = images[2].resize((80, 60))  # another size pads differently
    boxes = [
        np.array([[0, 0, *image.size], box], np.float32)
        for image, (_, box) in zip(images, shapes, strict=True)
    ]
    boxes[2] = np.array([[0, 0, 80, 60], [10, 5, 50, 40], [60, 30, 80, 60]], np.float32)
    alone = efficientnet.extract(images[:1], boxes[:1])[0]
    batched = efficientnet.extract(images, boxes)
    assert [b.shape for b in batched] == [(2, 1280), (2, 1280), (3, 1280), (2, 1280)]
    assert all(b.dtype == np.float32 for b in batched)
    np.testing.assert_allclose(batched[0], alone, atol=1e-4, rtol=1e-4)
    third = efficientnet.extract(images[2:3], boxes[2:3])[0]
    np.testing.assert_allclose(batched[2], third, atol=1e-4, rtol=1e-4)
    assert efficientnet.extract([], []) == []


def test_a_linear_probe_reads_colour_from_efficientnet_features(efficientnet):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    labels, images, boxes = [], [], []
    for i in range(96):
        label = i % len(PROBE_COLOURS)
        image, box = _single_shape(rng, PROBE_COLOURS[label], SHAPES[(i // 4) % len(SHAPES)])
        labels.append(label)
        images.append(image)
        boxes.append(np.array([box], np.float32))
    features = np.concatenate(
        [
            np.concatenate(efficientnet.extract(images[i : i + 32], boxes[i : i + 32]))
            for i in range(0, len(images), 32)
        ]
    )  # (96, 1280)
    y = np.array(labels)
    train, test = np.arange(96) < 64, np.arange(96) >= 64
    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    x = (features - mean) / std
    targets = np.eye(len(PROBE_COLOURS))[y[train]]
    # ridge regression in its dual form: W = Xᵀ (X Xᵀ + λ I)⁻¹ Y
    gram = x[train] @ x[train].T
    weights = x[train].T @ np.linalg.solve(gram + 10.0 * np.eye(len(gram)), targets)
    accuracy = float((np.argmax(x[test] @ weights, 1) == y[test]).mean())
    chance = 1 / len(PROBE_COLOURS)
    assert accuracy >= 2 * chance, accuracy


def test_the_pixels_backbone_and_errors():
    pixels = build_backbone("pixels")
    assert pixels.name == "pixels" and pixels.feature_dim == FEATURE_DIM
    with pytest.raises(ConfigError, match="--backbone"):
        build_backbone("resnet")
    with pytest.raises(ConfigError, match="--image-size"):
        build_backbone("pixels", image_size=224)
    with pytest.raises(ConfigError, match="--image-size"):
        build_backbone("efficientnet_lite0", image_size=16)
    with pytest.raises(ConfigError, match="--device"):
        resolve_device("tpu?")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")


def test_an_unknown_backbone_on_the_command_line_is_one_error(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32)).save(images / "1.png")
    argv = ["prepare", "features", "--images", str(images), "--out", str(tmp_path / "f.h5")]
    capsys.readouterr()
    assert main([*argv, "--backbone", "resnet"]) == 2
    _, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("groundattn: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "resnet" in errors[0] and "efficientnet_lite0" in errors[0], errors[0]
    assert not (tmp_path / "f.h5").exists()
