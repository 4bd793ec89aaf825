"""Drawing a scene with Pillow, deterministically.

Each shape fills the nominal square box sampled by the world; the tight box of
the painted pixels (from a per-object mask) becomes the object's box. Objects
are painted in order, so later ones cover earlier ones. A little Gaussian pixel
noise (seeded) keeps the background from being perfectly flat.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from groundattn.data.scenes.world import Scene, SceneObject

NOISE_STD = 3.0
JPEG_QUALITY = 95


def _draw_shape(draw: ImageDraw.ImageDraw, obj: SceneObject, fill: int | tuple) -> None:
    """Paints ``obj``'s shape into its nominal box."""
    x0, y0, x1, y1 = obj.box
    s = x1 - x0
    cx, cy = x0 + s / 2, y0 + s / 2
    if obj.shape == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif obj.shape == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif obj.shape == "triangle":
        draw.polygon([(cx, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=fill)
    elif obj.shape == "diamond":
        draw.polygon([(cx, y0), (x1 - 1, cy), (cx, y1 - 1), (x0, cy)], fill=fill)
    elif obj.shape == "cross":
        t = s / 3
        draw.rectangle((x0 + t, y0, x1 - t - 1, y1 - 1), fill=fill)
        draw.rectangle((x0, y0 + t, x1 - 1, y1 - t - 1), fill=fill)
    elif obj.shape == "star":
        outer, inner = s / 2, s / 2 * 0.45
        points = []
        for k in range(10):
            radius = outer if k % 2 == 0 else inner
            angle = math.radians(-90 + 36 * k)
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        draw.polygon(points, fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def render_scene(
    scene: Scene, rng: np.random.Generator
) -> tuple[Image.Image, list[tuple[float, float, float, float]]]:
    """Renders ``scene``.

    Returns:
        The RGB image and, per object, the tight box ``x1 y1 x2 y2`` of its painted
        pixels (continuous pixels: ``x2`` is one past the last painted column).
    """
    image = Image.new("RGB", (scene.width, scene.height), (scene.background_grey,) * 3)
    draw = ImageDraw.Draw(image)
    boxes = []
    for obj in scene.objects:
        mask = Image.new("L", (scene.width, scene.height), 0)
        _draw_shape(ImageDraw.Draw(mask), obj, 255)
        left, top, right, bottom = mask.getbbox()
        boxes.append((float(left), float(top), float(right), float(bottom)))
        _draw_shape(draw, obj, obj.rgb)
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.normal(0.0, NOISE_STD, size=pixels.shape)  # (H, W, 3)
    image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    return image, boxes


def save_image(image: Image.Image, path: Path) -> None:
    """Writes ``image`` as a JPEG (fixed quality, no optimisation pass: deterministic)."""
    image.save(path, format="JPEG", quality=JPEG_QUALITY)
