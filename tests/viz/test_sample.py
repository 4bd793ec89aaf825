import torch

from groundattn.model import VLEncoder, pack, preset
from groundattn.viz import head_view_html, select_sample, token_labels


def tiny_output():
    """Two samples of different lengths through the tiny encoder."""
    config = preset("tiny")
    g = torch.Generator().manual_seed(0)
    lengths, regions = (6, 4), (3, 5)
    batch = pack(
        [[101, *range(2000, 2000 + T - 2), 102] for T in lengths],
        [[0] * T for T in lengths],
        [torch.randn(R, config.visual_feature_dim, generator=g) for R in regions],
        [torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(R, 4) for R in regions],
    )
    model = VLEncoder(config).eval()
    with torch.no_grad():
        return model(batch, output_attentions=True), lengths, regions


def test_select_sample_drops_padding_and_finds_tokens():
    output, lengths, regions = tiny_output()
    probs = output.attention.probs  # (B, L, H, N, N)
    sample = select_sample(probs, output, 1)
    T, R = lengths[1], regions[1]
    n = T + R + 1
    assert sample.attention.shape == (*probs.shape[1:3], n, n)
    assert torch.allclose(sample.attention.sum(-1), torch.ones(()), atol=1e-5)
    assert sample.text_positions == list(range(T))
    assert sample.region_positions == list(range(T, T + R))
    rolled = sample.rollout()  # (L, n, n)
    assert rolled.shape == (probs.shape[1], n, n)
    assert torch.allclose(rolled.sum(-1), torch.ones(()), atol=1e-5)

    labels = token_labels(["[CLS]", "a", "[SEP]", "b"], [None] * R)
    page = head_view_html(
        sample.attention, labels, direction="text_to_region",
        text_positions=sample.text_positions, region_positions=sample.region_positions,
    )  # fmt: skip
    assert "[IMG:4]" in page
