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


@pytest.mark.parametrize(("given", "cluster", "workers"), [
    ({}, None, 1),
    ({"workers": 2}, "local:2", 2),  # --workers N is --cluster local:N: one code path
    ({"cluster": "local:3"}, "local:3", 3),
    ({"cluster": "local:2", "workers": 2}, "local:2", 2),
    ({"cluster": "tcp://10.0.0.5:8786"}, "tcp://10.0.0.5:8786", 1),
    ({"cluster": "tls://scheduler.example.org:8786/"}, "tls://scheduler.example.org:8786", 1),
])
def test_cluster_values(given: dict, cluster: str | None, workers: int) -> None:
    s = Settings(**given)
    assert (s.cluster, s.workers) == (cluster, workers)
    assert Settings.from_mapping(json.loads(s.to_json())).cluster == cluster  # to a kernel


def test_local_cluster_without_a_count_has_a_worker_per_core() -> None:
    import os

    assert Settings(cluster="local").workers == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["local:0", "local:x", "remote", "tcp://host",
                                   "http://host:8786", "8786", "local:-1"])
def test_a_bad_cluster_value_says_what_is_expected(value: str) -> None:
    with pytest.raises(ConfigError, match=r"--cluster .* is neither local, local:N .* nor a "
                                          r"Dask scheduler address such as tcp://host:8786"):
        Settings(cluster=value)


def test_workers_and_a_different_cluster_contradict() -> None:
    with pytest.raises(ConfigError, match="--workers 2 means --cluster local:2, which "
                                          "contradicts --cluster local:3; give one of them"):
        Settings(workers=2, cluster="local:3")
