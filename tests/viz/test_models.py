import pytest

from groundattn.viz.errors import VisualizeError
from groundattn.viz.models import parse_model_specs


def test_model_specs_and_the_command_line(scenes, model_dirs, tmp_path):
    run = model_dirs["direct"].parent
    assert parse_model_specs([f"d={model_dirs['direct']}", str(model_dirs["none"]), "init"]) == {
        "d": str(model_dirs["direct"]),
        model_dirs["none"].parent.name: str(model_dirs["none"]),
        "init": None,
    }
    assert parse_model_specs([]) == {"init": None}
    with pytest.raises(VisualizeError, match="repeated"):
        parse_model_specs(["a=x", "a=y"])
    from groundattn.cli import main

    assert (
        main(
            [
                "visualize",
                "--data",
                str(scenes),
                "--out",
                str(tmp_path),
                "--grounding",
                "--model",
                f"run={run}",
                "--max-images",
                "1",
            ]
        )
        == 0
    )
    assert (tmp_path / "grounding_run.png").is_file()  # a run directory holding model/
