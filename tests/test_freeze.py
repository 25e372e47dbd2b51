"""The freeze (frozen/ beside study.yml): a fresh clone with an empty run cache builds from it
with no training and no TensorFlow; changed inputs are not served from it; damage is named."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from catdog_report import build, data, execute, freeze, handoff, training
from catdog_report.config import Settings
from catdog_report.errors import CacheError
from conftest import ROOT, make_images
from test_study import write_study

# A teammate's fresh clone: settings from JSON, an empty run cache; reports whether
# TensorFlow (or Keras) was imported while every run of the build was found.
CLONE = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from catdog_report import data, execute, training
from catdog_report.config import Settings
s = Settings.from_mapping(json.loads(sys.argv[1]))
ds = data.scan(s, s.data_dir)
specs = training.run_specs_for(s, None)
known = training.known_runs(specs, s, ds)
book = execute.train(s, ds, specs, None)
print(json.dumps({"entries": book.by_id, "known": known,
                  "tensorflow": "tensorflow" in sys.modules or "keras" in sys.modules}))
"""


def _settings(root: Path, cache: str, **changes: object) -> Settings:
    shapes = root / "shapes"
    if not shapes.exists():
        make_images(shapes, classes=("circles", "squares"))
    study = root / "project" / "study.yml"
    if not study.exists():
        write_study(study.parent)
    return Settings(profile="quick", project_dir=study.parent, study_file=study,
                    data_dir=shapes, cache_dir=root / cache, image_size=32, batch_size=8,
                    **changes)  # type: ignore[arg-type]


def _train(s: Settings) -> dict[str, handoff.RunEntry]:
    ds = data.scan(s, s.data_dir)
    return execute.train(s, ds, training.run_specs_for(s, None), None).by_id


def _freeze(s: Settings, entries: dict[str, handoff.RunEntry],
            with_weights: bool = False) -> list[tuple[Path, bool]]:
    ds = data.scan(s, s.data_dir)
    return build.freeze_runs(s, ds, training.run_specs_for(s, None), entries, with_weights)


def _clone(s: Settings) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", CLONE, s.to_json()], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.slow
def test_a_fresh_clone_builds_from_the_freeze_with_no_training(tmp_path: Path) -> None:
    trained = _train(_settings(tmp_path, "cache-a"))
    assert all(e["source"] == "trained" for e in trained.values())
    frozen = _freeze(_settings(tmp_path, "cache-a"), trained)
    assert [written for _, written in frozen] == [True] * 2
    for folder, _ in frozen:  # the record and checksums, never the weights by default
        assert sorted(p.name for p in folder.iterdir()) == [
            "checksums.json", "frozen.json", "record.json"]
        assert folder.parent == tmp_path / "project" / "frozen"
    shutil.rmtree(tmp_path / "cache-a")  # the clone has no run cache

    clone = _settings(tmp_path, "cache-b")
    out, said = _clone(clone)
    assert out["tensorflow"] is False  # found by memo key: no TensorFlow, no training
    assert set(out["known"]) == {"small@0", "tuned@0"}
    for run, entry in out["entries"].items():
        assert (entry["source"], entry["trained"], entry["weights"]) == ("freeze", False, False)
        assert entry["key"] == trained[run]["key"]
        assert entry["train_seconds"] == trained[run]["train_seconds"]  # the frozen record
    assert "small: loaded from the freeze (frozen/)" in said and "trained in" not in said
    assert not (tmp_path / "cache-b" / "runs" / "entries").exists() or not list(
        (tmp_path / "cache-b" / "runs" / "entries").iterdir())  # nothing copied or trained

    run = training.load_given("small", clone, out["entries"]["small@0"])  # what pages do
    assert run.source == "freeze" and run.history == json.loads(
        (frozen[0][0] / "record.json").read_text())["history"]
    assert not run.has_weights
    with pytest.raises(CacheError, match="frozen without its weights.*--with-weights"):
        run.load_model()

    assert [w for _, w in _freeze(clone, out["entries"])] == [False, False]  # unchanged


@pytest.mark.slow
def test_weights_are_frozen_on_request_and_load_in_safe_mode(tmp_path: Path) -> None:
    s = _settings(tmp_path, "cache-a")
    trained = _train(s)
    frozen = _freeze(s, trained, with_weights=True)
    assert all((folder / "model.keras").is_file() for folder, _ in frozen)
    clone = _settings(tmp_path, "cache-b")
    entries = _train(clone)
    assert {e["source"] for e in entries.values()} == {"freeze"}
    assert all(e["weights"] for e in entries.values())
    run = training.load_given("tuned", clone, entries["tuned@0"])
    assert run.load_model().count_params() == run.record["params"]["total"]


@pytest.mark.slow
def test_changed_inputs_are_not_served_from_the_freeze(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    s = _settings(tmp_path, "cache-a")
    trained = _train(s)
    _freeze(s, trained)
    shutil.rmtree(tmp_path / "cache-a")
    caplog.set_level(logging.WARNING)

    child = _train(_settings(tmp_path, "cache-b", epochs={"tuned": 2}))
    # the parent is unchanged and frozen (without weights): the child, which must train,
    # starts from its weights, so the parent's run is trained again into the run cache
    assert child["small@0"]["source"] == "freeze"
    assert child["tuned@0"]["source"] == "trained" and child["tuned@0"]["epochs"] == 2
    assert child["tuned@0"]["parent"] == trained["small@0"]["key"]
    assert (tmp_path / "cache-b" / "runs" / "entries" / trained["small@0"]["key"]
            / "model.keras").is_file()
    assert "epochs 1 → 2" in (child["tuned@0"]["note"] or "")
    assert any("tuned seed 0: not from the freeze" in r.getMessage()
               or "tuned: not from the freeze" in r.getMessage() for r in caplog.records)

    both = _train(_settings(tmp_path, "cache-c", epochs={"small": 2}))
    assert {e["source"] for e in both.values()} == {"trained"}  # the child's key changes too
    assert both["small@0"]["key"] != trained["small@0"]["key"]
    assert "epochs 1 → 2" in (both["small@0"]["note"] or "")
    assert "the run it starts from" in (both["tuned@0"]["note"] or "")


@pytest.mark.slow
def test_a_damaged_frozen_file_stops_the_build_naming_it(tmp_path: Path) -> None:
    s = _settings(tmp_path, "cache-a")
    trained = _train(s)
    (folder, _), _ = _freeze(s, trained)
    record = folder / "record.json"
    record.write_text(record.read_text().replace('"seed": 0', '"seed": 7'))
    clone = _settings(tmp_path, "cache-b")
    with pytest.raises(CacheError, match=rf"frozen run {folder} is damaged \(record.json does "
                                         r"not match its checksum\).*git checkout"):
        _train(clone)
    entries = tmp_path / "cache-b" / "runs" / "entries"
    assert not entries.exists() or not list(entries.iterdir())  # nothing half-written


@pytest.mark.slow
def test_a_freeze_is_written_whole_or_not_at_all(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(tmp_path, "cache-a")
    trained = _train(s)
    real = shutil.copyfile

    def full_disk(src: object, dst: object) -> object:
        if str(dst).endswith("record.json"):
            raise OSError(28, "No space left on device")
        return real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    with pytest.raises(CacheError, match="cannot write the frozen run .* is full"):
        _freeze(s, trained)
    assert list((tmp_path / "project" / "frozen").iterdir()) == []  # no temp folder left
    assert freeze.infos(s.study.path) == []
    killed = tmp_path / "project" / "frozen" / ".tmp-0123456789ab-x"  # a freeze killed -9
    killed.mkdir()
    (killed / "record.json").write_text("{}")
    freeze.sweep(s.study.path)
    assert not killed.exists()


def tiny_project(tmp_path: Path) -> tuple[Path, list[str]]:
    """A checkout of a tiny study (a convnet and a model that starts from it) with a model
    page and the project's test page, and the build options that build it in seconds."""
    from test_stories import PAGE, _nav

    shapes = make_images(tmp_path / "shapes", classes=("circles", "squares"))
    project = tmp_path / "checkout"
    write_study(project, models__small__builder="builders.py:convnet")
    (project / "content").mkdir()
    (project / "content" / "small.md").write_text(PAGE.format(
        title="Small", name="small", prose="A small network.").replace(
        'show_code("small")', 'show_code("convnet")'))  # the builder's function name
    shutil.copy(ROOT / "content" / "test.md", project / "content" / "test.md")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    _nav(project, [("Small", "small"), ("Test", "test")])
    return project, ["--profile", "quick", "--data-dir", str(shapes), "--image-size", "32",
                     "--batch-size", "8", "--progress", "plain"]


@pytest.mark.slow
def test_freeze_commit_and_a_clone_publishes_the_site_with_no_training(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`catdog-report freeze` on one checkout; a copy of it with frozen/ (the clone CI makes)
    and an empty run cache builds the site: nothing trains, the stamps say so, and the
    Grad-CAM section says why it has no maps (the weights were not frozen)."""
    from catdog_report import cli

    project, common = tiny_project(tmp_path)
    assert cli.main(["freeze", "--project", str(project), "--cache-dir",
                     str(tmp_path / "cache-a"), *common]) == 0
    frozen = sorted(p.name for p in (project / "frozen").iterdir())
    assert len(frozen) == 2  # small and tuned (the test page reads every run)

    clone = tmp_path / "clone"
    shutil.copytree(project, clone, ignore=shutil.ignore_patterns("build", "site"))
    caplog.clear()
    caplog.set_level(logging.INFO)
    assert cli.main(["build", "--project", str(clone), "--cache-dir",
                     str(tmp_path / "cache-b"), *common]) == 0
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "trained in" in m or m.startswith("training ")], said
    assert any(m.startswith("small: loaded from the freeze (frozen/)") for m in said), said
    runs = json.loads((clone / "build" / "runs.json").read_text())["runs"]
    assert {m: (r["source"], r["trained"]) for m, r in runs.items()} == {
        "small": ("freeze", False), "tuned": ("freeze", False)}
    assert sorted(r["key"] for r in runs.values()) == frozen
    page = (clone / "site" / "small" / "index.html").read_text()
    assert "loaded from the committed freeze (frozen/) without its weights" in page
    assert "Small has no class-activation map: its run came from the freeze without its " \
           "trained weights" in page


def _fake_entry(tmp_path: Path) -> Path:
    entry = tmp_path / "entry"
    entry.mkdir(exist_ok=True)
    (entry / "record.json").write_text("{}")
    return entry


def test_prune_removes_only_this_profiles_runs_not_kept(tmp_path: Path) -> None:
    study = tmp_path / "study.yml"
    for key, profile in (("a" * 64, "quick"), ("b" * 64, "quick"), ("c" * 64, "full")):
        assert freeze.write(study, _fake_entry(tmp_path), {
            "key": key, "memo": key[::-1].upper(), "model": "m", "seed": 0,
            "profile": profile, "inputs": {}}, with_weights=False)
    assert freeze.prune(study, "quick", ["a" * 64]) == ["b" * 64]
    assert sorted(i["key"] for i in freeze.infos(study)) == ["a" * 64, "c" * 64]
    assert freeze.key_for_memo(study, "C" * 64) == "c" * 64
    assert freeze.key_for_memo(study, "B" * 64) is None


def test_why_not_names_the_inputs_that_changed(tmp_path: Path) -> None:
    study = tmp_path / "study.yml"
    inputs = {"epochs": 2, "versions": {"keras": "3.1", "numpy": "2.0"},
              "code": {"models.py": "1", "other.py": "2"}, "manifest": "f" * 64,
              "parent": None}
    freeze.write(study, _fake_entry(tmp_path), {"key": "a" * 64, "memo": "m", "model": "m",
                                                "seed": 0, "profile": "full",
                                                "inputs": inputs}, with_weights=False)
    now = inputs | {"epochs": 3, "versions": {"keras": "3.2", "numpy": "2.0"},
                    "code": {"models.py": "9", "other.py": "2"}, "manifest": "e" * 64}
    assert freeze.why_not(study, "m", 0, "full", now, "b" * 64) == (
        "its frozen run was made with other inputs: the study's model code (models.py); "
        "epochs 2 → 3; the data set (its manifest); library versions (keras 3.1 → 3.2)")
    assert freeze.why_not(study, "m", 0, "full", now, "a" * 64) is None  # it was used
    assert freeze.why_not(study, "m", 1, "full", now, "b" * 64) is None  # none frozen
    assert freeze.why_not(study, "m", 0, "quick", now, "b" * 64) is None
    assert "another run key" in (freeze.why_not(study, "m", 0, "full", inputs, "b" * 64)
                                 or "")
