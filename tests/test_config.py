import json
from pathlib import Path

import pytest

from catdog_report.config import Settings, from_environment
from catdog_report.errors import ConfigError


def test_the_study_declares_the_walkthrough_epochs() -> None:
    s = Settings()  # the project's own study.yml
    assert {m: s.epochs_for(m) for m in s.study.models} == {
        "model_one": 20, "model_two": 30, "model_three": 20, "model_four": 10}
    assert s.profile_spec.train_per_class is None
    quick = Settings(profile="quick")
    assert all(1 <= quick.epochs_for(m) <= 2 for m in quick.study.models)
    assert Settings(profile="demo").profile_spec.synthetic and not quick.profile_spec.synthetic


def test_unknown_profile_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean 'quick'"):
        Settings(profile="quik")


def test_unknown_setting_key_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'epoch'.*did you mean 'epochs'"):
        Settings.from_mapping({"epoch": 3})


@pytest.mark.parametrize("epochs", [0, -1, 2.5])
def test_epochs_must_be_positive_integers(epochs: object) -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        Settings(epochs={"model_one": epochs})


def test_unknown_model_name_in_epochs() -> None:
    with pytest.raises(ConfigError, match="did you mean 'model_two'"):
        Settings(epochs={"model_too": 3})


def test_seeds_per_model() -> None:
    s = Settings(seeds=3, model_seeds={"model_two": 1, "model_three": 1})
    assert s.seeds_for("model_one") == [0, 1, 2] and s.seeds_for("model_two") == [0]
    assert s.seed_list == [0, 1, 2]
    assert Settings(seed=5, model_seeds={"model_one": 2}).seeds_for("model_one") == [5, 6]
    assert Settings(model_seeds={"model_one": 2}).seeds_for("model_four") == [0]
    assert Settings(model_seeds={"model_one": 2}).seed_list == [0, 1]
    with pytest.raises(ConfigError, match="--seeds.*did you mean 'model_one'"):
        Settings(model_seeds={"model_on": 2})
    with pytest.raises(ConfigError, match="seeds for model_one must be a positive integer"):
        Settings(model_seeds={"model_one": 0})
    assert Settings.from_mapping(json.loads(s.to_json())) == s  # handed to page kernels


def test_a_child_cannot_have_more_seeds_than_its_parent(tmp_path: Path) -> None:
    from test_study import write_study

    study_file = write_study(tmp_path)
    with pytest.raises(ConfigError, match=r"tuned starts from small, so it cannot have more "
                                          r"seeds \(2\) than small \(1\).*--seeds small=N"):
        Settings(project_dir=tmp_path, study_file=study_file, model_seeds={"tuned": 2})
    ok = Settings(project_dir=tmp_path, study_file=study_file, seeds=2, model_seeds={"tuned": 1})
    assert ok.seeds_for("small") == [0, 1] and ok.seeds_for("tuned") == [0]


def test_a_project_without_study_yml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no study declaration at .*study.yml.*Add a model"):
        Settings(project_dir=tmp_path)


def test_image_size_too_small() -> None:
    with pytest.raises(ConfigError, match="too small"):
        Settings(image_size=16)


def test_settings_are_frozen_and_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(profile="quick", data_dir=Path("rel/data"), epochs={"model_one": 3})
    with pytest.raises(AttributeError):
        s.profile = "full"  # type: ignore[misc]
    assert s.data_dir is not None and s.data_dir.is_absolute()
    assert s.epochs_for("model_one") == 3 and s.epochs_for("model_two") == 2
    monkeypatch.setenv("CATDOG_SETTINGS", s.to_json())
    assert from_environment() == s


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CATDOG_PROFILE", "demo")
    monkeypatch.setenv("CATDOG_CACHE_DIR", str(tmp_path))
    s = from_environment()
    assert s.profile == "demo" and s.cache_root == tmp_path.resolve()


@pytest.mark.parametrize("jobs", [0, -1, "2"])
def test_jobs_must_be_a_positive_integer(jobs: object) -> None:
    with pytest.raises(ConfigError, match="jobs must be a positive integer"):
        Settings(jobs=jobs)  # type: ignore[arg-type]
