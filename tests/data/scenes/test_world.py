"""The world: sampling rules, geometry and rendering."""

import numpy as np
import pytest

from groundattn.data.scenes.render import render_scene
from groundattn.data.scenes.world import (
    COLOURS,
    MAX_OBJECTS,
    MIN_OBJECTS,
    SceneObject,
    relation_holds,
    sample_scene,
    with_boxes,
)


def _obj(cx: float, cy: float, side: float = 10.0) -> SceneObject:
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    return SceneObject("circle", "red", "small", (220, 40, 40), box)


@pytest.mark.parametrize("single_shape", [True, False])
def test_scenes_follow_the_rules(single_shape: bool) -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        scene = sample_scene(rng, single_shape)
        assert MIN_OBJECTS <= len(scene.objects) <= MAX_OBJECTS
        assert scene.single_shape == single_shape
        for o in scene.objects:
            x1, y1, x2, y2 = o.box
            assert 0 <= x1 < x2 <= scene.width and 0 <= y1 < y2 <= scene.height


def test_relations_need_a_margin() -> None:
    a, b, near = _obj(20, 60), _obj(60, 20), _obj(25, 62)
    assert relation_holds(a, b, "left of") and relation_holds(b, a, "right of")
    assert relation_holds(b, a, "above") and relation_holds(a, b, "below")
    assert not any(relation_holds(a, near, r) for r in ("left of", "right of", "above", "below"))
    with pytest.raises(ValueError, match="relation must be one of"):
        relation_holds(a, b, "inside")


def test_render_gives_tight_boxes_painted_in_the_object_colour() -> None:
    rng = np.random.default_rng(0)
    scene = sample_scene(rng, single_shape=False)
    image, boxes = render_scene(scene, np.random.default_rng(1))
    scene = with_boxes(scene, boxes)
    pixels = np.asarray(image, dtype=float)
    for k, o in enumerate(scene.objects):
        x1, y1, x2, y2 = (int(v) for v in o.box)
        assert x2 - x1 >= 10 and y2 - y1 >= 10
        covered = any(
            p.box[0] <= o.cx <= p.box[2] and p.box[1] <= o.cy <= p.box[3]
            for p in scene.objects[k + 1 :]
        )
        if not covered:  # the centre of every shape is painted
            centre = pixels[int(o.cy) - 1 : int(o.cy) + 2, int(o.cx) - 1 : int(o.cx) + 2]
            colour = centre.reshape(-1, 3).mean(axis=0)
            assert np.abs(colour - np.array(o.rgb)).max() < 15
            nearest = min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - colour).sum())
            assert nearest == o.colour


def test_rendering_is_deterministic() -> None:
    scene = sample_scene(np.random.default_rng(5), single_shape=True)
    first, _ = render_scene(scene, np.random.default_rng(2))
    second, _ = render_scene(scene, np.random.default_rng(2))
    assert np.array_equal(np.asarray(first), np.asarray(second))
