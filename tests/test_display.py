"""The command line's view of a build: plain lines off a terminal (no control characters,
each run and page named once, throttled progress), a live display on one, the filters of
-v and -q, and the closing summary."""

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import catdog_report
from catdog_report import display, progress
from catdog_report.display import PlainDisplay, RichDisplay, plain, summary_lines
from catdog_report.progress import (
    BatchDone,
    BuildPlanned,
    EpochDone,
    PageDone,
    PageStarted,
    RunDone,
    RunPlan,
    RunStarted,
    StageDone,
)

CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # every control character but the newline
OWN = logging.getLogger("catdog_report.build")


def record(msg: str, event: Any = None, level: int = logging.INFO,
           name: str = "catdog_report.build") -> logging.LogRecord:
    extra = {progress.ATTRIBUTE: event} if event is not None else {}
    return logging.makeLogRecord({"name": name, "levelno": level,
                                  "levelname": logging.getLevelName(level), "msg": msg,
                                  **extra})


def a_build(shown: display.Display) -> None:
    """The records of a build that trains one run of two epochs and executes two pages."""
    plan = BuildPlanned((RunPlan("one@0", "one", 0, 2, 4, False),
                         RunPlan("two@0", "two", 0, 1, 4, True)), ("index", "one"))
    shown.handle(record("may need training: one@0", plan))
    shown.handle(record("[1/2] index: executing", PageStarted("index")))
    shown.handle(record("training one: 2 epochs on 32 images", RunStarted("one@0", 2, 4)))
    for epoch in (1, 2):
        for batch in range(1, 5):
            shown.handle(record(f"one epoch {epoch}/2: batch {batch}/4",
                                BatchDone("one@0", epoch, 2, batch, 4), progress.TICK))
        shown.handle(record(f"one epoch {epoch}/2: loss 0.5 (1.0 s)",
                            EpochDone("one@0", epoch, 2, 1.0)))
    shown.handle(record("one: trained in 2.0 s (abc)", RunDone("one@0", True, 2.0)))
    shown.handle(record("two: loaded from the run cache (def)", RunDone("two@0", False, 0)))
    shown.handle(record("[1/2] index: executed in 1.0 s", PageDone("index", False, 1.0)))
    shown.handle(record("[2/2] one: cached", PageDone("one", True, 0.0)))
    shown.handle(record("\x1b[31mcolour\x1b[0m and a carriage\r return"))  # a kernel line
    shown.handle(record("Cleaning site directory", name="mkdocs.commands.build"))
    shown.handle(record("a stale link", level=logging.WARNING, name="mkdocs.structure"))
    shown.handle(record("Do not pass input_shape", level=logging.WARNING, name="py.warnings"))
    shown.handle(record("site: built with mkdocs in 0.5 s", StageDone("site", 0.5)))


def test_plain_lines_have_no_control_characters_and_say_each_step_once() -> None:
    out = io.StringIO()
    a_build(PlainDisplay(out, every=3600))
    text = out.getvalue()
    assert not CONTROL.search(text), repr(text)
    lines = text.splitlines()
    assert lines == [
        "may need training: one@0", "training one: 2 epochs on 32 images",
        "one epoch 1/2: loss 0.5 (1.0 s)", "one epoch 2/2: loss 0.5 (1.0 s)",
        "one: trained in 2.0 s (abc)", "two: loaded from the run cache (def)",
        "[1/2] index: executed in 1.0 s", "[2/2] one: cached",
        "colour and a carriage return", "a stale link", "site: built with mkdocs in 0.5 s"]


def test_plain_progress_lines_are_throttled() -> None:
    times = iter(range(0, 10_000, 10))
    clock = lambda: float(next(times))  # noqa: E731  every event 10 s after the one before
    out = io.StringIO()
    a_build(PlainDisplay(out, every=25, clock=clock))
    ticks = [line for line in out.getvalue().splitlines() if ": batch " in line]
    # each epoch: its start, then batches 10 s apart; a line once 25 s have passed
    assert ticks and all(t.startswith("one epoch ") and "s/step" in t and "left" in t
                         for t in ticks)
    assert len(ticks) == 2, ticks  # one per 4-batch (40 s) epoch, never one per batch
    quiet = io.StringIO()
    a_build(PlainDisplay(quiet, every=0))
    every = [line for line in quiet.getvalue().splitlines() if ": batch " in line]
    assert len(every) == 7  # each batch but the run's first, whose time includes tracing


def test_verbose_shows_everything_and_quiet_only_errors() -> None:
    loud, hushed = io.StringIO(), io.StringIO()
    a_build(PlainDisplay(loud, verbose=True, every=3600))
    for shown in (PlainDisplay(hushed, quiet=True), ):
        a_build(shown)
        shown.handle(record("page one failed", PageDone("one", False, 1.0, failed=True),
                            logging.ERROR))
        shown.final("built 2 pages")
    text = loud.getvalue()
    assert "Cleaning site directory" in text and "Do not pass input_shape" in text
    assert "[1/2] index: executing" in text and ": batch " not in text  # no line per batch
    assert hushed.getvalue().splitlines() == ["page one failed", "built 2 pages"]


def test_the_live_display_draws_the_runs_and_pages() -> None:
    out = io.StringIO()
    shown = RichDisplay(out)
    plan = BuildPlanned((RunPlan("one@0", "one", 0, 2, 4, False),), ("index",))
    shown.handle(record("may need training: one@0", plan))
    shown.handle(record("[1/1] index: executing", PageStarted("index")))
    shown.handle(record("training one", RunStarted("one@0", 2, 4)))
    shown.handle(record("tick", BatchDone("one@0", 1, 2, 3, 4), progress.TICK))
    tasks = {t.description: t for t in shown.progress.tasks}
    assert set(tasks) == {"build", "page index", "one"}
    assert tasks["one"].completed == 3 and tasks["one"].fields["count"] == "3/4"
    assert re.search(r"epoch 1/2 · [\d.]+ s/step · epoch \d+ s left · run \d+ s left",
                     tasks["one"].fields["info"]), tasks["one"].fields["info"]
    assert "0 trained, 0 cached, 1 to train · pages 0/1 · about " in tasks[
        "build"].fields["info"]
    shown.handle(record("one: trained in 2.0 s", RunDone("one@0", True, 2.0)))
    shown.handle(record("[1/1] index: executed", PageDone("index", False, 1.0)))
    assert [t.description for t in shown.progress.tasks] == ["build"]
    shown.final("built 1 page")
    shown.close()
    text = out.getvalue()
    assert "may need training: one@0" in text and "one: trained in 2.0 s" in text
    assert "built 1 page" in text and "[1/1] index: executing" not in text


def test_plain_strips_escapes() -> None:
    assert plain("\x1b[1;32mok\x1b[0m\tdone\r\n") == "ok    done\n"


def test_summary_names_what_trained_what_was_cached_and_the_time_of_each_stage() -> None:
    page = SimpleNamespace
    result = SimpleNamespace(
        seeds={"one": [{"seed": 0, "trained": True, "epochs": 2, "train_seconds": 75.0}],
               "two": [{"seed": 0, "trained": False, "epochs": 1, "train_seconds": 5.0}]},
        pages=[page(cached=False, seconds=12.0), page(cached=True, seconds=3.0)],
        stages={"data": 2.0, "plan": 0.4, "execute": 80.0, "docs": 0.1, "site": 1.5},
        seconds=84.0, published=True)
    assert summary_lines(result) == [
        "trained: one (2 epochs, 1 min 15 s)",
        "from the run cache: two; pages: 1 executed, 1 from the page cache",
        "time: data 2 s, plan 0 s, training 1 min 15 s and pages 12 s (side by side: "
        "1 min 20 s), docs 0 s, site 2 s; total 1 min 24 s"]


def test_verbose_and_quiet_together_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    from catdog_report.cli import main

    assert main(["-v", "-q", "clean"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_a_kernel_relays_its_warnings_and_keeps_the_rest_for_verbose(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """What a page kernel writes to stderr (kernel._Relay): the library's warnings reach
    the build's terminal; its info lines (facts the build already said) and TensorFlow's
    start-up notices only -v shows; the page's log file keeps everything, what the kernel
    wrote before a page took it (a kernel started ahead) included."""
    from catdog_report import kernel

    caplog.set_level(logging.DEBUG, logger="catdog_report")
    read, write = os.pipe()
    os.write(write, b"    INFO model_one: trained by this build (abc)\n"
                    b"    WARNING skipping cats/1.jpg: not an image\n"
                    b"I0000 00:00:17.1 port.cc:153] oneDNN custom operations are on.\n")
    os.close(write)
    relay = kernel._Relay(read)
    relay.run()  # all of it written before a page took the kernel
    relay.attach(tmp_path / "page.log")
    relay.sink.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "catdog_report.kernel"]
    assert said == [(logging.DEBUG, "kernel: INFO model_one: trained by this build (abc)"),
                    (logging.WARNING, "    skipping cats/1.jpg: not an image"),
                    (logging.DEBUG, "kernel: I0000 00:00:17.1 port.cc:153] oneDNN custom "
                                    "operations are on.")]
    kept = (tmp_path / "page.log").read_text()
    assert "trained by this build" in kept and "not an image" in kept and "oneDNN" in kept


# ------------------------------------------------------------------------------ a whole build

TWO_RUNS_NAV = ("nav:\n  - Introduction: index.md\n  - Model one: model-one.md\n"
                "  - Model two: model-two.md\n")


@pytest.mark.slow
def test_a_build_off_a_terminal_is_plain_lines_naming_each_run_once(
        project: Path, tiny_data: Path, tmp_path: Path) -> None:
    config = project / "mkdocs.yml"
    config.write_text(re.sub(r"^nav:\n(?:  - .*\n)+", TWO_RUNS_NAV, config.read_text(),
                             flags=re.M))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATDOG_")}
    src = str(Path(catdog_report.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    argv = [sys.executable, "-m", "catdog_report.cli", "build", "--project", str(project),
            "--profile", "quick", "--data-dir", str(tiny_data), "--cache-dir",
            str(tmp_path / "cache"), "--image-size", "64", "--batch-size", "8", "--epochs",
            "model_one=2", "model_two=1"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600,
                         cwd=project)  # stderr is a pipe: not a terminal
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stderr
    (tmp_path / "build.log").write_text(text)
    assert not CONTROL.search(text), [line for line in text.splitlines()
                                      if CONTROL.search(line)]
    lines = text.splitlines()
    for model, epochs in (("model_one", 2), ("model_two", 1)):
        assert sum(line.startswith(f"training {model}:") for line in lines) == 1, text
        assert sum(line.startswith(f"{model}: trained in ") for line in lines) == 1, text
        assert sum(line.startswith(f"{model} epoch ") for line in lines) == epochs, text
        assert sum(model in line for line in lines) == epochs + 4, text  # + plan, training,
        # ready and the summary line: a page never repeats it
    for page in ("index", "model-one", "model-two"):
        assert sum(f"] {page}: executed in" in line for line in lines) == 1, text
    assert "executing" not in text  # one line per page
    for noise in ("absl", "oneDNN", "cpu_feature_guard", "Cleaning site directory",
                  "Building documentation", "Documentation built"):
        assert noise not in text, noise
    assert lines[-4].startswith("trained: model_one (2 epochs, ")
    assert lines[-2].startswith("time: data ")
    assert re.fullmatch(r"built 3 pages in [\d.]+ s \(3 executed: index, model-one, "
                        r"model-two\); site published to .*site", lines[-1]), lines[-1]


def test_summary_names_the_runs_from_the_freeze_and_the_remote() -> None:
    result = SimpleNamespace(
        seeds={"one": [{"seed": 0, "trained": False, "source": "freeze", "epochs": 2,
                        "train_seconds": 75.0}],
               "two": [{"seed": 0, "trained": False, "source": "remote", "epochs": 1,
                        "train_seconds": 5.0}],
               "three": [{"seed": 0, "trained": False, "source": "cache", "epochs": 1,
                          "train_seconds": 5.0}]},
        pages=[], stages={}, seconds=1.0, published=True)
    assert summary_lines(result)[:2] == [
        "trained: nothing",
        "from the run cache: three; from the freeze (frozen/): one; from the remote run "
        "cache: two; pages: 0 executed, 0 from the page cache"]
