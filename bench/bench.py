"""Benchmark catdog-report against the plain walkthrough script, and its caches against itself.

    .venv/bin/python bench/bench.py [--data-dir D] [--weights W] [--pairs 3] [--smoke]

1. Cold build vs plain script, alternated in one run (`--pairs` pairs): the quick profile's
   `catdog-report build` with empty caches and a fresh copy of the project (pages, kernels,
   MkDocs and all) against `bench/plain_walkthrough.py` (the walkthrough in Keras 3:
   `image_dataset_from_directory`, fit, evaluate, and the walkthrough's own figures: the
   photo grid, the flips and rotations, each model's history; no cache, no pages, no site)
   on exactly the same train/validation/test files. Ratio = catdog wall / plain wall
   (target <= 0.8x). The plain script's figure time is recorded, so the ratio without
   them is in results.json too.
2. Machine peak: fp32 `tf.linalg.matmul` throughput (bench/probe.py).
3. Training throughput per model: analytic FLOPs (bench/probe.py's convention) over the
   train_seconds of the run records the cold builds wrote, as a fraction of the peak.
4. Rebuilds on the last pair's warm cache: unchanged, one prose sentence edited in
   content/model-two.md, and `--epochs model_three=3`.
5. Peak memory of every run: the process tree's total RSS (psutil, sampled every 0.2 s) and
   the largest single process's max RSS (`/usr/bin/time -v`, which counts reaped children).

Prints a plain-text table and writes every number to bench/results.json
(bench/results-smoke.json with --smoke). `--smoke` is a tiny end-to-end check: one pair, a
generated data set of 20 + 10 images per class, 1 epoch per model, a 512x512 matmul.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"

MODEL_NAMES = ("model_one", "model_two", "model_three", "model_four")
QUICK_EPOCHS = {"model_one": 2, "model_two": 2, "model_three": 2, "model_four": 1}
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"
IMAGE_SIZE = 160
BATCH_SIZE = 32
SEED = 0
TIME_BIN = Path("/usr/bin/time")
SAMPLE_SECONDS = 0.2
TARGET_RATIO = 0.8
TARGET_MODEL_ONE_PEAK = 0.60
TARGET_WARM_SECONDS = 5.0
CHANGED_EPOCHS = ("model_three", 3)

PAGE_RE = re.compile(r"^\s*\[(\d+)/(\d+)\] ([\w.-]+): (executing|cached|executed in)", re.M)
TRAIN_RE = re.compile(r"training (model_\w+):")
LOADED_RE = re.compile(r"(model_\w+): loaded from the run cache")
MODULES_RE = re.compile(r"^BENCH-MODULES (\{.*\})$", re.M)
MAXRSS_RE = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")

T0 = time.perf_counter()


def say(message: str) -> None:
    """A progress line with the elapsed benchmark time."""
    elapsed = time.perf_counter() - T0
    print(f"[bench {int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {message}", flush=True)


# ----------------------------------------------------------------------------- inputs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="cats_and_dogs_filtered folder (default "
                   "CATDOG_DATA_DIR, else ../shared/data/cats_and_dogs_filtered; synthetic "
                   "images when neither holds the data)")
    p.add_argument("--weights", type=Path, help="MobileNetV2 no-top .h5 (default CATDOG_WEIGHTS, "
                   "else ../shared/weights/*.h5, else Keras's cache)")
    p.add_argument("--pairs", type=int, default=3, help="cold build / plain script pairs")
    p.add_argument("--smoke", action="store_true", help="tiny end-to-end check (a few minutes)")
    p.add_argument("--work-dir", type=Path, help="where the temp folders go (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (logs, caches)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results.json, "
                   "bench/results-smoke.json with --smoke)")
    args = p.parse_args(argv)
    if args.smoke:
        args.pairs = 1
    if args.pairs < 1:
        p.error("--pairs must be at least 1")
    if args.out is None:
        args.out = BENCH / ("results-smoke.json" if args.smoke else "results.json")
    return args


def find_data(args: argparse.Namespace, work: Path) -> tuple[Path, str]:
    """The data folder and how it was found; synthetic images when no real data is there."""
    from catdog_report import synthetic

    if args.smoke:
        root = synthetic.generate(work / "data-smoke", train_per_class=20,
                                  validation_per_class=10, size=IMAGE_SIZE, seed=0)
        return root, "synthetic (smoke: catdog_report.synthetic, 20 + 10 images per class)"
    given = args.data_dir or (Path(os.environ["CATDOG_DATA_DIR"])
                              if os.environ.get("CATDOG_DATA_DIR") else None)
    candidate = given or REPO.parent / "shared" / "data" / "cats_and_dogs_filtered"
    candidate = candidate.expanduser()
    if not (candidate / "train").is_dir() and (candidate / "cats_and_dogs_filtered").is_dir():
        candidate = candidate / "cats_and_dogs_filtered"
    if (candidate / "train").is_dir() and (candidate / "validation").is_dir():
        return candidate.resolve(), f"real photos from {candidate.resolve()}"
    if args.data_dir is not None:
        sys.exit(f"bench: --data-dir {args.data_dir} holds no train/ and validation/")
    say(f"NO REAL DATA at {candidate}: generating the synthetic set (150 + 75 per class); "
        "the numbers below are for SYNTHETIC images")
    root = synthetic.generate(work / "data-synthetic", train_per_class=150,
                              validation_per_class=75, size=IMAGE_SIZE, seed=0)
    return root, f"SYNTHETIC (no real data at {candidate}; catdog_report.synthetic, 150 + 75)"


def find_weights(args: argparse.Namespace) -> Path:
    """The MobileNetV2 weights file model four starts from."""
    candidates: list[Path] = []
    if args.weights:
        candidates.append(args.weights)
    elif os.environ.get("CATDOG_WEIGHTS"):
        candidates.append(Path(os.environ["CATDOG_WEIGHTS"]))
    else:
        candidates += sorted((REPO.parent / "shared" / "weights").glob("*.h5"))
        home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
        candidates.append(home / "models" / WEIGHTS_FILE)
    for path in candidates:
        if path.expanduser().is_file():
            return path.expanduser().resolve()
    sys.exit(f"bench: no MobileNetV2 weights file found (looked at {[str(c) for c in candidates]});"
             f" pass --weights PATH to a local {WEIGHTS_FILE}")


def split_files(root: Path, work: Path) -> tuple[Any, Path]:
    """The quick profile's exact splits, and a folder of symlinks to them for the plain script."""
    from catdog_report import data
    from catdog_report.config import Settings

    settings = Settings(profile="quick", project_dir=work, data_dir=root,
                        cache_dir=work / "scan-cache", seed=SEED, image_size=IMAGE_SIZE,
                        batch_size=BATCH_SIZE)
    dataset = data.scan(settings, root, "bench")
    links = work / "plain-data"
    for split in dataset.splits.values():
        for rel, label in zip(split.files, split.labels, strict=True):
            folder = links / split.name / dataset.class_names[label]
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / Path(rel).name
            if target.exists():  # same file name in two source folders: keep both
                target = folder / rel.replace("/", "__")
            target.symlink_to(root / rel)
    return dataset, links


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory and load."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    return {"cpu": cpu, "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "memory_gb": mem_gb, "platform": platform.platform(),
            "python": platform.python_version(), "loadavg_start": os.getloadavg()}


def library_digest() -> str:
    """A hash of catdog_report's source: pages re-execute when it changes mid-benchmark."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted((REPO / "src" / "catdog_report").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- running


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
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=err, env=child_env(), cwd=REPO)
        sampler = TreeSampler(proc.pid)
        sampler.start()
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
    return result | {"_stderr": stderr}


def parse_build_log(text: str) -> dict[str, Any]:
    """Which pages executed or came from the page cache, which models trained, what imported."""
    executed, cached = [], []
    for _, _, name, how in PAGE_RE.findall(text):
        if how == "executing":
            executed.append(name)
        elif how == "cached":
            cached.append(name)
    modules = MODULES_RE.findall(text)
    return {"pages_executed": executed, "pages_cached": cached,
            "models_trained": sorted(set(TRAIN_RE.findall(text)), key=MODEL_NAMES.index),
            "models_loaded": sorted(set(LOADED_RE.findall(text)), key=MODEL_NAMES.index),
            "build_process_modules": json.loads(modules[-1]) if modules else None}


def catdog_cmd(data_root: Path, weights: Path, cache: Path, project: Path,
               epochs: dict[str, int]) -> list[str]:
    """`catdog-report build --profile quick ...` (through bench/run_build.py)."""
    cmd = [sys.executable, str(BENCH / "run_build.py"), "build", "--profile", "quick",
           "--data-dir", str(data_root), "--weights", str(weights), "--cache-dir", str(cache),
           "--project", str(project), "--image-size", str(IMAGE_SIZE),
           "--batch-size", str(BATCH_SIZE), "--seed", str(SEED)]
    if epochs:
        cmd += ["--epochs", *(f"{k}={v}" for k, v in epochs.items())]
    return cmd


def fresh_project(dest: Path) -> Path:
    """A copy of the repo's content/ and mkdocs.yml: nothing built, no site."""
    dest.mkdir(parents=True)
    shutil.copytree(REPO / "content", dest / "content",
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy2(REPO / "mkdocs.yml", dest / "mkdocs.yml")
    return dest


def read_records(cache: Path) -> list[dict[str, Any]]:
    """The run records a build wrote into its run cache."""
    out = []
    for path in sorted((cache / "runs" / "entries").glob("*/record.json")):
        rec = json.loads(path.read_text())
        out.append({k: rec.get(k) for k in ("model", "epochs", "train_seconds", "epoch_seconds",
                                            "images", "batch_size", "image_size", "test")})
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
    """Matmul peak and FLOPs per model, in a separate process."""
    cmd = [sys.executable, str(BENCH / "probe.py"), "--image-size", str(IMAGE_SIZE)]
    cmd += ["--matmul-n", "512", "--min-seconds", "0.5"] if smoke else ["--matmul-n", "4096"]
    result = run_measured("probe", cmd, logs)
    if result["rc"] != 0:
        raise RuntimeError("bench/probe.py failed:\n" + "\n".join(result["stderr_tail"]))
    last = Path(result["stdout_log"]).read_text().strip().splitlines()[-1]
    probe = json.loads(last) | {"wall_s": result["wall_s"]}
    probe["train_step"] = []
    for name, variant in itertools.product(MODEL_NAMES, ("default", "xla", "intra2-inter1")):
        r = run_measured(f"probe {name} {variant}", [  # TF threads are set per process
            sys.executable, str(BENCH / "probe.py"), "--image-size", str(IMAGE_SIZE),
            "--batch-size", str(BATCH_SIZE), "--train-step", variant, "--model", name], logs)
        if r["rc"] != 0:
            raise RuntimeError("bench/probe.py failed:\n" + "\n".join(r["stderr_tail"]))
        line = Path(r["stdout_log"]).read_text().strip().splitlines()[-1]
        probe["train_step"].append(json.loads(line))
    return probe


# ----------------------------------------------------------------------------- numbers


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def throughput(flops: dict[str, Any], rec: dict[str, Any], train_seconds: float,
               epochs: int) -> float:
    """Achieved GFLOP/s of one training run: train images at 3x/1x, validation at 1x."""
    per_epoch = (rec["images"]["train"] * flops["train_step"]
                 + rec["images"]["validation"] * flops["forward"])
    return epochs * per_epoch / train_seconds / 1e9


def summarise_throughput(probe: dict[str, Any], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: FLOPs, median achieved GFLOP/s (catdog and plain) and fraction of peak."""
    peak = probe["matmul"]["gflops_best"]
    out: dict[str, Any] = {}
    for name in MODEL_NAMES:
        f = probe["flops"][name]
        catdog, best_epoch, plain, secs, plain_secs = [], [], [], [], []
        images = epochs = None
        for pair in pairs:
            rec = next((r for r in pair["records"] if r["model"] == name), None)
            if rec is None:
                continue
            images, epochs = rec["images"], rec["epochs"]
            secs.append(rec["train_seconds"])
            catdog.append(throughput(f, rec, rec["train_seconds"], rec["epochs"]))
            if rec.get("epoch_seconds"):
                best_epoch.append(throughput(f, rec, min(rec["epoch_seconds"]), 1))
            prun = next((r for r in pair["plain_runs"] if r["model"] == name), None)
            if prun is not None:
                plain_secs.append(prun["train_seconds"])
                plain.append(throughput(f, rec, prun["train_seconds"], prun["epochs"]))
        gf = median(catdog)
        out[name] = {
            "forward_gflop_per_image": round(f["forward"] / 1e9, 4),
            "forward_trainable_gflop": round(f["forward_trainable"] / 1e9, 4),
            "forward_frozen_gflop": round(f["forward_frozen"] / 1e9, 4),
            "train_step_gflop_per_image": round(f["train_step"] / 1e9, 4),
            "images": images, "epochs": epochs,
            "catdog_train_seconds_median": median(secs),
            "catdog_gflops_median": gf,
            "catdog_fraction_of_peak": round(gf / peak, 4) if gf else None,
            "catdog_best_epoch_gflops_median": median(best_epoch),
            "plain_train_seconds_median": median(plain_secs),
            "plain_gflops_median": median(plain),
            "plain_fraction_of_peak": round(median(plain) / peak, 4) if plain else None,
        }
    return out


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def pages_text(executed: list[str], total: int) -> str:
    """'none', the page names, or 'all N' when every page ran."""
    if not executed:
        return "none"
    if len(executed) == total:
        return f"all {total}"
    return ", ".join(executed)


def report(res: dict[str, Any]) -> str:
    """The plain-text table."""
    m, probe = res["machine"], res["probe"]
    load_start = ", ".join(f"{x:.2f}" for x in m["loadavg_start"])
    load_end = ", ".join(f"{x:.2f}" for x in m.get("loadavg_end", ()))
    lines = [
        "",
        f"catdog-report benchmark ({res['mode']}), {res['started']}",
        f"machine: {m['cpu']}; {m['cores']} cores ({m['cores_usable']} usable), "
        f"{m['memory_gb']} GB; load average at start {load_start}, at end {load_end}",
        f"software: Python {probe['python']}, TensorFlow {probe['tensorflow']}, Keras "
        f"{probe['keras']}; TF threads intra {probe['intra_op_threads']} / inter "
        f"{probe['inter_op_threads']} (0 = TF default)",
        f"data: {res['data']['source']}; train {res['data']['train']}, validation "
        f"{res['data']['validation']}, test {res['data']['test']} images",
        f"weights: {res['weights']}",
        f"epochs (one, two, three, four): {', '.join(str(v) for v in res['epochs'].values())}; "
        f"image size {IMAGE_SIZE}, batch {BATCH_SIZE}",
        "",
        "1. Cold build (empty caches, fresh project copy) vs plain script",
        f"   {'pair':<5}{'order':<16}{'plain s':>9}{'catdog s':>10}{'ratio':>8}",
    ]
    for i, pair in enumerate(res["pairs"], 1):
        lines.append(f"   {i:<5}{pair['order']:<16}{pair['plain']['wall_s']:>9.1f}"
                     f"{pair['catdog']['wall_s']:>10.1f}{pair['ratio']:>7.2f}x")
    cold = res["cold"]
    lines += [
        f"   {'median':<21}{cold['plain_wall_median']:>9.1f}{cold['catdog_wall_median']:>10.1f}"
        f"{cold['ratio_median']:>7.2f}x   target <= {TARGET_RATIO}x: "
        f"{verdict(cold['ratio_median'] <= TARGET_RATIO)}",
        f"   the plain script's figures took {cold['plain_figures_seconds_median']:.1f} s "
        f"(median); without them the ratio is {cold['ratio_without_plain_figures_median']:.2f}x",
        f"   cold build pages executed: {cold['pages_executed']}; models trained: "
        f"{cold['models_trained']}",
        "",
        f"2. Machine peak: fp32 tf.linalg.matmul {probe['matmul']['n']}x{probe['matmul']['n']}, "
        f"{probe['matmul']['repeats']} timed after 2 warm-up: best "
        f"{probe['matmul']['gflops_best']:.1f} GFLOP/s, median "
        f"{probe['matmul']['gflops_median']:.1f} GFLOP/s (2*n^3 FLOP each)",
        "",
        "3. Training throughput (fit incl. validation, from the cold builds' run records)",
        "   convention: FLOPs of Conv2D/DepthwiseConv2D/Dense only (2 per multiply-add; bias,",
        "   BN, pooling, activations, augmentation ignored); a training image costs 3x forward",
        "   for trainable layers, 1x for frozen ones (model four's MobileNetV2 base); a",
        "   validation image 1x forward. GFLOP/s = epochs * FLOPs per epoch / train_seconds;",
        "   % = of the matmul best. 'best ep' uses the fastest single epoch (no tracing).",
        f"   {'model':<12}{'fwd GF/img':>11}{'train GF/img':>13}{'ep':>3}{'train s':>9}"
        f"{'GFLOP/s':>9}{'% peak':>8}{'best ep':>9}{'plain s':>9}{'plain GF/s':>11}",
    ]
    for name, t in res["throughput"].items():
        frac = t["catdog_fraction_of_peak"]
        lines.append(
            f"   {name:<12}{t['forward_gflop_per_image']:>11.3f}"
            f"{t['train_step_gflop_per_image']:>13.3f}{t['epochs'] or 0:>3}"
            f"{t['catdog_train_seconds_median'] or 0:>9.1f}{t['catdog_gflops_median'] or 0:>9.1f}"
            f"{(frac or 0) * 100:>7.1f}%{t['catdog_best_epoch_gflops_median'] or 0:>9.1f}"
            f"{t['plain_train_seconds_median'] or 0:>9.1f}{t['plain_gflops_median'] or 0:>11.1f}")
    one = res["throughput"]["model_one"]["catdog_fraction_of_peak"]
    lines.append(f"   target model one >= {TARGET_MODEL_ONE_PEAK:.0%} of peak: "
                 f"{verdict(None if one is None else one >= TARGET_MODEL_ONE_PEAK)}")
    peak = probe["matmul"]["gflops_best"]
    variants = list(dict.fromkeys(v["variant"] for v in probe.get("train_step", [])))
    lines += ["   steady training step per model (train_on_batch, batch "
              f"{BATCH_SIZE}, best of 10; one process per setting): ms, GFLOP/s, % of peak",
              "   xla = jit_compile=True; intra2-inter1 = TF threads intra 2 / inter 1",
              "     " + f"{'model':<13}" + "".join(f"{v:>27}" for v in variants)]
    for name in MODEL_NAMES:
        cells = []
        for v in variants:
            r = next((x for x in probe.get("train_step", []) if x.get("model", "model_one")
                      == name and x["variant"] == v), None)
            cells.append(f"{r['step_seconds'] * 1e3:>9.1f} {r['gflops']:>7.1f} "
                         f"{r['gflops'] / peak:>7.1%}  " if r else f"{'–':>27}")
        lines.append(f"     {name:<13}" + "".join(f"{c:>27}" for c in cells))
    lines += ["   where model one's step goes (each stage alone, forward+backward+Adam):"]
    for st in probe.get("model_one_stages", []):
        rate = f"{st['gflops']:6.1f} GFLOP/s" if st["gflops"] else "no counted FLOPs"
        lines.append(f"     {st['stage']:<30}{st['step_ms']:7.1f} ms  {rate}")
    lines += ["", "4. Rebuilds on the last pair's warm cache",
              f"   {'step':<24}{'wall s':>8}  {'pages executed':<46}{'models trained':<16}"
              f"{'TF in build':<12}{'kernels':>7}"]
    for key, title in (("warm", "warm (nothing changed)"), ("prose", "prose edit model-two.md"),
                       ("epochs", f"--epochs {CHANGED_EPOCHS[0]}={CHANGED_EPOCHS[1]}")):
        r = res["rebuilds"][key]
        mods = r["build_process_modules"] or {}
        pages = pages_text(r["pages_executed"], len(r["pages_executed"]) + len(r["pages_cached"]))
        lines.append(f"   {title:<24}{r['wall_s']:>8.1f}  {pages:<46}"
                     f"{', '.join(r['models_trained']) or 'none':<16}"
                     f"{'yes' if mods.get('tensorflow') else 'no':<12}{r['kernels_started']:>7}")
    rb = res["rebuilds"]
    n_pages = len(rb["epochs"]["pages_executed"]) + len(rb["epochs"]["pages_cached"])
    lines += [
        f"   warm wall target <= {TARGET_WARM_SECONDS:.0f} s: "
        f"{verdict(rb['warm']['wall_s'] <= TARGET_WARM_SECONDS)}; no kernel started: "
        f"{verdict(rb['warm']['kernels_started'] == 0)}",
        f"   prose edit ({rb['prose']['edit']}): model-two alone re-executed: "
        f"{verdict(rb['prose']['pages_executed'] == ['model-two'])}",
        f"   {CHANGED_EPOCHS[0]} alone retrained: "
        f"{verdict(rb['epochs']['models_trained'] == [CHANGED_EPOCHS[0]])}; pages re-executed: "
        f"{len(rb['epochs']['pages_executed'])} of {n_pages}",
        "",
        "5. Peak memory: process tree total RSS (psutil, every 0.2 s) / largest single process",
        "   max RSS (/usr/bin/time -v; includes reaped kernels)",
        f"   {'run':<28}{'tree MB':>9}{'largest MB':>12}{'procs':>7}",
    ]
    for r in res["memory"]:
        lines.append(f"   {r['label']:<28}{mb(r['peak_tree_rss_mb']):>9}"
                     f"{mb(r['largest_process_maxrss_mb']):>12}{r['peak_processes']:>7}")
    lines += [f"WARNING: {w}" for w in res.get("warnings", [])]
    lines += ["", f"total benchmark time {res['bench_seconds'] / 60:.1f} min; "
              f"results in {res['out']}", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="catdog-bench-", dir=args.work_dir))
    logs = work / "logs"
    epochs = {m: 1 for m in MODEL_NAMES} if args.smoke else dict(QUICK_EPOCHS)
    overrides = dict(epochs) if args.smoke else {}  # full: the quick profile's own epochs
    est = (args.pairs * (90 + 60) + 40 + 5 + 30 + 120) / 60
    say(f"mode {'smoke' if args.smoke else 'full'}, {args.pairs} pair(s); work folder {work}")
    if args.smoke:
        say("time budget: a few minutes (tiny data, 1 epoch per model, 512x512 matmul)")
    else:
        say(f"time budget on 2 idle cores: ~{est:.0f} min ({args.pairs} x (~90 s cold build + "
            "~60 s plain script), ~40 s peak/FLOPs, ~3 min of rebuilds)")
    try:
        import psutil

        psutil_note = f"psutil {psutil.__version__}"
    except ImportError:
        psutil_note = "psutil missing: no tree RSS sampling"
    say(f"memory: {psutil_note}; /usr/bin/time {'found' if TIME_BIN.is_file() else 'missing'}")

    res: dict[str, Any] = {"mode": "smoke" if args.smoke else "full",
                           "started": datetime.now(UTC).isoformat(timespec="seconds"),
                           "machine": machine_info(), "out": str(args.out), "epochs": epochs,
                           "memory_tools": {"psutil": psutil_note,
                                            "time_v": TIME_BIN.is_file()},
                           "library_digest_start": library_digest()}
    try:
        data_root, source = find_data(args, work)
        weights = find_weights(args)
        dataset, links = split_files(data_root, work)
        res["data"] = {"source": source, "root": str(data_root), "manifest": dataset.manifest,
                       **{s: len(v) for s, v in dataset.splits.items()}}
        res["weights"] = str(weights)
        say(f"data: {source}; train {len(dataset.train)}, validation "
            f"{len(dataset.validation)}, test {len(dataset.test)}; weights {weights.name}")

        say("probe: matmul peak and FLOPs per model")
        res["probe"] = run_probe(args.smoke, logs)
        say(f"probe: matmul best {res['probe']['matmul']['gflops_best']:.1f} GFLOP/s "
            f"({res['probe']['wall_s']:.0f} s)")

        plain_cmd = [sys.executable, str(BENCH / "plain_walkthrough.py"), "--data", str(links),
                     "--weights", str(weights), "--epochs", json.dumps(epochs),
                     "--classes", ",".join(dataset.class_names), "--image-size", str(IMAGE_SIZE),
                     "--batch-size", str(BATCH_SIZE), "--seed", str(SEED)]
        pairs: list[dict[str, Any]] = []
        memory: list[dict[str, Any]] = []
        res["pairs"], res["memory"] = pairs, memory
        for i in range(args.pairs):
            order = ("plain", "catdog") if i % 2 == 0 else ("catdog", "plain")
            pair: dict[str, Any] = {"order": " then ".join(order)}
            cache, project = work / f"cache-{i + 1}", work / f"project-{i + 1}"
            for kind in order:
                label = f"pair {i + 1} {kind}"
                say(f"{label}: running")
                if kind == "plain":
                    out = work / f"plain-{i + 1}.json"
                    r = run_measured(label, [*plain_cmd, "--out", str(out), "--figures",
                                             str(work / f"plain-figures-{i + 1}")], logs)
                    if r["rc"] != 0:
                        raise RuntimeError("plain script failed:\n" + "\n".join(r["stderr_tail"]))
                    plain = json.loads(out.read_text())
                    pair["plain_runs"] = plain["runs"]
                    pair["plain_import_seconds"] = plain["import_seconds"]
                    pair["plain_figures_seconds"] = plain["figures_seconds"]
                else:
                    fresh_project(project)
                    cache.mkdir()
                    r = run_measured(label, catdog_cmd(data_root, weights, cache, project,
                                                       overrides), logs)
                    if r["rc"] != 0:
                        raise RuntimeError("catdog-report build failed:\n"
                                           + "\n".join(r["stderr_tail"]))
                    r |= parse_build_log(r["_stderr"])
                    pair["records"] = read_records(cache)
                pair[kind] = strip(r)
                memory.append(strip(r))
                say(f"{label}: {r['wall_s']:.1f} s")
            pair["ratio"] = round(pair["catdog"]["wall_s"] / pair["plain"]["wall_s"], 3)
            fit_only = pair["plain"]["wall_s"] - pair["plain_figures_seconds"]
            pair["ratio_without_plain_figures"] = round(pair["catdog"]["wall_s"] / fit_only, 3)
            pairs.append(pair)
            say(f"pair {i + 1}: ratio catdog/plain {pair['ratio']:.2f}x")
            if i + 1 < args.pairs:  # keep only the last pair's cache for the rebuilds
                shutil.rmtree(cache, ignore_errors=True)
                shutil.rmtree(project, ignore_errors=True)
        last = pairs[-1]["catdog"]
        res["cold"] = {
            "ratios": [p["ratio"] for p in pairs],
            "ratio_median": median([p["ratio"] for p in pairs]),
            "ratio_without_plain_figures_median": median(
                [p["ratio_without_plain_figures"] for p in pairs]),
            "plain_figures_seconds_median": median([p["plain_figures_seconds"] for p in pairs]),
            "plain_wall_median": median([p["plain"]["wall_s"] for p in pairs]),
            "catdog_wall_median": median([p["catdog"]["wall_s"] for p in pairs]),
            "pages_executed": len(last["pages_executed"]),
            "models_trained": ", ".join(last["models_trained"]) or "none",
        }
        res["throughput"] = summarise_throughput(res["probe"], pairs)

        rebuilds: dict[str, Any] = {}
        res["rebuilds"] = rebuilds
        steps = [("warm", overrides, None),
                 ("prose", overrides, project / "content" / "model-two.md"),
                 ("epochs", {**overrides, CHANGED_EPOCHS[0]: CHANGED_EPOCHS[1]}, None)]
        if library_digest() != res["library_digest_start"]:
            res.setdefault("warnings", []).append(
                "src/catdog_report changed during the cold builds: the rebuilds below "
                "re-execute pages because of that edit, not because of the benchmark's")
        for key, over, edit in steps:
            label = f"rebuild {key}"
            note = edit_prose(edit) if edit else None
            say(f"{label}: running" + (f" after editing {edit.name}: {note}" if note else ""))
            r = run_measured(label, catdog_cmd(data_root, weights, cache, project, over), logs)
            if r["rc"] != 0:
                raise RuntimeError(f"{label} failed:\n" + "\n".join(r["stderr_tail"]))
            r |= parse_build_log(r["_stderr"])
            r["kernels_started"] = max(len(r["pages_executed"]), r["kernels_seen"])
            r["edit"] = note
            rebuilds[key] = strip(r)
            memory.append(strip(r))
            say(f"{label}: {r['wall_s']:.1f} s; pages executed: "
                f"{', '.join(r['pages_executed']) or 'none'}; models trained: "
                f"{', '.join(r['models_trained']) or 'none'}")
    except BaseException as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
        res["machine"]["loadavg_end"] = os.getloadavg()
        res["bench_seconds"] = round(time.perf_counter() - T0, 1)
        args.out.write_text(json.dumps(res, indent=1, default=str))
        say(f"FAILED ({res['error'].splitlines()[0]}); partial results in {args.out}; "
            f"logs kept in {logs}")
        raise
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["bench_seconds"] = round(time.perf_counter() - T0, 1)
    args.out.write_text(json.dumps(res, indent=1, default=str))
    print(report(res), flush=True)
    if args.keep:
        say(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
