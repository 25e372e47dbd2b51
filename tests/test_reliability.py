"""Interruption and concurrency: killed builds leave caches and site/ consistent."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _cli(project: Path, data: Path, cache: Path, weights: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "catdog_report.cli", "build", "--project", str(project),
            "--profile", "quick", "--data-dir", str(data), "--cache-dir", str(cache),
            "--weights", str(weights), "--image-size", "100", "--batch-size", "8", *extra]


def _start(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def _wait_for(proc: subprocess.Popen[str], needle: str, timeout: float = 300) -> str:
    seen = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    proc.kill()
    raise AssertionError(f"never saw {needle!r}:\n{''.join(seen)[-3000:]}")


def _entries(cache: Path) -> list[Path]:
    folder = cache / "runs" / "entries"
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_during_training_leaves_no_entry_and_no_site(
        sig: signal.Signals, project: Path, tiny_data: Path, tmp_path: Path,
        mobilenet_weights: Path) -> None:
    cache = tmp_path / "cache"
    proc = _start(_cli(project, tiny_data, cache, mobilenet_weights, "--epochs", "model_one=200"))
    _wait_for(proc, "model_one epoch 2/200")
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[1]
    time.sleep(3)  # the orphaned kernel notices its parent is gone and exits
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130), out[-2000:]
    if sig == signal.SIGINT:
        assert "interrupted" in out and "Traceback" not in out
    assert _entries(cache) == []  # the unfinished run was never stored
    assert not (project / "site").exists()
    pages = cache / "pages" / "entries"  # index and data may have finished meanwhile
    assert not pages.exists() or len(list(pages.iterdir())) <= 2


def test_rebuild_after_sigkill_trains_only_what_was_unfinished(
        project: Path, tiny_data: Path, tmp_path: Path, mobilenet_weights: Path) -> None:
    cache = tmp_path / "cache"
    epochs = ["--epochs", "model_one=1", "model_two=40", "model_three=1", "model_four=1"]
    proc = _start(_cli(project, tiny_data, cache, mobilenet_weights, *epochs))
    _wait_for(proc, "model_two epoch 1/40")
    proc.kill()
    proc.wait(60)
    time.sleep(3)
    assert len(_entries(cache)) == 1  # model one finished before the kill
    epochs[3] = "model_two=1"
    done = subprocess.run(_cli(project, tiny_data, cache, mobilenet_weights, *epochs),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training model_one" not in done.stderr  # its run finished before the kill
    assert ("model-one: cached" in done.stderr  # its page finished too, or reuses the run
            or "model_one: loaded from the run cache" in done.stderr)
    for model in ("model_two", "model_three", "model_four"):
        assert f"training {model}" in done.stderr
    assert (project / "site" / "comparison" / "index.html").is_file()


CONCURRENT = """
import sys
from catdog_report import data, training
from catdog_report.config import Settings
s = Settings(profile="quick", data_dir=sys.argv[1], cache_dir=sys.argv[2], image_size=100,
             batch_size=8, epochs={"model_one": 3})
ds = data.scan(s, s.data_dir)
run = training.fit(training.spec_for("model_one", s), s, ds, data.arrays(ds, s))
print("CACHED" if run.cached else "TRAINED", run.record["key"])
"""


def test_two_builds_at_once_share_the_cache_safely(tiny_data: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-c", CONCURRENT, str(tiny_data), str(cache)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = sorted(o[0].split()[0] for o in outs)
    assert results == ["CACHED", "TRAINED"]
    assert len({o[0].split()[1] for o in outs}) == 1
    entries = _entries(cache)
    assert len(entries) == 1
    record = json.loads((entries[0] / "record.json").read_text())
    assert record["epochs"] == 3
