"""Structured progress events of a build, sent through `logging`.

The library logs each step of a build as an ordinary log record (its message is the plain
line a log file shows) that also carries an event (``record.progress``): the runs planned,
each batch and epoch of a training run, each run and page ready, each stage done. A
program that only reads logs sees the lines; the command line (display.py) renders the
events as a live display on a terminal or as throttled plain lines elsewhere. Records of a
training task on a Dask worker reach the build process through Dask's events (cluster.py);
nothing here imports TensorFlow or draws anything.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

TICK = 5  # the log level of a batch event: below DEBUG, so -v prints no line per batch
ATTRIBUTE = "progress"  # the LogRecord attribute that holds the event


def run_label(model: str, seed: int, seeds: int = 1) -> str:
    """How the display names a run: the model, and its seed when the build has several."""
    return model if seeds <= 1 else f"{model} seed {seed}"


@dataclass(frozen=True)
class RunPlan:
    """One run of a build as planned: cached when the run cache is known to hold it;
    step_seconds is an earlier run's measure of one training step (validation included)."""

    run: str
    model: str
    seed: int
    epochs: int
    steps: int
    cached: bool
    step_seconds: float | None = None


@dataclass(frozen=True)
class BuildPlanned:
    """The runs (in training order) and the pages (in nav order) of a build."""

    runs: tuple[RunPlan, ...]
    pages: tuple[str, ...]
    workers: int = 1


@dataclass(frozen=True)
class RunStarted:
    """A run starts training."""

    run: str
    epochs: int
    steps: int


@dataclass(frozen=True)
class BatchDone:
    """A training batch finished (epoch and batch count from 1)."""

    run: str
    epoch: int
    epochs: int
    batch: int
    steps: int


@dataclass(frozen=True)
class EpochDone:
    """A training epoch finished, validation included."""

    run: str
    epoch: int
    epochs: int
    seconds: float


@dataclass(frozen=True)
class RunDone:
    """A run is ready: trained by this build, or found in the run cache."""

    run: str
    trained: bool
    seconds: float


@dataclass(frozen=True)
class PageStarted:
    """A page's kernel starts executing it."""

    page: str


@dataclass(frozen=True)
class PageDone:
    """A page is ready: executed, from the page cache, or failed."""

    page: str
    cached: bool
    seconds: float
    failed: bool = False


@dataclass(frozen=True)
class StageDone:
    """A stage of the build finished (data, docs, site)."""

    stage: str
    seconds: float


Event = (BuildPlanned | RunStarted | BatchDone | EpochDone | RunDone | PageStarted | PageDone
         | StageDone)


def emit(logger: logging.Logger, event: Event, msg: str, *args: Any,
         level: int = logging.INFO) -> None:
    """Log msg % args at level, carrying event for a progress display."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, *args, extra={ATTRIBUTE: event})


def event_of(record: logging.LogRecord) -> Event | None:
    """The progress event a log record carries, if any."""
    return getattr(record, ATTRIBUTE, None)


@dataclass
class _Run:
    """What the tracker knows of one run."""

    plan: RunPlan
    epoch: int = 0  # the epoch under way (from 1), 0 before training
    batch: int = 0  # batches done in that epoch
    epochs_done: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_started: float | None = None
    first_batch: float | None = None  # when the epoch's first batch ended
    started: float | None = None
    done: bool = False
    trained: bool = False
    seconds: float = 0.0


class Tracker:
    """The state of a build, fed with its events, and its estimates (pure: the caller
    gives the clock)."""

    def __init__(self) -> None:
        self.runs: dict[str, _Run] = {}
        self.pages: list[str] = []
        self.pages_done: dict[str, PageDone] = {}
        self.pages_running: dict[str, float] = {}
        self.workers = 1

    def feed(self, event: Event, now: float | None = None) -> None:
        """Update the state with one event."""
        now = time.monotonic() if now is None else now
        if isinstance(event, BuildPlanned):
            self.__init__()  # type: ignore[misc]  # a new build (serve rebuilds)
            self.runs = {r.run: _Run(r) for r in event.runs}
            self.pages = list(event.pages)
            self.workers = max(1, event.workers)
            return
        if isinstance(event, PageStarted):
            self.pages_running[event.page] = now
        elif isinstance(event, PageDone):
            self.pages_running.pop(event.page, None)
            self.pages_done[event.page] = event
        run = self.runs.get(getattr(event, "run", ""))
        if run is None:
            return
        if isinstance(event, RunStarted):
            run.started = run.epoch_started = now
            run.plan = RunPlan(**{**run.plan.__dict__, "epochs": event.epochs,
                                  "steps": event.steps})
        elif isinstance(event, BatchDone):
            if run.epoch_started is None:
                run.epoch_started = now
            if event.batch == 1:
                run.first_batch = now
            run.epoch, run.batch = event.epoch, event.batch
        elif isinstance(event, EpochDone):
            run.epochs_done = event.epoch
            run.epoch_seconds.append(event.seconds)
            run.batch, run.epoch, run.epoch_started = 0, event.epoch + 1, now
            run.first_batch = None
        elif isinstance(event, RunDone):
            run.done, run.trained, run.seconds = True, event.trained, event.seconds

    def counts(self) -> dict[str, int]:
        """Runs done (trained and from the cache), to train and planned from the cache."""
        runs = self.runs.values()
        return {"trained": sum(r.done and r.trained for r in runs),
                "loaded": sum(r.done and not r.trained for r in runs),
                "to_train": sum(not r.done and not r.plan.cached for r in runs),
                "cached": sum(not r.done and r.plan.cached for r in runs),
                "total": len(self.runs)}

    def step_seconds(self, run: str, now: float) -> float | None:
        """Seconds per training step of a run: measured in this build (whole epochs, else
        the epoch under way), else an earlier build's, else another run's of this build."""
        own = self._measured(run, now)
        if own is not None:
            return own
        if self.runs[run].plan.step_seconds:
            return self.runs[run].plan.step_seconds
        whole = [n for n, r in self.runs.items() if r.epoch_seconds]
        others = whole or [n for n in self.runs if n != run]
        measures = [m for name in others if (m := self._measured(name, now)) is not None]
        return measures[-1] if measures else None

    def _measured(self, run: str, now: float) -> float | None:
        """A run's own seconds per step in this build, if it has begun: its whole epochs
        (validation included), else the epoch under way after its first batch (which
        also traces the graph), else that first batch."""
        r = self.runs[run]
        if r.epoch_seconds:
            return sum(r.epoch_seconds) / (len(r.epoch_seconds) * max(1, r.plan.steps))
        if r.batch > 1 and r.first_batch is not None and now > r.first_batch:
            return (now - r.first_batch) / (r.batch - 1)
        if r.batch and r.epoch_started is not None and now > r.epoch_started:
            return (now - r.epoch_started) / r.batch
        return None

    def run_left(self, run: str, now: float) -> float | None:
        """Seconds of training a run has left (0 when done or cached)."""
        r = self.runs[run]
        if r.done or r.plan.cached:
            return 0.0
        step = self.step_seconds(run, now)
        if step is None:
            return None
        steps_left = (r.plan.epochs - r.epochs_done) * r.plan.steps - r.batch
        return max(0.0, steps_left * step)

    def epoch_left(self, run: str, now: float) -> float | None:
        """Seconds the epoch under way has left."""
        r = self.runs[run]
        step = self.step_seconds(run, now)
        return None if step is None else max(0.0, (r.plan.steps - r.batch) * step)

    def training_left(self, now: float) -> float | None:
        """Seconds of training the build has left (runs train one after another, or
        `workers` at a time); None while a run to train has no measure yet."""
        total = 0.0
        for name in self.runs:
            left = self.run_left(name, now)
            if left is None:
                return None
            total += left
        return total / self.workers

    def build_left(self, now: float) -> float | None:
        """Seconds the build has left: its training, then the last page that waits for it
        (as long as the pages executed so far took on average; pages run beside training)."""
        training = self.training_left(now)
        if training is None:
            return None
        executed = [p.seconds for p in self.pages_done.values() if not p.cached]
        pending = len(self.pages) - len(self.pages_done)
        return training + (sum(executed) / len(executed) if executed and pending else 0.0)

    def settled(self, run: str) -> bool:
        """Whether a run has a measure of its own beyond its first batch (which also traces
        the graph, so its time says little of the steps after it)."""
        r = self.runs.get(run)
        return r is not None and bool(r.epoch_seconds or r.batch > 1)

    def label(self, run: str) -> str:
        """How the display names a run of this build (with its seed when it has several)."""
        seeds = len({r.plan.seed for r in self.runs.values()})
        r = self.runs.get(run)
        return run_label(r.plan.model, r.plan.seed, seeds) if r else run.partition("@")[0]

    def active(self) -> list[str]:
        """The runs training now."""
        return [n for n, r in self.runs.items() if r.started is not None and not r.done]


def duration(seconds: float | None) -> str:
    """A short human duration: 42 s, 3 min 05 s, 1 h 02 min."""
    if seconds is None or math.isnan(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
