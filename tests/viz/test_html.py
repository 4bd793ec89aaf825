import pytest
import torch
from viz_helpers import embedded_params

from groundattn.viz import (
    head_view_html,
    layout_positions,
    model_view_html,
    token_labels,
    write_head_view,
    write_model_view,
)

T, R = 4, 3  # [CLS] a dog [SEP] r0 r1 r2 [END]


def params_line(page: str) -> str:
    return next(line for line in page.splitlines() if "const params = " in line)


@pytest.fixture
def labels() -> list[str]:
    return token_labels(["[CLS]", "a", "dog", "[SEP]"], [None, "dog", None])


@pytest.fixture
def attention(labels) -> torch.Tensor:
    N = len(labels)
    return torch.randn(3, 4, N, N).softmax(-1)  # (L, H, N, N)


def test_head_view_file_holds_labels_and_every_layer_and_head(tmp_path, attention, labels):
    path = write_head_view(tmp_path / "views" / "head.html", attention, labels)
    page = path.read_text(encoding="utf-8")
    params = embedded_params(page)
    for label in labels:
        assert f'"{label}"' in page
    (view,) = params["attention"]
    assert view["left_text"] == view["right_text"] == labels
    assert params["include_layers"] == [0, 1, 2]
    shown = torch.tensor(view["attn"])  # (L, H, N, N)
    assert shown.shape == attention.shape
    assert torch.allclose(shown, attention, atol=5e-4)  # rounded to 3 decimals
    assert page.count('"left_text"') == 1  # bertviz's second copy in a comment is gone


def test_layer_and_head_filters_reduce_the_page(attention, labels):
    full = head_view_html(attention, labels)
    page = head_view_html(attention, labels, layers=[2, 1], heads=[3, 0])
    params = embedded_params(page)
    assert params["include_layers"] == [1, 2]
    shown = torch.tensor(params["attention"][0]["attn"])  # (2, 2, N, N)
    assert torch.allclose(shown, attention[1:3][:, [0, 3]], atol=5e-4)
    assert len(params_line(page)) < 0.5 * len(params_line(full))
    assert "heads 0, 3 of 4" in page


def test_model_view_filters(tmp_path, attention, labels):
    page = write_model_view(tmp_path / "model.html", attention, labels, layers=[0], heads=[1, 2])
    params = embedded_params(page.read_text())
    assert params["include_layers"] == [0]
    assert params["include_heads"] == [1, 2]
    assert params["total_heads"] == 4
    shown = torch.tensor(params["attention"][0]["attn"])
    assert torch.allclose(shown, attention[:1, 1:3], atol=5e-4)


@pytest.mark.parametrize("view", [head_view_html, model_view_html])
def test_direction_keeps_only_its_block(view, attention, labels):
    text, regions = layout_positions(T, R)
    page = view(
        attention, labels, direction="text_to_region", text_positions=text, region_positions=regions
    )
    (block,) = embedded_params(page)["attention"]
    assert block["left_text"] == labels[:T]
    assert block["right_text"] == labels[T : T + R]
    shown = torch.tensor(block["attn"])  # (L, H, T, R): nothing outside the block
    assert shown.shape == (3, 4, T, R)
    assert torch.allclose(shown, attention[:, :, :T, T : T + R], atol=5e-4)

    page = view(
        attention, labels, direction="region_to_text", text_positions=text, region_positions=regions,
        renormalize=True,
    )  # fmt: skip
    (block,) = embedded_params(page)["attention"]
    assert block["left_text"] == labels[T : T + R] and block["right_text"] == labels[:T]
    shown = torch.tensor(block["attn"])  # (L, H, R, T)
    expected = attention[:, :, T : T + R, :T]
    assert torch.allclose(shown, expected / expected.sum(-1, keepdim=True), atol=5e-4)


def test_blocks_offer_text_and_region_halves(attention, labels):
    text, _ = layout_positions(T, R)
    params = embedded_params(head_view_html(attention, labels, blocks=True, text_positions=text))
    assert len(params["attention"]) == 5
    a_to_b = params["attention"][3]
    assert a_to_b["left_text"] == labels[:T] and a_to_b["right_text"] == labels[T:]


def test_bad_arguments_are_named(attention, labels):
    with pytest.raises(ValueError, match="labels"):
        head_view_html(attention, labels[:-1])
    with pytest.raises(ValueError, match="text_positions"):
        head_view_html(attention, labels, direction="text_to_region")
    with pytest.raises(ValueError, match="direction"):
        head_view_html(attention, labels, direction="sideways")
    with pytest.raises(ValueError, match="layers"):
        model_view_html(attention, labels, layers=[3])
    with pytest.raises(ValueError, match="blocks"):
        head_view_html(attention, labels, blocks=True)
    text, regions = layout_positions(T, R)
    with pytest.raises(ValueError, match="blocks"):
        model_view_html(
            attention, labels, blocks=True, direction="text_to_region",
            text_positions=text, region_positions=regions,
        )  # fmt: skip


def test_labels_cannot_close_the_script(attention, labels):
    labels = [*labels[:-1], "</script><b>x"]
    page = head_view_html(attention, labels)
    assert "</script><b>" not in page
    assert page.count("</script>") == page.count("<script")


def test_large_views_default_to_a_subset(attention, labels):
    lines = len(labels) ** 2
    params = embedded_params(model_view_html(attention, labels, max_lines=5 * lines))
    assert params["include_layers"] == [2]  # the last layer's 4 heads fit, not 2 layers
    assert params["include_heads"] == [0, 1, 2, 3]
    params = embedded_params(head_view_html(attention, labels, max_lines=2 * lines))
    assert len(params["attention"][0]["attn"][0]) == 2  # 2 heads of each layer


def test_long_input_is_bounded(tmp_path):
    """100 regions, 150 tokens, 6 layers × 12 heads (sizes in groundattn/viz/html.py).

    No wall time is asserted (the machine is shared and noisy): the page's size is the bound.
    """
    T, R = 49, 100
    labels = token_labels([f"w{i}" for i in range(T)], [None] * R)
    N = len(labels)
    attention = torch.randn(6, 12, N, N).mul(2).softmax(-1)
    path = write_head_view(tmp_path / "long.html", attention, labels)
    assert path.stat().st_size < 12e6  # measured 8.5 MB
    text, regions = layout_positions(T, R)
    page = head_view_html(
        attention, labels, direction="text_to_region", text_positions=text, region_positions=regions
    )
    assert len(page) < 2.5e6  # measured 1.9 MB
    page = model_view_html(attention, labels)
    assert embedded_params(page)["include_layers"] == [5]
    assert len(page) < 2e6  # measured 1.4 MB
