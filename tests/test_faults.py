"""Fault injection on whole builds: a disk that fills up, and kill -9 at random moments."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from catdog_report import kernel
from catdog_report.errors import CacheError, PageError
from mounts import tmpfs

MODELS = ("model_one", "model_two", "model_three", "model_four")
PAGES = ("index", "data", "model-one", "model-two", "model-three", "model-four", "test",
         "comparison")
ROUNDS = 5
STEP = re.compile(r"^((?:\[\d+/\d+\] |training |decoded |data: |docs: |Building |built "
                  r"|model_\w+ epoch |model_\w+: ).*)$", re.M)  # the build's own log lines
MARK = "FAULT_TEST_MARK"  # in the environment of the build and of every kernel it starts
# (not CATDOG_*: the build would warn about a variable it does not know)


def test_a_kernel_the_build_stops_is_not_reported_as_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """nbclient turns the cancellation of a running page into DeadKernelError."""
    from nbclient.exceptions import DeadKernelError

    async def running_page(*args: object) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise DeadKernelError("Kernel died") from None  # as nbclient does

    async def crashing_page(*args: object) -> None:
        raise DeadKernelError("Kernel died")

    async def other_failure() -> None:
        await asyncio.sleep(0.2)
        raise CacheError("the disk is full")

    page = tmp_path / "model-two.md"
    monkeypatch.setattr(kernel, "_execute", running_page)
    with pytest.raises(CacheError, match="the disk is full"):
        kernel.run_batch(lambda: asyncio.gather(kernel.execute_async(None, page, {}),
                                                other_failure()))
    assert caplog.messages == ["model-two.md: stopped by the build, which stops the pages "
                               "still running at its first failure (this page did not fail)"]
    caplog.clear()
    monkeypatch.setattr(kernel, "_execute", crashing_page)  # a real crash is still one
    with pytest.raises(PageError, match=r"^the Jupyter kernel running model-two.md died "
                                        r"\(out of memory\? check the page's log"):
        kernel.run_batch(lambda: kernel.execute_async(None, page, {}))
    assert caplog.messages == []


def _cli(project: Path, data: Path, cache: Path, weights: Path, seed: int = 0) -> list[str]:
    return [sys.executable, "-m", "catdog_report.cli", "build", "--project", str(project),
            "--profile", "quick", "--data-dir", str(data), "--cache-dir", str(cache),
            "--weights", str(weights), "--image-size", "100", "--batch-size", "8",
            "--seed", str(seed), "--epochs", *[f"{m}=1" for m in MODELS]]


def _temp_leftovers(cache: Path, project: Path) -> list[str]:
    """Temp entries of any writer: store temp folders and locks, write_atomic's files,
    site swaps."""
    left = [p for kind in ("runs", "pages") if (cache / kind / "tmp").is_dir()
            for p in (cache / kind / "tmp").iterdir()]
    left += [p for root in (cache, project / "build") for p in root.rglob("*.tmp")]
    left += list(project.glob("site.tmp-*")) + list(project.glob("site.old-*"))
    return sorted(str(p) for p in left)


@pytest.mark.slow
def test_a_disk_that_fills_up_during_a_build(project: Path, tiny_data: Path, tmp_path: Path,
                                             mobilenet_weights: Path) -> None:
    """The cache on a 4 MiB tmpfs: the decoded images fit, model one's run does not. The
    index page is still running then; the build stops it, and says so, not 'died'."""
    index = project / "content" / "index.md"
    index.write_text(re.sub(r"(```python[^\n]*\n)", r"\g<1>import time\ntime.sleep(120)\n",
                            index.read_text(), count=1))
    with tmpfs(tmp_path / "small", "4m") as mount:
        cache = mount / "cache"
        done = subprocess.run(_cli(project, tiny_data, cache, mobilenet_weights),
                              capture_output=True, text=True, timeout=600)
        err = done.stderr
        assert done.returncode == 1, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert re.fullmatch(
            rf"catdog-report: error: cannot write the run cache entry [0-9a-f]{{12}}: "
            rf"{cache}/runs is full \(no space left on the file system at {mount}\); "
            r"nothing partial was kept\. Free space there, or use --cache-dir "
            r"\(CATDOG_CACHE_DIR\) to put the caches on a disk with room", last), err[-3000:]
        assert "index.md: stopped by the build" in err, err[-3000:]
        assert "died" not in err and "out of memory" not in err and "Traceback" not in err
        assert _temp_leftovers(cache, project) == []
        assert list((cache / "runs" / "entries").iterdir()) == []
        assert not (project / "site").exists()


def _descendants(mark: str) -> list[int]:
    """Every process whose environment carries mark: the build and all its kernels."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _kill_build(proc: subprocess.Popen[bytes], mark: str) -> None:
    """kill -9 the build's process group, then any kernel it started (they run in
    sessions of their own), until none is left."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 30
    while (pids := _descendants(mark)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    assert not _descendants(mark), "a process of the killed build survived"


def _complete_runs(cache: Path, seed: int) -> set[str]:
    """The models whose run entries for this seed are stored whole."""
    entries = cache / "runs" / "entries"
    models = set()
    for folder in entries.iterdir() if entries.is_dir() else []:
        record = json.loads((folder / "record.json").read_text())
        if record["seed"] == seed:
            models.add(record["model"])
    return models


def _fault_seed() -> int:
    """CATDOG_FAULT_SEED=N replays a run; =random draws a new one; unset, a fixed one."""
    value = os.environ.get("CATDOG_FAULT_SEED", "")
    if value == "random":
        return random.SystemRandom().randrange(1, 10**6)
    return int(value) if value else 1106


@pytest.mark.slow
def test_kill_9_at_random_moments_then_build_again(project: Path, tiny_data: Path,
                                                   tmp_path: Path,
                                                   mobilenet_weights: Path) -> None:
    """A tiny quick build killed with -9 at ROUNDS random moments (seeded), then built
    to the end: no build trains what was stored whole before it, and none leaves a temp
    entry. The seed fixes the moments as fractions of one measured cold build."""
    mark = f"{MARK}={uuid.uuid4().hex}"
    scratch = Path(tempfile.mkdtemp(prefix="catdog-faults-"))  # short: kernel socket paths
    try:
        _kill_rounds(project, tiny_data, tmp_path / "cache", mobilenet_weights, tmp_path,
                     os.environ | {MARK: mark, "TMPDIR": str(scratch)}, mark)
    finally:
        for pid in _descendants(mark):  # a failed assertion leaves no build running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)


def _kill_rounds(project: Path, tiny_data: Path, cache: Path, mobilenet_weights: Path,
                 tmp_path: Path, env: dict[str, str], mark: str) -> None:
    """The body of the randomized kill test."""
    logs = tmp_path / "logs"
    logs.mkdir()

    def start(seed: int, name: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = logs / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(_cli(project, tiny_data, cache, mobilenet_weights, seed),
                                    stdout=fh, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        return proc, log

    # the moments fall within one whole cold build (seed 0); the faults hit seed 1's
    t0 = time.monotonic()
    proc, log = start(0, "measure")
    assert proc.wait(600) == 0, log.read_text()[-3000:]
    duration = time.monotonic() - t0
    seed = _fault_seed()
    rng = random.Random(seed)
    # in ascending order, so that each resumed build still has work left to be killed in
    fractions = sorted(round(rng.random(), 3) for _ in range(ROUNDS))
    moments = [round(f * duration, 1) for f in fractions]
    outcomes = []
    for i, moment in enumerate(moments, 1):
        stored = _complete_runs(cache, 1)
        proc, log = start(1, f"round-{i}")
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < moment:
            time.sleep(0.05)
        if proc.poll() is None:
            _kill_build(proc, mark)
            steps = STEP.findall(log.read_text())
            outcomes.append(f"killed at {moment} s after '{steps[-1] if steps else 'start'}'")
        else:
            outcomes.append(f"finished before {moment} s with exit code {proc.returncode}")
            assert proc.returncode == 0, log.read_text()[-3000:]
        retrained = set(re.findall(r"^training (model_\w+): ", log.read_text(), re.M)) & stored
        assert not retrained, (f"seed {seed}, kill moments {moments}, {outcomes}: round {i} "
                               f"trained {retrained} again, though stored whole")
    stored = _complete_runs(cache, 1)
    proc, log = start(1, "final")
    code = proc.wait(600)
    text = log.read_text()
    trained = set(re.findall(r"^training (model_\w+): ", text, re.M))
    rounds = "; ".join(f"round {i}: {o}" for i, o in enumerate(outcomes, 1))
    story = (f"seed {seed} (replay with CATDOG_FAULT_SEED={seed}); one build {duration:.1f} s; "
             f"kill moments {moments} (fractions {fractions} of it); {rounds}; runs stored "
             f"whole before the final build: {sorted(stored)}; final build exit {code}, "
             f"trained {sorted(trained)}")
    print("\n" + story.replace("; ", "\n  "))  # noqa: T201 (shown by pytest -s)
    assert code == 0, f"{story}\n{text[-3000:]}"
    assert trained == set(MODELS) - stored, story
    for model in stored:
        assert f"training {model}:" not in text, story
    check = subprocess.run([sys.executable, "-m", "catdog_report.cli", "check-site",
                            str(project / "site")], capture_output=True, text=True)
    assert check.returncode == 0, f"{story}\n{check.stderr[-2000:]}"
    assert _temp_leftovers(cache, project) == [], story
    if "executed in" in text:  # its first kernel swept the killed rounds' socket folders
        kernels = sorted(p.name for p in Path(env["TMPDIR"]).glob("catdog-kernel-*"))
        assert kernels == [], f"{story}: kernel temp folders left: {kernels}"
    site = project / "site"
    for page in PAGES:
        html = site / ("index.html" if page == "index" else f"{page}/index.html")
        assert html.is_file() and "Reproducibility stamp" in html.read_text(), (story, page)
    manifest = json.loads((project / "build" / "manifest.json").read_text())
    assert [p["name"] for p in manifest["pages"]] == list(PAGES), story
    assert {m for p in manifest["pages"] for m in p["runs"]} == set(MODELS), story
