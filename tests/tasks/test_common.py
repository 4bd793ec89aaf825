import pytest
import torch

from groundattn.tasks.common import LossPart, TaskOutput, global_mean, loss_means


def _sum_with(*others):
    """A stand-in for the all-reduce: adds the other process's values, call by call."""
    values = iter(others)
    return lambda t: t + next(values)


def test_global_mean_weights_each_share_by_its_count():
    # Process A: mean 2.0 over 3 tokens; process B: mean 6.0 over 1 token; global mean 12 / 4 = 3.
    a = global_mean(
        torch.tensor(2.0), torch.tensor(3), _sum_with(1.0, 1.0)
    )  # world, then B's count
    b = global_mean(torch.tensor(6.0), torch.tensor(1), _sum_with(1.0, 3.0))
    assert (a + b).item() / 2 == pytest.approx(3.0)  # what averaging the gradients of A and B gives
    assert global_mean(torch.tensor(2.0), torch.tensor(3), None).item() == 2.0


def _output(mlm: float, mlm_count: int, mrc: float, mrc_count: int) -> TaskOutput:
    return TaskOutput(
        {
            "mlm": LossPart(torch.tensor(mlm), torch.tensor(mlm_count)),
            "mrc": LossPart(torch.tensor(mrc), torch.tensor(mrc_count), weight=0.5),
        }
    )


def test_the_loss_is_the_weighted_sum_of_global_means():
    # One process: the parts as they are; 2.0 + 0.5 · 4.0 = 4.0.
    total, logged = _output(2.0, 3, 4.0, 2).loss()
    assert total.item() == 4.0
    assert logged == {"loss": 4.0, "loss_mlm": 2.0, "loss_mrc": 4.0}
    # Two processes: this one holds 3 of 4 MLM tokens and 2 of 6 MRC regions (the other
    # process's counts come back from the all-reduce, after the world size).
    total, logged = _output(2.0, 3, 4.0, 2).loss(_sum_with(1.0, 1.0, 1.0, 4.0))
    assert logged["loss_mlm"].item() == pytest.approx(2.0 * 3 / 4 * 2)
    assert logged["loss_mrc"].item() == pytest.approx(4.0 * 2 / 6 * 2)
    assert total.item() == pytest.approx(3.0 + 0.5 * 8 / 3)


def test_one_part_logs_only_the_total():
    output = TaskOutput({"answers": LossPart(torch.tensor(1.5), torch.tensor(8))})
    assert output.loss()[1] == {"loss": 1.5}


def test_validation_means_are_exact_over_every_item():
    # Batch 1: MLM mean 2.0 over 3 tokens, MRC 4.0 over 2; batch 2: MLM 6.0 over 1, MRC 1.0 over 6.
    sums = {}
    for output in (_output(2.0, 3, 4.0, 2), _output(6.0, 1, 1.0, 6)):
        for key, value in output.sums().items():
            sums[key] = sums.get(key, 0) + value
    means = loss_means(sums, {"mlm": 1.0, "mrc": 0.5})
    assert means["val_loss_mlm"] == pytest.approx(12 / 4)  # not (2 + 6) / 2
    assert means["val_loss_mrc"] == pytest.approx(14 / 8)
    assert means["val_loss"] == pytest.approx(12 / 4 + 0.5 * 14 / 8)
    assert set(
        loss_means({"loss_a": torch.tensor(3.0), "loss_a_count": torch.tensor(2)}, {"a": 1.0})
    ) == {"val_loss"}
