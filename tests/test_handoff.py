"""handoff: build/dataset.json and build/runs.json, the build's only hand-off to its pages."""

import json
from pathlib import Path

import pytest

from catdog_report import data, environment, handoff
from catdog_report.errors import CacheError, DataError
from catdog_report.plan import RunSpec


def _record(model: str, seed: int, key: str, parent: str | None = None) -> dict[str, object]:
    return {"model": model, "key": key, "trained_at": "2026-12-04T00:00:00+00:00",
            "train_seconds": 1.5, "epochs": 2, "seed": seed, "parent": parent,
            "environment": {"gpus": [], "intra_op_threads": 2}}


def test_runs_json_holds_each_ready_run_by_model_and_seed(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    book = handoff.RunBook(tmp_path, base_seed=0)
    assert handoff.read_runs(tmp_path) == {}  # written empty before any run is ready
    for seed, key in ((1, "b" * 64), (0, "a" * 64)):
        book.add(handoff.run_entry(_record("small", seed, key), seed == 0, "Small"))
    child = RunSpec("tuned", 1, 3, parent="small")
    assert book.parent_key(child) == "b" * 64  # the parent's run at the child's seed
    assert book.parent_key(RunSpec("small", 0, 2)) is None
    book.add(handoff.run_entry(_record("tuned", 1, "c" * 64, "b" * 64), True, "Tuned"))
    runs = handoff.read_runs(tmp_path)
    assert list(runs) == ["small"]  # only the base seed's runs; tuned has no seed 0
    assert runs["small"] | {"trained_at": ""} == {
        "key": "a" * 64, "trained": True, "trained_at": "", "train_seconds": 1.5, "epochs": 2,
        "seed": 0, "precision": "float32", "parent": None, "gpus": [], "threads": 2,
        "model": "small", "title": "Small", "source": "trained", "weights": True, "note": None}
    seeds = handoff.read_runs(tmp_path, "seeds")
    assert [e["seed"] for e in seeds["small"]] == [0, 1]  # seed order, not ready order
    assert seeds["tuned"][0]["parent"] == "b" * 64
    monkeypatch.setenv(environment.ENV_BUILD, str(tmp_path))  # as inside a page kernel
    assert handoff.build_runs("seeds") == seeds
    monkeypatch.delenv(environment.ENV_BUILD)
    assert handoff.build_runs() is None  # a page run by hand


def test_an_unreadable_hand_off_names_the_file_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / handoff.RUNS_FILE).write_text("{not json")
    with pytest.raises(CacheError, match=r"runs.json is unreadable .*run the build again"):
        handoff.read_runs(tmp_path)
    with pytest.raises(DataError, match=r"dataset.json is unreadable .*run the build again"):
        handoff.read_dataset(tmp_path)


def test_the_dataset_round_trips(tmp_path: Path) -> None:
    split = data.Split("train", ("cats/a.jpg", "dogs/b.jpg"), (0, 1))
    empty = data.Split("validation", (), ())
    ds = data.Dataset(tmp_path, ("cats", "dogs"), split, empty, data.Split("test", (), ()),
                      "m" * 64, "a local copy", (("train/cats/x.txt", "not an image"),))
    handoff.write_dataset(tmp_path / "build", ds)
    again = handoff.read_dataset(tmp_path / "build")
    assert again == ds
    assert json.loads((tmp_path / "build" / handoff.DATASET_FILE).read_text())["source"] == (
        "a local copy")


def test_a_run_entry_says_where_the_run_came_from() -> None:
    record = _record("small", 0, "a" * 64)
    assert handoff.run_entry(record, False, "Small")["source"] == "cache"  # the default
    frozen = handoff.run_entry(record, False, "Small", "freeze", weights=False,
                               note=None)
    assert (frozen["source"], frozen["weights"], frozen["trained"]) == ("freeze", False, False)
    assert handoff.page_token("a" * 64) == "a" * 64  # a page key changes only without weights
    assert handoff.page_token("a" * 64, weights=False) == "a" * 64 + handoff.NO_WEIGHTS
