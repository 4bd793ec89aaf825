"""The world of the grounded scenes: coloured shapes on a plain background.

An image is ``IMAGE_SIZE`` × ``IMAGE_SIZE`` pixels and holds 2 to 6 objects.
Each object has a shape, a colour, a size class and a position; objects may
overlap, by at most a quarter of the smaller box. A "single-shape"
scene has all its objects of one shape (the refer testA rule), a "mixed"
scene at least two shapes.

Geometry, used by captions, questions and referring expressions alike:

- boxes are continuous pixels ``x1 y1 x2 y2`` (the tight box of the drawn
  shape: column ``x1`` is the first painted column, ``x2`` one past the last);
- ``a`` is *left of* ``b`` when ``a.cx + RELATION_MARGIN < b.cx`` (right of,
  above and below likewise, y growing downwards);
- an object's *cell* is the third of the image its centre falls in, per axis
  (``top``/``middle``/``bottom`` × ``left``/``centre``/``right``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

IMAGE_SIZE = 128
MIN_OBJECTS, MAX_OBJECTS = 2, 6
RELATION_MARGIN = 10.0

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 175, 60),
    "blue": (50, 90, 230),
    "yellow": (235, 215, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
}
SIZES = {"small": (16, 22), "large": (30, 40)}  # side of the square the shape fills, pixels
BACKGROUNDS = {"dark": (25, 45), "grey": (95, 120)}  # grey level range
RELATIONS = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class SceneObject:
    """One shape of a scene; ``box`` is the tight box of the drawn shape."""

    shape: str
    colour: str
    size: str
    rgb: tuple[int, int, int]
    box: tuple[float, float, float, float]  # x1 y1 x2 y2, continuous pixels

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2

    def cell(self, width: int = IMAGE_SIZE, height: int = IMAGE_SIZE) -> tuple[str, str]:
        """The (row, column) third of the image holding the centre."""
        row = "top" if self.cy < height / 3 else "bottom" if self.cy > 2 * height / 3 else "middle"
        col = "left" if self.cx < width / 3 else "right" if self.cx > 2 * width / 3 else "centre"
        return row, col


@dataclass(frozen=True)
class Scene:
    """One image: background and objects, in drawing order (later on top)."""

    width: int
    height: int
    background: str
    background_grey: int
    objects: tuple[SceneObject, ...]

    @property
    def single_shape(self) -> bool:
        return len({o.shape for o in self.objects}) == 1


def relation_holds(a: SceneObject, b: SceneObject, relation: str) -> bool:
    """Whether ``a <relation> b`` holds, ``relation`` one of :data:`RELATIONS`."""
    if relation == "left of":
        return a.cx + RELATION_MARGIN < b.cx
    if relation == "right of":
        return b.cx + RELATION_MARGIN < a.cx
    if relation == "above":
        return a.cy + RELATION_MARGIN < b.cy
    if relation == "below":
        return b.cy + RELATION_MARGIN < a.cy
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")


def _overlap_ratio(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over the area of the smaller box."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller


def sample_scene(
    rng: np.random.Generator, single_shape: bool, size: int = IMAGE_SIZE, max_overlap: float = 0.25
) -> Scene:
    """Samples a scene; boxes are the nominal squares, refined by rendering.

    Shapes and colours are drawn from a small per-image palette so that scenes
    repeat attributes: that gives groups to count and distractors to refer past.

    Args:
        rng: the image's generator.
        single_shape: all objects share one shape (else at least two shapes).
        size: image side in pixels.
        max_overlap: largest intersection over the smaller box between two objects.
    """
    while True:  # a draw that could not place enough objects is drawn again
        scene = _try_scene(rng, single_shape, size, max_overlap)
        if len(scene.objects) >= MIN_OBJECTS and scene.single_shape == single_shape:
            return scene


def _try_scene(
    rng: np.random.Generator, single_shape: bool, size: int, max_overlap: float
) -> Scene:
    n = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    n_shapes = 1 if single_shape else int(rng.integers(2, 4))
    shapes = [SHAPES[i] for i in rng.choice(len(SHAPES), n_shapes, replace=False)]
    colour_names = list(COLOURS)
    palette = [colour_names[i] for i in rng.choice(len(COLOURS), int(rng.integers(2, 5)), False)]
    background = "dark" if rng.random() < 0.5 else "grey"
    grey = int(rng.integers(*BACKGROUNDS[background]))
    placed: list[SceneObject] = []
    for k in range(n):
        # The first objects of a mixed scene take each of its shapes once.
        shape = shapes[k] if k < n_shapes and not single_shape else shapes[rng.integers(n_shapes)]
        colour = palette[rng.integers(len(palette))]
        size_class = "large" if rng.random() < 0.45 else "small"
        for attempt in range(60):
            if attempt == 20:
                size_class = "small"  # a crowded image makes room with smaller shapes
            side = int(rng.integers(SIZES[size_class][0], SIZES[size_class][1] + 1))
            x, y = (int(v) for v in rng.integers(2, size - side - 2, size=2))
            box = (float(x), float(y), float(x + side), float(y + side))
            if all(_overlap_ratio(box, o.box) <= max_overlap for o in placed):
                break
        else:
            continue
        jitter = rng.integers(-12, 13, size=3)
        rgb = tuple(int(v) for v in np.clip(np.array(COLOURS[colour]) + jitter, 0, 255))
        placed.append(SceneObject(shape, colour, size_class, rgb, box))
    return Scene(size, size, background, grey, tuple(placed))


def with_boxes(scene: Scene, boxes: list[tuple[float, float, float, float]]) -> Scene:
    """The scene with each object's box replaced (by the tight box of its drawing)."""
    objects = tuple(replace(o, box=b) for o, b in zip(scene.objects, boxes, strict=True))
    return replace(scene, objects=objects)
