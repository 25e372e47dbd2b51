"""The command line's view of a build: the library's log records and progress events
(progress.py) rendered as a live display on a terminal (rich), or as plain lines elsewhere
(CI, a log file, serve's log): no control characters, one line per epoch and per page, and
at most one progress line per PLAIN_EVERY seconds inside a long epoch."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from .progress import (
    TICK,
    BatchDone,
    BuildPlanned,
    EpochDone,
    PageDone,
    PageStarted,
    RunDone,
    RunStarted,
    StageDone,
    Tracker,
    duration,
    event_of,
    run_label,
)

PLAIN_EVERY = 30.0  # seconds between two progress lines of one epoch, off a terminal
OWN = "catdog_report"
HUSHED = ("py.warnings", "absl", "tensorflow", "keras", "h5py")  # below ERROR only with -v
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def plain(text: str) -> str:
    """text without terminal escapes or control characters (newlines kept)."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\t", "    "))


class Display(logging.Handler):
    """A logging handler that shows what a person needs: the build's own lines at INFO,
    other libraries' warnings, everything with verbose, only errors with quiet; progress
    events update the tracker, and subclasses draw them."""

    def __init__(self, stream: IO[str], verbose: bool = False, quiet: bool = False,
                 timed: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logging.NOTSET)
        self.stream, self.clock = stream, clock
        self.verbose, self.quiet, self.timed = verbose, quiet, timed
        self.tracker = Tracker()
        self.setFormatter(logging.Formatter("%(message)s"))

    def shows(self, record: logging.LogRecord) -> bool:
        """Whether a record becomes a line."""
        if record.levelno <= TICK:
            return False
        if isinstance(event_of(record), PageStarted) and not self.verbose:
            return False  # the live display shows it; off a terminal, its PageDone line
        if self.quiet:
            return record.levelno >= logging.ERROR
        name = record.name
        own = name == OWN or name.startswith(OWN + ".")
        if self.verbose:  # other libraries' debug logs (markdown-it's per-token) are not news
            return own or record.levelno >= logging.INFO
        if own:
            return record.levelno >= logging.INFO
        if any(name == h or name.startswith(h + ".") for h in HUSHED):
            return record.levelno >= logging.ERROR
        return record.levelno >= logging.WARNING

    def emit(self, record: logging.LogRecord) -> None:
        """Update the progress state, then show the record's line if it is one to show."""
        try:
            event = event_of(record)
            if event is not None:
                now = self.clock()
                self.tracker.feed(event, now)
                self.on_event(event, record, now)
            if self.shows(record):
                self.line(self.format(record), record.levelno)
        except Exception:  # a display must never break the build
            self.handleError(record)

    def text(self, message: str) -> str:
        """A line as shown: plain, with the time in front for a long session (serve)."""
        message = plain(message)
        return f"{time.strftime('%H:%M:%S')} {message}" if self.timed else message

    def on_event(self, event: Any, record: logging.LogRecord, now: float) -> None:
        """Draw a progress event (nothing here)."""

    def line(self, message: str, level: int = logging.INFO) -> None:
        """Write one line that stays."""
        self.stream.write(self.text(message) + "\n")
        self.stream.flush()

    def final(self, message: str) -> None:
        """The last line of a command, shown even with quiet."""
        self.line(message)

    def close(self) -> None:
        """Stop drawing."""
        super().close()


class PlainDisplay(Display):
    """Plain lines: one per epoch, run, page and stage, and inside a long epoch a progress
    line at most every PLAIN_EVERY seconds."""

    def __init__(self, *args: Any, every: float = PLAIN_EVERY, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.every = every
        self.last: dict[str, float] = {}  # per run: its last progress line or epoch

    def on_event(self, event: Any, record: logging.LogRecord, now: float) -> None:
        """A throttled progress line for batches; a run's clock restarts at each epoch."""
        if isinstance(event, RunStarted | EpochDone):
            self.last[event.run] = now
        elif isinstance(event, BatchDone) and not self.quiet and self.tracker.settled(
                event.run):
            if now - self.last.setdefault(event.run, now) >= self.every:
                self.last[event.run] = now
                self.line(progress_line(self.tracker, event, now))


def progress_line(tracker: Tracker, event: BatchDone, now: float) -> str:
    """model_one epoch 3/20: batch 41/63, 1.9 s/step; epoch 42 s left, training about
    12 min 30 s left."""
    step = tracker.step_seconds(event.run, now)
    rate = f", {step:.2f} s/step" if step else ""
    left = tracker.training_left(now)
    return (f"{tracker.label(event.run)} epoch {event.epoch}/{event.epochs}: batch "
            f"{event.batch}/{event.steps}{rate}; epoch "
            f"{duration(tracker.epoch_left(event.run, now))} left, training about "
            f"{duration(left)} left")


class RichDisplay(Display):
    """A live display on a terminal (rich): the build's runs and pages and its estimate,
    a bar per training run (epoch, batch, rate, time left), a line per page executing;
    the lines that stay scroll above it."""

    def __init__(self, stream: IO[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(stream, *args, **kwargs)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column

        self.console = Console(file=stream, force_terminal=True, highlight=False)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", table_column=Column(width=18, no_wrap=True)),
            BarColumn(bar_width=12, table_column=Column(width=12)),
            TextColumn("{task.fields[count]}", table_column=Column(width=6, justify="right")),
            TimeElapsedColumn(table_column=Column(width=7)),
            TextColumn("{task.fields[info]}", table_column=Column(
                no_wrap=True, overflow="ellipsis", min_width=10)),
            console=self.console, transient=True, refresh_per_second=4)  # stray prints
        # to sys.stdout and sys.stderr go above the live rows
        self.build_task: Any = None
        self.run_tasks: dict[str, Any] = {}
        self.page_tasks: dict[str, Any] = {}
        self.started = False

    def _start(self) -> None:
        if not self.started:
            self.progress.start()
            self.started = True

    def on_event(self, event: Any, record: logging.LogRecord, now: float) -> None:
        """Update the bars."""
        if self.quiet:
            return
        self._start()
        p = self.progress
        if isinstance(event, BuildPlanned):
            for task in [*self.run_tasks.values(), *self.page_tasks.values()]:
                p.remove_task(task)
            self.run_tasks, self.page_tasks = {}, {}
            if self.build_task is not None:
                p.remove_task(self.build_task)
            total = len(event.runs) + len(event.pages)
            self.build_task = p.add_task("build", total=total or None, info="", count="")
        elif isinstance(event, RunStarted):
            self.run_tasks[event.run] = p.add_task(
                self.tracker.label(event.run), total=event.steps, count=f"0/{event.steps}",
                info=f"epoch 1/{event.epochs} · starting")
        elif isinstance(event, BatchDone) and event.run in self.run_tasks:
            p.update(self.run_tasks[event.run], completed=event.batch, total=event.steps,
                     count=f"{event.batch}/{event.steps}",
                     info=f"epoch {event.epoch}/{event.epochs} · "
                          + self._run_info(event.run, now))
        elif isinstance(event, EpochDone) and event.run in self.run_tasks:
            steps = self.tracker.runs[event.run].plan.steps
            if event.epoch < event.epochs:  # the clock (and the bar) restart per epoch
                p.reset(self.run_tasks[event.run], total=steps, completed=0,
                        count=f"0/{steps}",
                        info=f"epoch {event.epoch + 1}/{event.epochs} · starting")
            else:
                p.update(self.run_tasks[event.run], info=f"epoch {event.epoch}/"
                         f"{event.epochs} done · testing and saving the run")
        elif isinstance(event, RunDone) and event.run in self.run_tasks:
            p.remove_task(self.run_tasks.pop(event.run))
        elif isinstance(event, PageStarted):
            self.page_tasks[event.page] = p.add_task(f"page {event.page}", total=None,
                                                     count="", info="executing")
        elif isinstance(event, PageDone) and event.page in self.page_tasks:
            p.remove_task(self.page_tasks.pop(event.page))
        elif isinstance(event, StageDone) and event.stage == "site":
            if self.build_task is not None:
                p.remove_task(self.build_task)
                self.build_task = None
        self._update_build(now)

    def _run_info(self, run: str, now: float) -> str:
        step = self.tracker.step_seconds(run, now)
        if not step or not self.tracker.settled(run):
            return "measuring the step time"
        return (f"{step:.2f} s/step · epoch {duration(self.tracker.epoch_left(run, now))} "
                f"left · run {duration(self.tracker.run_left(run, now))} left")

    def _update_build(self, now: float) -> None:
        if self.build_task is None:
            return
        t = self.tracker
        c = t.counts()
        done_pages = len(t.pages_done)
        left = t.build_left(now)
        parts = [f"{c['trained']} trained, {c['loaded'] + c['cached']} cached, {c['to_train']} "
                 "to train",
                 f"pages {done_pages}/{len(t.pages)}"]
        if c["to_train"]:
            parts.append(f"about {duration(left)} left" if left is not None
                         else "estimating time left")
        ready = c["trained"] + c["loaded"] + done_pages
        self.progress.update(self.build_task, completed=ready,
                             count=f"{ready}/{c['total'] + len(t.pages)}",
                             info=" · ".join(parts))

    def line(self, message: str, level: int = logging.INFO) -> None:
        """Print a line above the live display."""
        from rich.text import Text

        style = ("red" if level >= logging.ERROR else "yellow" if level >= logging.WARNING
                 else "dim" if level < logging.INFO else "")
        self.console.print(Text(self.text(message), style=style), soft_wrap=True)

    def final(self, message: str) -> None:
        """Stop the live display, then print the last line."""
        self._stop()
        self.line(message)

    def _stop(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False

    def close(self) -> None:
        """Stop the live display."""
        self._stop()
        super().close()


MODES = ("auto", "live", "plain")


def make(verbose: bool = False, quiet: bool = False, timed: bool = False,
         stream: IO[str] | None = None, mode: str = "auto",
         every: float = PLAIN_EVERY) -> Display:
    """The display for stderr: live on a terminal (mode auto, unless TERM=dumb) or when
    asked (live), plain lines elsewhere or when asked (plain); quiet is always plain."""
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"
    if (mode == "live" or (mode == "auto" and tty)) and not quiet:
        try:
            # a copy of the terminal's descriptor: while TensorFlow loads, the library holds
            # descriptor 2 back from the terminal (training.import_tensorflow)
            own = os.fdopen(os.dup(stream.fileno()), "w", buffering=1) if tty else stream
            return RichDisplay(own, verbose=verbose, quiet=quiet, timed=timed)
        except (OSError, ValueError, ImportError):
            pass
    return PlainDisplay(stream, verbose=verbose, quiet=quiet, timed=timed, every=every)


def summary_lines(result: Any) -> list[str]:
    """The closing summary of a build: what trained (per run, its epochs and seconds) and
    what came from the run cache, and the time of each stage. The command's last line
    says where the site is."""
    trained: list[str] = []
    found: dict[str, list[str]] = {"cache": [], "freeze": [], "remote": []}
    seeds = max((len(v) for v in result.seeds.values()), default=1)
    training = 0.0
    for model, entries in result.seeds.items():
        for e in entries:
            name = run_label(model, e["seed"], seeds)
            if e.get("trained"):
                training += e["train_seconds"]
                trained.append(f"{name} ({e['epochs']} epoch{'s' * (e['epochs'] != 1)}, "
                               f"{duration(e['train_seconds'])})")
            else:
                found.get(e.get("source", "cache"), found["cache"]).append(name)
    elsewhere = "".join(f"; from the {where}: {', '.join(names)}" for where, names in (
        ("freeze (frozen/)", found["freeze"]), ("remote run cache", found["remote"])) if names)
    executed = [p for p in result.pages if not p.cached]
    stages = result.stages
    return [
        f"trained: {', '.join(trained) or 'nothing'}",
        f"from the run cache: {', '.join(found['cache']) or 'nothing'}{elsewhere}; pages: "
        f"{len(executed)} executed, {len(result.pages) - len(executed)} from the page cache",
        f"time: data {duration(stages.get('data'))}, plan {duration(stages.get('plan'))}, "
        f"training {duration(training) if trained else 'none'} and pages "
        f"{duration(sum(p.seconds for p in executed))} (side by side: "
        f"{duration(stages.get('execute'))}), docs {duration(stages.get('docs'))}, site "
        f"{duration(stages.get('site'))}; total {duration(result.seconds)}",
    ]
