import json

import numpy as np
import pytest
from PIL import Image
from viz_helpers import embedded_params

from groundattn.viz.panels import panel_figure
from groundattn.viz.run import VisualizeError, visualize

IMAGE = "100001"  # first image of the small scenes' val split: six diamonds
DPI = 40
L, H = 2, 4  # the tiny preset


@pytest.fixture(scope="module")
def two_models(scenes, model_dirs, tmp_path_factory):
    """One visualize call with two models; the tests read what it wrote."""
    out = tmp_path_factory.mktemp("viz")
    files = visualize(
        out, data_root=scenes, split="val", image_id=IMAGE, models=model_dirs, dpi=DPI
    )
    return out, files, json.loads((out / "sample.json").read_text())


def test_writes_every_file_once_per_model(two_models):
    out, files, _ = two_models
    per_model = ["heads.png", "layers.png", "rollout.png"]
    expected = [out / m / f for m in ("direct", "none") for f in per_model]
    assert files == [out / "attention.html", *expected, out / "compare.png", out / "sample.json"]


def test_default_phrase_is_grounded_to_some_boxes_not_all(two_models):
    _, _, sample = two_models
    assert sample["captions"][0] == "There are six diamonds in the frame ."
    # "six diamonds" (c1) is grounded to all six boxes: c2's first phrase is chosen.
    assert sample["phrase"] == "All the orange figures" and sample["phrase_caption"] == 2
    assert 0 < len(sample["grounded_regions"]) < len(sample["region_names"]) - 1
    assert sample["region_names"][:3] == [None, "green diamond", "orange diamond"]  # world.jsonl
    tokens = sample["models"]["direct"]["tokens"]
    assert [tokens[p] for p in sample["models"]["direct"]["phrase_positions"]] == [
        "all",
        "the",
        "orange",
        "figures",
    ]


def test_bertviz_views_hold_caption_tokens_and_region_labels(scenes, model_dirs, tmp_path):
    out = tmp_path
    visualize(
        out, data_root=scenes, split="val", image_id=IMAGE, models=model_dirs,
        outputs={"head_view", "model_view"},
    )  # fmt: skip
    sample = json.loads((out / "sample.json").read_text())
    for view in ("head_view", "model_view"):
        page = (out / "direct" / f"{view}.html").read_text(encoding="utf-8")
        (params,) = embedded_params(page)["attention"]
        labels = params["left_text"]
        assert labels == sample["models"]["direct"]["labels"]
        assert {"[CLS]", "six", "diamonds", "frame"} <= set(labels)
        assert "[IMG:0 whole image]" in labels and "[IMG:1 green diamond]" in labels
        assert labels[-1] == "[END]"
        assert np.asarray(params["attn"]).shape[:2] == (L, H)


def test_pngs_have_the_grid_sizes_and_name_model_phrase_and_layers(two_models):
    out, _, sample = two_models
    named = f"model direct · phrase “{sample['phrase']}”"
    compare = f"phrase “{sample['phrase']}” · image {IMAGE}"
    regions = "attention over the regions"
    expected = {  # image panels: rows, columns, width in inches, title, row labels
        "direct/heads.png": (L, H, 1.6, f"{named}\n{regions}, per layer and head", None),
        "direct/layers.png": (1, L, 2.0, f"{named}\n{regions}, mean of heads 0–3, per layer", None),
        "direct/rollout.png": (
            1, L, 2.0, f"{named}\nattention rollout (mean of all heads) over the regions", None,
        ),
        "compare.png": (
            2, 2, 2.4, f"{compare}\n{regions}, one column per model",
            [f"layer {L - 1}, mean of heads 0–3", "rollout up to the last layer"],
        ),
    }  # fmt: skip
    for name, (rows, cols, size, title, row_labels) in expected.items():
        grid = panel_figure(
            rows, cols, 1.0, size, title=title, row_labels=row_labels, key=True
        )  # 128 × 128 images
        width, height = grid.figure.get_size_inches() * DPI
        with Image.open(out / name) as png:
            assert png.size == (int(width), int(height)), name


def test_outputs_choose_the_files(scenes, model_dirs, tmp_path):
    files = visualize(
        tmp_path, data_root=scenes, split="val", image_id=IMAGE, models=model_dirs,
        outputs={"compare", "layers"}, dpi=DPI,
    )  # fmt: skip
    names = ["direct/layers.png", "none/layers.png", "compare.png", "sample.json"]
    assert files == [tmp_path / name for name in names]


def test_plain_text_captions_filters_and_the_default_initialisation(scenes, tmp_path):
    captions = (
        "A tiny green diamond shape and an orange one .",
        "Six diamonds on a dark backdrop .",
    )
    files = visualize(
        tmp_path, data_root=scenes, split="val", image_id=int(IMAGE), models={"init": None},
        captions=captions, phrase="GREEN  diamond", layers=[5], heads=[0, 2],
        direction="text_to_region", dpi=DPI,
        outputs={"attention", "head_view", "model_view", "heads", "layers", "rollout", "compare"},
    )  # fmt: skip
    assert len(files) == 7  # one model: no compare figure
    sample = json.loads((tmp_path / "sample.json").read_text())
    assert sample["phrase"] == "green diamond" and sample["phrase_char_span"] == [7, 20]
    assert sample["grounded_regions"] == []  # plain text grounds nothing
    tokens = sample["models"]["init"]["tokens"]
    assert [tokens[p] for p in sample["models"]["init"]["phrase_positions"]] == ["green", "diamond"]
    params = embedded_params((tmp_path / "init" / "head_view.html").read_text(encoding="utf-8"))
    (view,) = params["attention"]
    assert params["include_layers"] == [5]
    assert "green" in view["left_text"] and all(t.startswith("[IMG:") for t in view["right_text"])
    assert np.asarray(view["attn"]).shape[:2] == (1, 2)
    with Image.open(tmp_path / "init" / "heads.png") as png:
        title = (
            "model init · phrase “green diamond”\nattention over the regions, per layer and head"
        )
        grid = panel_figure(1, 2, 1.0, 1.6, title=title, key=True)
        assert png.size == tuple(int(v) for v in grid.figure.get_size_inches() * DPI)


def test_markup_captions_ground_their_phrases(scenes, model_dirs, tmp_path):
    markup = "[/EN#5/shapes one green rhombus] on [/EN#30/other/scene the dark backdrop] ."
    visualize(
        tmp_path, data_root=scenes, split="val", image_id=IMAGE, models={"d": model_dirs["direct"]},
        captions=("There are six diamonds .", markup), phrase="one green rhombus",
        outputs={"layers"}, dpi=DPI,
    )  # fmt: skip
    sample = json.loads((tmp_path / "sample.json").read_text())
    assert sample["phrase_caption"] == 2 and sample["grounded_regions"] == [5]  # chain 5: object 4


def test_clear_errors(scenes, model_dirs, tmp_path):
    common = {"data_root": scenes, "split": "val", "models": model_dirs}
    with pytest.raises(
        VisualizeError, match=r"image 999 is not in split 'val' \(feature store .*val\.h5\)"
    ):
        visualize(tmp_path, image_id=999, **common)
    with pytest.raises(VisualizeError, match="phrase 'purple cow' is not in the captions"):
        visualize(tmp_path, image_id=IMAGE, phrase="purple cow", **common)
    with pytest.raises(VisualizeError, match="layers must lie in 0 … 1"):
        visualize(tmp_path, image_id=IMAGE, layers=[2], **common)
    with pytest.raises(FileNotFoundError, match="model 'bad': .* has no config.json"):
        visualize(tmp_path, data_root=scenes, split="val", image_id=IMAGE, models={"bad": tmp_path})
    with pytest.raises(VisualizeError, match="direction"):
        visualize(tmp_path, image_id=IMAGE, direction="up", **common)
    with pytest.raises(VisualizeError, match="outputs"):
        visualize(tmp_path, image_id=IMAGE, outputs={"movie"}, **common)
    assert not list(tmp_path.iterdir())  # nothing written before the error
