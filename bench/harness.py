"""Running what the benchmark measures: timed, memory-sampled child processes, the
catdog-report build command, a fresh project copy, the prose edit, and the probe."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from constants import (
    BATCH_SIZE,
    BENCH,
    IMAGE_SIZE,
    LOADED_RE,
    MAXRSS_RE,
    MODEL_NAMES,
    MODULES_RE,
    PAGE_RE,
    REPO,
    SAMPLE_SECONDS,
    SEED,
    TIME_BIN,
    TRAIN_RE,
)
from probe import STEP_VARIANTS


def child_env() -> dict[str, str]:
    """The environment of every measured run: ours without CATDOG_* (all passed explicitly)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CATDOG_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


class TreeSampler(threading.Thread):
    """Sample the total RSS of a process tree every SAMPLE_SECONDS; note the page kernels."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.stop = threading.Event()
        self.peak_total = 0
        self.peak_single = 0
        self.peak_processes = 0
        self.kernels: set[int] = set()
        self.known: dict[int, bool] = {}  # pid -> is a Jupyter kernel
        self.available = True

    def run(self) -> None:
        try:
            import psutil
        except ImportError:
            self.available = False
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    if proc.pid not in self.known:
                        self.known[proc.pid] = "ipykernel" in " ".join(proc.cmdline())
                except psutil.Error:
                    continue
                total += rss
                self.peak_single = max(self.peak_single, rss)
                if self.known.get(proc.pid):
                    self.kernels.add(proc.pid)
            self.peak_total = max(self.peak_total, total)
            self.peak_processes = max(self.peak_processes, len(procs))
            self.stop.wait(SAMPLE_SECONDS)


def run_measured(label: str, cmd: list[str], logs: Path) -> dict[str, Any]:
    """Run cmd, timing its wall clock and sampling its memory; logs go to files."""
    logs.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^\w.-]+", "-", label)
    out_path, err_path, time_path = (logs / f"{slug}.{ext}" for ext in ("out", "err", "time"))
    full = [str(TIME_BIN), "-v", "-o", str(time_path), *cmd] if TIME_BIN.is_file() else cmd
    load = os.getloadavg()[0]
    stamped: list[tuple[float, str]] = []  # (seconds since start, stderr line)
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=subprocess.PIPE, env=child_env(),
                                cwd=REPO, text=True, errors="replace")
        sampler = TreeSampler(proc.pid)
        sampler.start()
        assert proc.stderr is not None
        for line in proc.stderr:  # as it comes: the build's timeline
            stamped.append((round(time.perf_counter() - t0, 2), line.rstrip("\n")))
            err.write(line)
        rc = proc.wait()
        wall = time.perf_counter() - t0
        sampler.stop.set()
        sampler.join()
    time_text = time_path.read_text() if time_path.is_file() else ""
    maxrss = MAXRSS_RE.search(time_text)
    stderr = err_path.read_text(errors="replace")
    result = {
        "label": label, "wall_s": round(wall, 2), "rc": rc, "loadavg_1min_before": load,
        "peak_tree_rss_mb": round(sampler.peak_total / 2**20, 1) if sampler.available else None,
        "peak_sampled_process_rss_mb": round(sampler.peak_single / 2**20, 1)
        if sampler.available else None,
        "peak_processes": sampler.peak_processes,
        "kernels_seen": len(sampler.kernels),
        "largest_process_maxrss_mb": round(int(maxrss.group(1)) / 1024, 1) if maxrss else None,
        "stdout_log": str(out_path), "stderr_log": str(err_path),
    }
    if rc != 0:
        result["stderr_tail"] = stderr.splitlines()[-25:]
    return result | {"_stderr": stderr, "_stamped": stamped}


STAGES = (  # what a build's log line says happened: (stage event, pattern)
    ("data scanned", re.compile(r"^data: ")),
    ("planned", re.compile(r"^(may need training|plan:)")),
    ("fit starts {0}", re.compile(r"^training (\w+):")),
    ("fit ends {0}", re.compile(r"^(\w+): trained in")),
    ("page starts {0}", re.compile(r"^\[\d+/\d+\] ([\w.-]+): executing")),
    ("page ends {0}", re.compile(r"^\[\d+/\d+\] ([\w.-]+): executed in")),
    ("mkdocs starts", re.compile(r"^building the site with")),
    ("site published", re.compile(r"^site: built with")),
)


def timeline(stamped: list[tuple[float, str]], wall: float) -> list[dict[str, Any]]:
    """A cold build's timeline from its stamped log lines: when the data was scanned, the
    plan made, each fit and each page kernel started and ended, MkDocs ran, and the
    process ended (wall)."""
    events = [{"t": 0.0, "event": "process starts"}]
    for t, line in stamped:
        for label, pattern in STAGES:
            found = pattern.search(line)
            if found:
                events.append({"t": t, "event": label.format(*found.groups())})
                break
    events.append({"t": round(wall, 2), "event": "process ends"})
    return events


def parse_build_log(text: str) -> dict[str, Any]:
    """Which pages executed or came from the page cache, which models trained, what imported."""
    executed, cached = [], []
    for _, _, name, how in PAGE_RE.findall(text):
        if how == "executed in":  # the one line a page says off a terminal
            executed.append(name)
        elif how == "cached":
            cached.append(name)
    modules = MODULES_RE.findall(text)
    return {"pages_executed": executed, "pages_cached": cached,
            "models_trained": sorted(set(TRAIN_RE.findall(text)), key=MODEL_NAMES.index),
            "models_loaded": sorted(set(LOADED_RE.findall(text)), key=MODEL_NAMES.index),
            "build_process_modules": json.loads(modules[-1]) if modules else None}


def catdog_cmd(data_root: Path, weights: Path, cache: Path, project: Path,
               epochs: dict[str, int], *extra: str, profile: str = "quick") -> list[str]:
    """`catdog-report build --profile quick ...` (through bench/run_build.py)."""
    cmd = [sys.executable, str(BENCH / "run_build.py"), "build", "--profile", profile,
           "--data-dir", str(data_root), "--weights", str(weights), "--cache-dir", str(cache),
           "--project", str(project), "--image-size", str(IMAGE_SIZE),
           "--batch-size", str(BATCH_SIZE), "--seed", str(SEED), *extra]
    if epochs:
        cmd += ["--epochs", *(f"{k}={v}" for k, v in epochs.items())]
    return cmd


def fresh_project(dest: Path) -> Path:
    """A copy of the repo's content/, mkdocs.yml and study.yml: nothing built, no site."""
    dest.mkdir(parents=True)
    shutil.copytree(REPO / "content", dest / "content",
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    for name in ("mkdocs.yml", "study.yml"):
        shutil.copy2(REPO / name, dest / name)
    return dest


def read_records(cache: Path) -> list[dict[str, Any]]:
    """The run records a build wrote into its run cache."""
    out = []
    for path in sorted((cache / "runs" / "entries").glob("*/record.json")):
        rec = json.loads(path.read_text())
        out.append({k: rec.get(k) for k in ("model", "epochs", "train_seconds", "epoch_seconds",
                                            "images", "batch_size", "image_size", "test",
                                            "seed", "precision")})
    return out


def edit_prose(path: Path) -> str:
    """Change one sentence of Markdown prose (not code) in a page; returns what changed."""
    text = path.read_text()
    old = "It trains for longer."
    if old in text:
        new = "It trains for longer than model one does."
        path.write_text(text.replace(old, new, 1))
        return f"{old!r} -> {new!r}"
    lines = text.splitlines(keepends=True)
    in_code = in_front = seen_title = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if i == 0 and stripped == "---":
            in_front = True
            continue
        if in_front:
            in_front = stripped != "---"
            continue
        if stripped.startswith("```"):
            in_code = not in_code
            continue
        if in_code or not stripped:
            continue
        if stripped.startswith("# "):
            seen_title = True
            continue
        if seen_title and not stripped.startswith(("#", "<", "|", "!", "-", "*")):
            lines[i] = line.rstrip("\n") + " The benchmark edited this paragraph.\n"
            path.write_text("".join(lines))
            return f"appended a sentence to line {i + 1}"
    raise RuntimeError(f"no prose line found to edit in {path}")


def run_probe(smoke: bool, logs: Path) -> dict[str, Any]:
    """Matmul peak (sized to the machine) and FLOPs per model in one process; the steady
    training step of every model in one process per thread setting and malloc of
    STEP_VARIANTS."""
    cmd = [sys.executable, str(BENCH / "probe.py"), "--image-size", str(IMAGE_SIZE)]
    cmd += ["--matmul-n", "512", "--min-seconds", "0.5"] if smoke else []
    result = run_measured("probe", cmd, logs)
    if result["rc"] != 0:
        raise RuntimeError("bench/probe.py failed:\n" + "\n".join(result["stderr_tail"]))
    last = Path(result["stdout_log"]).read_text().strip().splitlines()[-1]
    probe = json.loads(last) | {"wall_s": result["wall_s"]}
    probe["train_step"] = []
    groups: dict[tuple[int, int, bool], list[str]] = {}
    for variant, cfg in STEP_VARIANTS.items():
        groups.setdefault((cfg["intra"], cfg["inter"], cfg["malloc"]), []).append(variant)
    for variants in groups.values():  # TF threads and malloc are set once per process
        label = f"probe steps {'+'.join(variants)}"
        r = run_measured(label, [sys.executable, str(BENCH / "probe.py"), "--image-size",
                                 str(IMAGE_SIZE), "--batch-size", str(BATCH_SIZE),
                                 "--train-step", ",".join(variants)], logs)
        if r["rc"] != 0:
            error = (r.get("stderr_tail") or ["failed"])[-1].strip()
            probe["train_step"] += [{"model": name, "variant": v, "error": error}
                                    for v in variants for name in MODEL_NAMES]
            continue
        line = Path(r["stdout_log"]).read_text().strip().splitlines()[-1]
        probe["train_step"] += json.loads(line)
        probe["wall_s"] = round(probe["wall_s"] + r["wall_s"], 2)
    return probe
