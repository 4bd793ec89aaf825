import pytest
import torch
from helpers import mixed_batch
from transformers import BertConfig, BertModel

from groundattn.model import (
    AttentionNotCaptured,
    VLEncoder,
    box_geometry,
    default_bert_path,
    from_pretrained,
    pack,
    preset,
)


def _text_batch(lengths, vocab=1000):
    g = torch.Generator().manual_seed(1)
    tokens = [
        [101, *torch.randint(1000, 1000 + vocab, (n - 2,), generator=g).tolist(), 102]
        for n in lengths
    ]
    segments = [[0] * (n // 2) + [1] * (n - n // 2) for n in lengths]
    return pack(
        tokens, segments, [torch.zeros(0, 4)] * len(lengths), [torch.zeros(0, 4)] * len(lengths)
    )


def _assert_parity(model: VLEncoder, bert: BertModel, lengths):
    batch = _text_batch(lengths)
    model.eval(), bert.eval()
    with torch.no_grad():
        ours = model(batch, output_hidden_states=True)
        theirs = bert(
            input_ids=batch.input_ids,
            token_type_ids=batch.segment_ids,
            attention_mask=batch.valid_mask.long(),
            output_hidden_states=True,
        )
    valid = batch.valid_mask
    assert len(ours.hidden_states) == len(theirs.hidden_states)
    for a, b in zip(ours.hidden_states, theirs.hidden_states, strict=True):
        torch.testing.assert_close(a[valid], b[valid], atol=1e-5, rtol=1e-5)


def test_text_alone_equals_hf_bert_tiny(tmp_path):
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    bert = BertModel(config)
    bert.save_pretrained(tmp_path)  # safetensors
    model, report = from_pretrained(tmp_path, visual_feature_dim=8)
    assert not report.missing and not report.mismatched
    _assert_parity(model, bert, (7, 12, 4))


def test_text_alone_equals_hf_bert_from_bin(tmp_path):
    config = BertConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    bert = BertModel(config)
    bert.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(
        {f"bert.{k}": v for k, v in bert.state_dict().items()}, tmp_path / "pytorch_model.bin"
    )
    model, _ = from_pretrained(tmp_path, visual_feature_dim=8)
    _assert_parity(model, bert, (5, 9))


def test_text_alone_equals_hf_bert_minilm():
    path = default_bert_path()
    bert = BertModel.from_pretrained(str(path), attn_implementation="eager")
    model, report = from_pretrained(path)
    assert not report.missing and not report.mismatched
    assert set(report.unexpected) <= {
        "pooler.dense.weight",
        "pooler.dense.bias",
        "embeddings.position_ids",
    }
    # The third segment starts as a copy of the first.
    seg = model.embeddings.token_type_embeddings.weight
    torch.testing.assert_close(seg[2], seg[0])
    # Regions join at the words' scale, not at a LayerNorm's unit scale; the image added to
    # every word at a tenth of it (TEXT_IMAGE_SHARE).
    visual = model.embeddings.visual
    word_std = float(model.embeddings.word_embeddings.weight.detach().std())
    assert float(visual.text_scale.detach()) == pytest.approx(0.1 * word_std)
    assert float(visual.region_scale.detach()) == pytest.approx(word_std)
    _assert_parity(model, bert, (11, 6, 20))


def test_image_leaves_the_pretrained_words_recognisable():
    """The whole image added to every word must not drown the words of a pretrained BERT.

    At the words' own scale (the landed code before TEXT_IMAGE_SHARE) a word's embedding with
    an image had a cosine of 0.53-0.87 to the same word without it: every word moved as far as
    to another word, and fine-tuning started from text the language model had never seen.
    """
    model, _ = from_pretrained(visual_feature_dim=8)
    model.eval()
    g = torch.Generator().manual_seed(0)
    tokens = [[101, 1037, 2417, 4418, 102], [101, 2048, 2630, 102]]  # mixed lengths
    segments = [[0] * len(t) for t in tokens]
    features = [torch.randn(3, 8, generator=g), torch.randn(2, 8, generator=g)]
    boxes = [
        torch.tensor([[0, 0, 1, 1], [0.1, 0.1, 0.4, 0.5], [0.5, 0.2, 0.9, 0.8]]),
        torch.tensor([[0, 0, 1, 1], [0.2, 0.3, 0.6, 0.7]]),
    ]
    with_image = pack(tokens, segments, features, boxes)
    without = pack(tokens, segments, [f[:0] for f in features], [b[:0] for b in boxes])
    with torch.no_grad():
        a = model.embeddings(with_image)[with_image.text_mask]  # (ΣT, D)
        b = model.embeddings(without)[without.text_mask]  # (ΣT, D)
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    assert cosine.min() > 0.97, cosine
    assert cosine.max() < 1.0  # the image does reach the words


def test_row_logits_match_full_attention():
    config = preset("tiny")
    model = VLEncoder(config).eval()
    batch = mixed_batch(config)
    rows = torch.tensor([[0, 5, 6], [3, 9, 10], [1, 3, 4]])  # (B, Q)
    out = model(batch, attention_rows=rows, output_attentions=True)
    logits = out.attention.row_logits  # (B, L, H, Q, N)
    probs = out.attention.probs  # (B, L, H, N, N)
    B, L, H, Q, N = logits.shape
    assert probs.shape == (B, L, H, N, N)
    key = batch.valid_mask[:, None, None, None, :]
    from_logits = logits.masked_fill(~key, float("-inf")).softmax(-1)
    gathered = probs.gather(3, rows[:, None, None, :, None].expand(B, L, H, Q, N))
    torch.testing.assert_close(from_logits, gathered, atol=1e-6, rtol=1e-5)
    # Padding columns get no attention.
    assert (probs * ~key).abs().max() == 0


def test_fused_path_equals_materialised_path():
    config = preset("tiny")
    model = VLEncoder(config).eval()
    batch = mixed_batch(config)
    fused = model(batch).last_hidden_state
    full = model(batch, output_attentions=True).last_hidden_state
    valid = batch.valid_mask
    torch.testing.assert_close(fused[valid], full[valid], atol=1e-5, rtol=1e-5)


def test_regions_sit_where_the_layout_puts_them():
    # A sample's states do not depend on the other samples of the batch (padding never leaks).
    config = preset("tiny")
    model = VLEncoder(config).eval()
    batch = mixed_batch(config)
    alone = mixed_batch(config, keep=[2])
    together = model(batch).last_hidden_state[2]
    single = model(alone).last_hidden_state[0]
    n = int(alone.valid_mask.sum())
    torch.testing.assert_close(together[:n], single[:n], atol=1e-5, rtol=1e-5)


def test_text_sees_whole_image_not_its_box():
    config = preset("tiny")
    model = VLEncoder(config).eval()
    batch = mixed_batch(config)
    emb = model.embeddings(batch)
    changed = mixed_batch(config)
    changed.region_features[:, 1:] += 1.0  # every region but r0
    emb2 = model.embeddings(changed)
    torch.testing.assert_close(emb[batch.text_mask], emb2[batch.text_mask])
    assert not torch.allclose(emb[batch.region_mask], emb2[batch.region_mask])
    changed.region_features[:, 0] += 1.0  # r0 now
    assert not torch.allclose(emb[batch.text_mask], model.embeddings(changed)[batch.text_mask])


def test_gradients_reach_every_parameter_through_row_logits():
    config = preset("tiny")
    model = VLEncoder(config)
    batch = mixed_batch(config)
    rows = torch.tensor([[1, 5], [2, 9], [0, 3]])
    out = model(batch, attention_rows=rows)
    (out.last_hidden_state.sum() + out.attention.row_logits.sum()).backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert silent == []


def test_not_requested_attention_raises():
    config = preset("tiny")
    out = VLEncoder(config)(mixed_batch(config))
    with pytest.raises(AttentionNotCaptured, match="attention_rows"):
        _ = out.attention.row_logits
    with pytest.raises(AttentionNotCaptured, match="output_attentions"):
        _ = out.attention.probs
    with pytest.raises(AttentionNotCaptured, match="output_hidden_states"):
        _ = out.hidden_states


def test_region_features_are_standardised_with_the_set_statistics():
    config = preset("tiny")
    model = VLEncoder(config).eval()
    visual = model.embeddings.visual
    F = config.visual_feature_dim
    mean, std = torch.linspace(-1, 1, F), torch.linspace(0.5, 2, F)
    features, boxes = torch.randn(2, 3, F), torch.rand(2, 3, 4)
    reference = visual(((features - mean) / std), boxes)  # identity statistics
    visual.set_feature_statistics(mean, std)
    torch.testing.assert_close(visual(features, boxes), reference)
    # Saved with the weights, so a reloaded model standardises the same way.
    state = model.state_dict()
    torch.testing.assert_close(state["embeddings.visual.feature_std"], std)
    # A constant dimension is only centred; bad statistics are refused.
    visual.set_feature_statistics(mean, torch.zeros(F))
    assert bool((visual.feature_std == 1).all())
    with pytest.raises(ValueError, match="shape"):
        visual.set_feature_statistics(mean[:2], std[:2])
    with pytest.raises(ValueError, match="finite"):
        visual.set_feature_statistics(mean * float("nan"), std)


def test_box_geometry_is_standardised_with_the_set_statistics():
    visual = VLEncoder(preset("tiny")).eval().embeddings.visual
    features, boxes = torch.randn(2, 3, visual.feature_mean.shape[0]), torch.rand(2, 3, 4)
    # x1 y1 x2 y2 w h of the first box, by hand.
    x1, y1, x2, y2 = boxes[0, 0].tolist()
    torch.testing.assert_close(
        box_geometry(boxes)[0, 0], torch.tensor([x1, y1, x2, y2, x2 - x1, y2 - y1])
    )
    mean, std = torch.full((6,), 0.4), torch.tensor([0.25, 0.25, 0.25, 0.25, 0.1, 0.0])
    expected_std = torch.tensor([0.25, 0.25, 0.25, 0.25, 0.1, 1.0])  # a constant one only centred
    projection = visual.geometry_projection
    reference = visual.LayerNorm(
        visual.feature_projection(features)
        + projection((box_geometry(boxes) - mean) / expected_std)
    )
    visual.set_geometry_statistics(mean, std)
    torch.testing.assert_close(visual(features, boxes), reference)
    torch.testing.assert_close(visual.state_dict()["geometry_std"], expected_std)
    with pytest.raises(ValueError, match="geometry statistics of shape"):
        visual.set_geometry_statistics(mean[:4], std[:4])


def test_random_weights_add_the_image_to_words_at_a_tenth_of_their_scale():
    # The rule of a pretrained BERT holds for random weights too (embeddings.TEXT_IMAGE_SHARE).
    config = preset("tiny")
    visual = VLEncoder(config).embeddings.visual
    assert float(visual.region_scale) == pytest.approx(config.initializer_range)
    assert float(visual.text_scale) == pytest.approx(0.1 * config.initializer_range)


def test_visual_scales_stay_positive_under_any_update():
    visual = VLEncoder(preset("tiny")).embeddings.visual
    visual.set_scales(0.02, 0.5)
    assert float(visual.text_scale) == pytest.approx(0.02)
    assert float(visual.region_scale) == pytest.approx(0.5)
    with torch.no_grad():  # a step far larger than the scale itself
        visual.log_text_scale -= 10.0
    assert float(visual.text_scale) > 0
    with pytest.raises(ValueError, match="positive"):
        visual.set_scales(0.0, 1.0)
