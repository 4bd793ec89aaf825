import pytest


@pytest.fixture(scope="session")
def small_scenes(tmp_path_factory):
    """The small embedded data set, generated once per test session."""
    from groundattn.data.scenes import prepare_scenes

    return prepare_scenes(tmp_path_factory.mktemp("scenes") / "small", size="small", seed=0)
