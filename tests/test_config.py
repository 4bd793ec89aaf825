"""Configs are strict: a wrong type or a non-finite number is an error naming the field."""

import pytest

from groundattn.config import ConfigError, VGPConfig, load_config, read_yaml

BASE = {"data": {"root": "data/scenes"}}


def test_yaml_reads_exponents_as_numbers():
    assert read_yaml("a: 3e-5\nb: 1.0e-4\nc: -2E3\nd: 1_000\ne: x3e5") == {
        "a": 3e-5,
        "b": 1e-4,
        "c": -2000.0,
        "d": 1000,
        "e": "x3e5",
    }
    assert load_config(VGPConfig, None, ["optim.lr=3e-5"], base=BASE).optim.lr == 3e-5


@pytest.mark.parametrize(
    ("override", "field", "found"),
    [
        ("optim.batch_size=true", "optim.batch_size", "True"),
        ("optim.batch_size=2.5", "optim.batch_size", "2.5"),
        ("optim.lr=.inf", "optim.lr", "inf"),
        ("optim.lr=.nan", "optim.lr", "nan"),
        ('optim.lr="0.001"', "optim.lr", "'0.001'"),
        ("supervision.per_head=1", "supervision.per_head", "1"),
        ("run.seed=0x", "run.seed", "'0x'"),
        ("optim.max_steps=0", "optim.max_steps", "0"),
    ],
)
def test_a_wrong_type_or_non_finite_number_is_refused(override, field, found):
    with pytest.raises(ConfigError) as error:
        load_config(VGPConfig, None, [override], base=BASE)
    assert f"{field}:" in str(error.value) and f"(found {found})" in str(error.value)


def test_paths_and_integers_for_floats_are_accepted():
    config = load_config(VGPConfig, None, ["optim.lr=1", "data.root=elsewhere"], base=BASE)
    assert config.optim.lr == 1.0 and str(config.data.root) == "elsewhere"
