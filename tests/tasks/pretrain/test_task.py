import torch
import torch.nn.functional as F

from groundattn.model import pack
from groundattn.tasks.pretrain import (
    PretrainBatch,
    PretrainTask,
    masked_cross_entropy,
    summarize,
)

IGNORE = -100


def _batch(config, mlm=((1, 1005), (3, 1007)), mrc=((0, 2, 1), (1, 3, 0))) -> PretrainBatch:
    """Two samples of different lengths; ``mlm`` (sample, position, id) labels, ``mrc`` (sample, slot, class)."""
    g = torch.Generator().manual_seed(0)
    tokens = [[101, 1000, 1001, 102], [101, 1002, 1003, 1004, 1005, 102]]
    regions = [3, 5]
    inputs = pack(
        tokens,
        [[0] * len(t) for t in tokens],
        [torch.randn(R, config.visual_feature_dim, generator=g) for R in regions],
        [torch.tensor([[0.0, 0.0, 1.0, 1.0]] + [[0.1, 0.2, 0.5, 0.6]] * (R - 1)) for R in regions],
    )
    B, N = inputs.input_ids.shape
    mlm_labels = torch.full((B, N), IGNORE)
    mrc_labels = torch.full((B, N), IGNORE)
    for b, (position, token) in enumerate(mlm):
        mlm_labels[b, position] = token
    for b, slot, label in mrc:
        mrc_labels[b, len(tokens[b]) + slot] = label
    return PretrainBatch(inputs, mlm_labels, mrc_labels)


def test_losses_and_counts_by_hand(tiny_encoder):
    task = PretrainTask(tiny_encoder, num_region_classes=4).eval()
    batch = _batch(tiny_encoder.config)
    output, parts = task.validate(batch)
    loss, logged = output.loss()
    hidden = tiny_encoder(batch.inputs).last_hidden_state
    W = tiny_encoder.embeddings.word_embeddings.weight
    token_logits = task.mlm.transform(hidden[[0, 1], [1, 3]]) @ W.T + task.mlm.bias  # (2, V)
    expected_mlm = -token_logits.log_softmax(-1)[[0, 1], [1005, 1007]].mean()
    region_logits = task.mrc.classifier(
        task.mrc.transform(hidden[[0, 1], [4 + 2, 6 + 3]])
    )  # (2, 4)
    expected_mrc = -region_logits.log_softmax(-1)[[0, 1], [1, 0]].mean()
    torch.testing.assert_close(logged["loss_mlm"], expected_mlm.detach())
    torch.testing.assert_close(logged["loss_mrc"], expected_mrc.detach())
    assert output.parts["mlm"].count == 2 and output.parts["mrc"].count == 2
    torch.testing.assert_close(loss, expected_mlm + expected_mrc)
    assert parts["mlm_correct"] == (token_logits.argmax(-1) == torch.tensor([1005, 1007])).sum()
    assert parts["mlm_total"] == 2 and parts["mrc_total"] == 2
    metrics = summarize(parts)
    assert metrics["mlm_tokens"] == 2 and metrics["mrc_regions"] == 2 and "mrc_accuracy" in metrics


def test_nothing_masked_gives_zero_and_no_nan(tiny_encoder):
    task = PretrainTask(tiny_encoder, num_region_classes=4)
    output, parts = task.validate(_batch(tiny_encoder.config, mlm=(), mrc=()))
    loss = output.loss()[0]
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()
    assert "mrc_accuracy" not in summarize(parts) and summarize(parts)["mlm_accuracy"] == 0.0
    assert (
        masked_cross_entropy(
            torch.zeros(0, 3, requires_grad=True), torch.zeros(0, dtype=torch.long)
        ).item()
        == 0.0
    )


def test_mlm_head_is_tied_to_the_word_embeddings(tiny_encoder):
    task = PretrainTask(tiny_encoder)
    assert task.mrc is None and not any(
        k.startswith("mlm") and "word" in k for k in task.state_dict()
    )
    loss, _ = task(_batch(tiny_encoder.config)).loss()
    loss.backward()
    W = tiny_encoder.embeddings.word_embeddings.weight
    # The decoder's gradient lands on every row of the vocabulary, not only on the input words.
    assert W.grad[5000].abs().sum() > 0


def test_gradients_reach_the_encoder(tiny_encoder):
    task = PretrainTask(tiny_encoder, num_region_classes=4)
    loss, _ = task(_batch(tiny_encoder.config)).loss()
    loss.backward()
    for name in (
        "encoder.layer.0.attention.self.query.weight",
        "embeddings.visual.feature_projection.weight",
    ):
        assert tiny_encoder.get_parameter(name).grad.abs().sum() > 0, name
    assert task.mrc.classifier.weight.grad.abs().sum() > 0


def test_cross_entropy_helper_matches_torch():
    logits, labels = torch.randn(5, 7), torch.tensor([0, 6, 2, 2, 1])
    torch.testing.assert_close(
        masked_cross_entropy(logits, labels), F.cross_entropy(logits, labels)
    )
