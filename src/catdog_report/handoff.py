"""The build → page hand-off: build/dataset.json and build/runs.json, written by the build,
read by its page kernels and stamps. Nothing travels back from a kernel."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, TypedDict

from . import environment
from .cache import write_atomic
from .data import Dataset, Split
from .errors import CacheError, DataError
from .plan import RunSpec, run_id

DATASET_FILE = "dataset.json"  # the build's data set
RUNS_FILE = "runs.json"  # the runs of the build, rewritten as each is ready


class RunEntry(TypedDict):
    """What runs.json says of one run: its stamp line and where to load it."""

    key: str
    trained: bool  # trained by this build (else found in the run cache)
    trained_at: str
    train_seconds: float
    epochs: int
    seed: int
    precision: str
    parent: str | None  # the run key it started from
    gpus: list[str]
    threads: int | None  # TensorFlow's intra-op threads it trained with
    model: str
    title: str
    source: str  # where this build got it: one of SOURCES
    weights: bool  # its trained weights are at hand (a freeze may leave them out)
    note: str | None  # why a frozen run of it could not be used, if one could not


SOURCES = ("trained", "cache", "freeze", "remote")  # this build, the run cache, frozen/, a remote
NO_WEIGHTS = "+no-weights"  # in a page key: the run's weights were not at hand


def run_entry(record: dict[str, Any], trained: bool, title: str, source: str | None = None,
              weights: bool = True, note: str | None = None) -> RunEntry:
    """The runs.json entry of a run record (training.Run.record); source: where the build
    got it (default: trained, or the run cache)."""
    env = record["environment"]
    return RunEntry(key=record["key"], trained=trained, trained_at=record["trained_at"],
                    train_seconds=record["train_seconds"], epochs=record["epochs"],
                    seed=record["seed"], precision=record.get("precision", "float32"),
                    parent=record.get("parent"), gpus=env.get("gpus", []),
                    threads=env.get("intra_op_threads"), model=record["model"], title=title,
                    source=source or ("trained" if trained else "cache"), weights=weights,
                    note=note)


def page_token(key: str, weights: bool = True) -> str:
    """What a page's cache key holds of one of its runs: its run key, marked when its weights
    are not at hand (its Grad-CAM maps are then left out, so the page differs)."""
    return key if weights else key + NO_WEIGHTS


class RunBook:
    """build/runs.json: the runs of this build, rewritten atomically as each is ready:
    "runs" maps each model to its base-seed run, "seeds" to every seed's runs in order."""

    def __init__(self, build_dir: Path, base_seed: int) -> None:
        self.path = build_dir / RUNS_FILE
        self.base = base_seed
        self.by_id: dict[str, RunEntry] = {}
        self.lock = threading.Lock()
        write_atomic(self.path, json.dumps({"runs": {}, "seeds": {}}))

    def add(self, entry: RunEntry) -> None:
        """Record one ready run and rewrite runs.json."""
        with self.lock:
            self.by_id[run_id(entry["model"], entry["seed"])] = entry
            write_atomic(self.path, json.dumps({"runs": self.runs, "seeds": self.seeds},
                                               indent=1))

    def parent_key(self, spec: RunSpec) -> str | None:
        """The run key of the run a spec starts from (None if it starts from nothing)."""
        return self.by_id[spec.parent_id]["key"] if spec.parent_id else None

    @property
    def runs(self) -> dict[str, RunEntry]:
        """Model → its base-seed run."""
        return {e["model"]: e for e in self.by_id.values() if e["seed"] == self.base}

    @property
    def seeds(self) -> dict[str, list[RunEntry]]:
        """Model → its runs, one per seed, in seed order."""
        out: dict[str, list[RunEntry]] = {}
        for e in sorted(self.by_id.values(), key=lambda e: e["seed"]):
            out.setdefault(e["model"], []).append(e)
        return out


def read_runs(build_dir: Path, key: str = "runs") -> dict[str, Any]:
    """build/runs.json: the runs this build trained or loaded, by model: "runs" holds the
    base seed's run, "seeds" every seed's runs in seed order."""
    path = build_dir / RUNS_FILE
    try:
        return json.loads(path.read_text())[key]
    except (OSError, ValueError, KeyError) as exc:
        raise CacheError(f"{path} is unreadable ({exc}); run the build again") from exc


def build_dir() -> Path | None:
    """Inside a build's page kernel, the build's folder; None when a page runs by hand."""
    return environment.read().build_dir


def build_runs(key: str = "runs") -> dict[str, Any] | None:
    """Inside a build's page kernel, the build's runs; None when a page runs by hand."""
    folder = build_dir()
    return read_runs(folder, key) if folder else None


def write_dataset(build_dir: Path, dataset: Dataset) -> None:
    """Record the build's dataset (splits, manifest, skipped files) for its page kernels."""
    write_atomic(build_dir / DATASET_FILE, json.dumps({
        "root": str(dataset.root.absolute()), "class_names": list(dataset.class_names),
        "splits": {n: {"files": list(s.files), "labels": list(s.labels)}
                   for n, s in dataset.splits.items()},
        "manifest": dataset.manifest, "source": dataset.source,
        "skipped": [list(pair) for pair in dataset.skipped]}, indent=1))


def read_dataset(build_dir: Path) -> Dataset:
    """The dataset a build recorded (no folder is scanned again)."""
    path = build_dir / DATASET_FILE
    try:
        raw = json.loads(path.read_text())
        splits = {n: Split(n, tuple(s["files"]), tuple(s["labels"]))
                  for n, s in raw["splits"].items()}
        return Dataset(Path(raw["root"]), tuple(raw["class_names"]), splits["train"],
                       splits["validation"], splits["test"], raw["manifest"], raw["source"],
                       tuple((a, b) for a, b in raw["skipped"]))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"the build's dataset record {path} is unreadable ({exc}); run the "
                        "build again") from exc
