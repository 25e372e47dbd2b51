"""The shared remote run cache (fsspec): a run one teammate trains is pulled, checked, by
another with an empty run cache; concurrent pushes of one key leave one whole entry.
Backends exercised: a local path, file:// and memory://."""

import json
import logging
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from catdog_report import data, execute, training
from catdog_report.cache import Store
from catdog_report.config import Settings
from catdog_report.errors import ConfigError
from catdog_report.remote import Remote
from conftest import ROOT, make_images
from test_freeze import CLONE, tiny_project
from test_study import write_study


def _entry(store: Store, key: str, text: str, size: int = 3000) -> Path:
    """A run-cache-shaped entry (no TensorFlow): a record and a binary file."""
    def fill(tmp: Path) -> None:
        (tmp / "record.json").write_text(json.dumps({"key": key, "text": text}))
        (tmp / "model.keras").write_bytes(text.encode() * size)

    return store.put(key, fill)


@pytest.mark.parametrize("scheme", ["path", "file", "memory"])
def test_push_then_pull_into_an_empty_run_cache(tmp_path: Path, scheme: str) -> None:
    url = {"path": str(tmp_path / "remote"), "file": f"file://{tmp_path / 'remote'}",
           "memory": f"memory://catdog-{tmp_path.name}"}[scheme]
    key = "a" * 64
    local = _entry(Store(tmp_path / "a", "run"), key, "weights")
    assert Remote(url).push(key, local, memo="m" * 64, model="small")
    assert not Remote(url).push(key, local, memo="m" * 64, model="small")  # already there
    other = Remote(url)  # another build, another process's view of the same URL
    assert other.key_for_memo("m" * 64) == key and other.key_for_memo("n" * 64) is None
    store = Store(tmp_path / "b", "run")
    pulled = other.pull(key, store)
    assert pulled == store.path(key) and store.get(key) == pulled  # checksummed locally
    assert (pulled / "model.keras").read_bytes() == (local / "model.keras").read_bytes()
    assert other.pull("b" * 64, store) is None  # not there: a miss


def test_a_damaged_remote_blob_is_not_pulled(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    key = "a" * 64
    local = _entry(Store(tmp_path / "a", "run"), key, "weights")
    remote = Remote(str(tmp_path / "remote"))
    remote.push(key, local)
    blob = next(p for p in (tmp_path / "remote" / "blobs").iterdir()
                if p.stat().st_size > 1000)
    blob.write_bytes(b"x" * blob.stat().st_size)
    store = Store(tmp_path / "b", "run")
    with caplog.at_level(logging.WARNING):
        assert remote.pull(key, store) is None
    assert "model.keras does not match its checksum" in caplog.text
    assert not store.path(key).exists() and list((store.root / "tmp").iterdir()) == []


def test_an_unknown_protocol_is_one_line_naming_the_url() -> None:
    with pytest.raises(ConfigError, match="--remote-cache nosuch://x: fsspec cannot open "
                                          "'nosuch' URLs"):
        Remote("nosuch://x")


def _push(url: str, key: str, folder: str, barrier: object, rounds: int) -> None:
    """One pushing process: push the same key as the other process, round after round."""
    for i in range(rounds):
        barrier.wait()  # type: ignore[attr-defined]
        Remote(url).push(f"{key}{i:02d}", Path(folder), memo=f"m{i:02d}", model="small")


@pytest.mark.parametrize("same", [True, False], ids=["same-bytes", "other-bytes"])
def test_concurrent_pushes_of_one_key_leave_one_whole_entry(tmp_path: Path, same: bool) -> None:
    url, rounds = str(tmp_path / "remote"), 12
    key = "c" * 62
    folders = [_entry(Store(tmp_path / f"team{n}", "run"), key + "00",
                      "same" if same else f"member{n}", 20000) for n in (0, 1)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    procs = [context.Process(target=_push, args=(url, key, str(f), barrier, rounds))
             for f in folders]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    remote = Remote(url)
    expected = [(f / "model.keras").read_bytes() for f in folders]
    for i in range(rounds):
        store = Store(tmp_path / f"pull{i}", "run")
        pulled = remote.pull(f"{key}{i:02d}", store)
        assert pulled is not None and store.get(f"{key}{i:02d}") == pulled  # whole, verified
        weights = (pulled / "model.keras").read_bytes()
        assert weights in expected  # one member's entry, never a mix of both
        record = json.loads((pulled / "record.json").read_text())
        assert record["text"] == weights[: len(record["text"])].decode()
    left = [p.name for p in (tmp_path / "remote").rglob("*") if ".tmp-" in p.name]
    assert left == []  # every temp object was moved into place


@pytest.mark.slow
@pytest.mark.parametrize("cluster", [None, "local:2"], ids=["here", "cluster"])
def test_a_teammate_builds_from_the_remote_with_no_training(tmp_path: Path,
                                                            cluster: str | None) -> None:
    shapes = make_images(tmp_path / "shapes", classes=("circles", "squares"))
    study = write_study(tmp_path / "project")
    remote = tmp_path / "team-remote"

    def member(cache: str) -> Settings:
        return Settings(profile="quick", project_dir=study.parent, study_file=study,
                        data_dir=shapes, cache_dir=tmp_path / cache, image_size=32,
                        batch_size=8, remote_cache=str(remote))

    a = member("cache-a").replace(cluster=cluster)  # member A trains (here or on a cluster)
    ds = data.scan(a, a.data_dir)
    trained = execute.train(a, ds, training.run_specs_for(a, None), None).by_id
    assert {e["source"] for e in trained.values()} == {"trained"}
    assert len(list((remote / "entries").iterdir())) == 2  # both pushed
    assert len(list((remote / "memo").iterdir())) == 2

    b = member("cache-b")  # member B: an empty run cache, another process
    done = subprocess.run([sys.executable, "-c", CLONE, b.to_json()], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["tensorflow"] is False  # found by the remote memo: no TensorFlow, no training
    for run, entry in out["entries"].items():
        assert (entry["source"], entry["trained"]) == ("remote", False)
        assert entry["key"] == trained[run]["key"]
    assert "small: pulled from the remote run cache" in done.stderr
    run = training.load_given("tuned", b, out["entries"]["tuned@0"])  # in B's run cache now
    assert run.folder.is_relative_to(tmp_path / "cache-b")
    assert run.load_model().count_params() == run.record["params"]["total"]  # safe_mode
    again = execute.train(b, ds, training.run_specs_for(b, None), None).by_id
    assert {e["source"] for e in again.values()} == {"cache"}
    shutil.rmtree(remote)  # the remote gone: B still builds from its own run cache
    assert {e["source"] for e in execute.train(b, ds, training.run_specs_for(b, None),
                                               None).by_id.values()} == {"cache"}


def test_an_unreachable_remote_is_a_miss_with_a_warning(settings: Settings, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the remote's folder should be")
    s = settings.replace(remote_cache=str(blocked))
    local = _entry(training.run_store(s), "d" * 64, "weights")
    with caplog.at_level(logging.WARNING):
        assert training.key_for_memo(s, "m" * 64) is None
        training.push(s, "d" * 64, local, "m" * 64, "model_one")  # trained: the build goes on
    assert "pushing run dddddddddddd of model_one (it stays in the run cache)" in caplog.text
    assert f"remote run cache {blocked}" in caplog.text and "going on without it" in caplog.text


@pytest.mark.slow
def test_two_teammates_build_the_site_through_the_remote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Member A builds the site and pushes its runs; member B, another checkout with an
    empty run cache and CATDOG_REMOTE_CACHE set, builds it with no training; B's rebuild
    finds the runs in its own run cache and reuses its pages as they are (a stamp says how
    the page's runs were had when it executed: the site does not change)."""
    from catdog_report import cli

    project, common = tiny_project(tmp_path)
    remote = tmp_path / "team"
    assert cli.main(["build", "--project", str(project), "--cache-dir",
                     str(tmp_path / "cache-a"), "--remote-cache", str(remote), *common]) == 0
    other = tmp_path / "member-b"
    shutil.copytree(project, other, ignore=shutil.ignore_patterns("build", "site"))
    monkeypatch.setenv("CATDOG_REMOTE_CACHE", f"file://{remote}")
    b = ["build", "--project", str(other), "--cache-dir", str(tmp_path / "cache-b"), *common]
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert cli.main(b) == 0
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "trained in" in m or m.startswith("training ")], said
    assert "small: pulled from the remote run cache" in " ".join(said)
    stamp = "Small</strong> (run <code>{}</code>, 1 epoch, seed 0): {}"
    key = json.loads((other / "build" / "runs.json").read_text())["runs"]["small"]["key"]
    page = (other / "site" / "small" / "index.html").read_text()
    assert stamp.format(key[:12], "pulled from the remote run cache") in page
    caplog.clear()
    assert cli.main(b) == 0  # now from B's own run cache, the pages from its page cache
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("small: loaded from the run cache") for m in said), said
    assert sum(m.endswith((" small: cached", " test: cached")) for m in said) == 2, said
    sources = json.loads((other / "build" / "runs.json").read_text())["runs"]
    assert {r["source"] for r in sources.values()} == {"cache"}
    assert (other / "site" / "small" / "index.html").read_text() == page  # unchanged
