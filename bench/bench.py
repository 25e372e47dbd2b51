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
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench's own modules

from budget import (  # noqa: E402
    BF16_FLAGS,
    BUDGET_MINUTES,
    PROBE_SECONDS,
    REBUILD_SECONDS,
    SECTIONS,
    Budget,
    bf16_factor,
    bf16_hardware,
    fit_seconds,
    pair_seconds,
)
from constants import (  # noqa: E402
    BATCH_SIZE,
    BENCH,
    CHANGED_EPOCHS,
    IMAGE_SIZE,
    MODEL_NAMES,
    QUICK_EPOCHS,
    REPO,
    SEED,
    STUDY,
    T0,
    TIME_BIN,
    say,
)
from harness import (  # noqa: E402
    catdog_cmd,
    edit_prose,
    fresh_project,
    parse_build_log,
    read_records,
    run_measured,
    run_probe,
    timeline,
)
from numbers_ import (  # noqa: E402
    median,
    report,
    report_full,
    summarise_precision,
    summarise_throughput,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="cats_and_dogs_filtered folder (default "
                   "CATDOG_DATA_DIR, else ../shared/data/cats_and_dogs_filtered; synthetic "
                   "images when neither holds the data)")
    p.add_argument("--weights", type=Path, help="MobileNetV2 no-top .h5 (default CATDOG_WEIGHTS, "
                   "else ../shared/weights/*.h5, else Keras's cache)")
    p.add_argument("--pairs", type=int, help="cold build / plain script pairs (default 3 on "
                   "the quick profile, 1 on the full one)")
    p.add_argument("--profile", choices=("quick", "full"), default="quick",
                   help="full: one cold pair on the full profile only (about an hour on 2 "
                   "cores: no probe, rebuilds, precision or parallel runs)")
    p.add_argument("--smoke", action="store_true", help="tiny end-to-end check (a few minutes)")
    p.add_argument("--budget", type=float, default=BUDGET_MINUTES,
                   help="minutes the benchmark may take (default %(default)s): it says its plan "
                   "up front, and a section that would run past the budget is shortened or "
                   "skipped, and reported as such")
    p.add_argument("--only", help="comma-separated sections to run (of "
                   f"{', '.join(SECTIONS)}); cold is always run")
    p.add_argument("--precision-seeds", type=int, default=3,
                   help="seeds per model for the float32 vs bf16 accuracy comparison")
    p.add_argument("--no-precision", action="store_true", help="skip the bf16 comparison")
    p.add_argument("--bf16-emulated", action="store_true",
                   help="compare float32 with bf16 on hardware without bf16 arithmetic too")
    p.add_argument("--no-parallel", action="store_true",
                   help="skip the one-by-one vs worker processes comparison")
    p.add_argument("--work-dir", type=Path, help="where the temp folders go (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder (logs, caches)")
    p.add_argument("--out", type=Path, help="results JSON (default bench/results.json, "
                   "bench/results-smoke.json with --smoke)")
    args = p.parse_args(argv)
    if args.pairs is None:
        args.pairs = 3 if args.profile == "quick" else 1
    if args.smoke:
        args.pairs = 1
        args.profile = "quick"
    if args.pairs < 1:
        p.error("--pairs must be at least 1")
    only = set((args.only or ",".join(SECTIONS)).split(",")) | {"cold"}
    if only - set(SECTIONS):
        p.error(f"--only: unknown section(s) {', '.join(sorted(only - set(SECTIONS)))}; "
                f"choose among {', '.join(SECTIONS)}")
    if args.profile == "full":
        only = {"cold"}
    args.sections = only
    if args.out is None:
        args.out = BENCH / ("results-smoke.json" if args.smoke else "results.json")
    return args


def find_data(args: argparse.Namespace, work: Path) -> tuple[Path, str]:
    """The data folder and how it was found (the package's own lookup: --data-dir,
    CATDOG_DATA_DIR, Keras's cache; then ../shared); synthetic images when none holds it."""
    from catdog_report import data, demo_data, environment
    from catdog_report.errors import DataError

    if args.smoke:
        root = demo_data.generate(work / "data-smoke", demo_data.drawer(STUDY),
                                  train_per_class=20, validation_per_class=10, size=IMAGE_SIZE,
                                  seed=0)
        return root, (f"synthetic (smoke: {STUDY.data.generator}, 20 + 10 images per "
                      "class)")
    shared = REPO.parent / "shared" / "data"
    candidate = args.data_dir or (None if environment.read().data_dir else shared)
    try:
        root, how = data.locate(candidate, STUDY.data, download=False)
        if (root / "train").is_dir() and (root / "validation").is_dir():
            return root.resolve(), f"real photos from {root.resolve()} ({how})"
    except DataError as exc:
        if args.data_dir is not None:
            sys.exit(f"bench: {exc}")
    if args.data_dir is not None:
        sys.exit(f"bench: --data-dir {args.data_dir} holds no train/ and validation/")
    say(f"NO REAL DATA at {candidate}: generating the synthetic set (150 + 75 per class); "
        "the numbers below are for SYNTHETIC images")
    root = demo_data.generate(work / "data-synthetic", demo_data.drawer(STUDY),
                              train_per_class=150, validation_per_class=75, size=IMAGE_SIZE,
                              seed=0)
    return root, (f"SYNTHETIC (no real data at {candidate}; {STUDY.data.generator}, "
                  "150 + 75)")


def find_weights(args: argparse.Namespace) -> Path:
    """The base weights file (the package's own resolution: --weights, CATDOG_WEIGHTS,
    Keras's cache; then ../shared/weights)."""
    from catdog_report import environment, weights
    from catdog_report.config import Settings

    name = weights.file_name("mobilenet_v2", IMAGE_SIZE)
    shared = sorted((REPO.parent / "shared" / "weights").glob("*.h5"))
    given = args.weights or (None if environment.read().weights else
                             (shared[0] if shared else None))
    settings = Settings(profile="quick", project_dir=REPO, weights=given, image_size=IMAGE_SIZE)
    path, how = weights.resolve(settings)
    if path == "imagenet":
        path = str(Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / name)
    if path is None or not Path(path).is_file():
        sys.exit(f"bench: no MobileNetV2 weights file found ({how}); pass --weights PATH to a "
                 f"local {name}")
    return Path(path).resolve()


def split_files(root: Path, work: Path, profile: str = "quick") -> tuple[Any, Path]:
    """The profile's exact splits, and a folder of symlinks to them for the plain script."""
    from catdog_report import data
    from catdog_report.config import Settings

    settings = Settings(profile=profile, project_dir=work, study_file=REPO / "study.yml",
                        data_dir=root,
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


def precision_wanted(args: argparse.Namespace, res: dict[str, Any], budget: Budget) -> bool:
    """Whether to compare float32 with bf16: asked for, and bf16 done in hardware here
    (res["bf16_hardware"], found once at the start) or --bf16-emulated; where it is only
    emulated the skip is said and recorded."""
    if "precision" not in args.sections or args.no_precision:
        return False
    if res["bf16_hardware"] or args.bf16_emulated:
        return True
    why = (f"precision: skipped, this machine has no bf16 arithmetic ({' or '.join(BF16_FLAGS)}"
           f" CPU flags, or a GPU): bf16 is emulated, a training step "
           f"{bf16_factor(res.get('probe')):.1f}x float32's (--bf16-emulated to measure it)")
    budget.skipped.append(why)
    say(why)
    return False


def machine_info() -> dict[str, Any]:
    """CPU model (the package's stamp reads it), cores, memory and load."""
    from catdog_report.stamp import cpu_model

    cpu = cpu_model().rsplit(",", 1)[0]
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


def compile_bytecode() -> bool:
    """Compile the package's modules to bytecode, as pip does when it installs a package:
    an editable install under PYTHONDONTWRITEBYTECODE would otherwise compile every module
    on every build (about 0.1 s of a warm rebuild)."""
    import compileall

    import catdog_report

    return bool(compileall.compile_dir(Path(catdog_report.__file__).parent, quiet=1))


def library_digest() -> str:
    """A hash of catdog_report's source (the package's own): pages re-execute when it changes."""
    from catdog_report.build import library_digest as digest

    return digest()


def strip(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="catdog-bench-", dir=args.work_dir))
    logs = work / "logs"
    epochs = ({m: 1 for m in MODEL_NAMES} if args.smoke else dict(QUICK_EPOCHS)
              if args.profile == "quick" else {m: STUDY.epochs(m, "full") for m in MODEL_NAMES})
    full = args.profile == "full"
    overrides = dict(epochs) if args.smoke else {}  # full: the quick profile's own epochs
    budget = Budget(args.budget * 60, T0)
    say(f"mode {'smoke' if args.smoke else 'full'}, profile {args.profile}, {args.pairs} "
        f"pair(s); work folder {work}")
    bf16 = bf16_hardware()  # what does bf16 arithmetic here, or None
    say(budget.plan(args.sections, args.pairs, args.profile,
                    bf16=bool(bf16 or args.bf16_emulated)))
    try:
        import psutil

        psutil_note = f"psutil {psutil.__version__}"
    except ImportError:
        psutil_note = "psutil missing: no tree RSS sampling"
    say(f"memory: {psutil_note}; /usr/bin/time {'found' if TIME_BIN.is_file() else 'missing'}")
    bytecode = compile_bytecode()
    say("bytecode: the package's modules compiled, as pip does at install" if bytecode
        else "bytecode: the package's modules could not all be compiled; builds compile them")

    res: dict[str, Any] = {"mode": "smoke" if args.smoke else "full",
                           "started": datetime.now(UTC).isoformat(timespec="seconds"),
                           "machine": machine_info(), "out": str(args.out), "epochs": epochs,
                           "memory_tools": {"psutil": psutil_note,
                                            "time_v": TIME_BIN.is_file()},
                           "library_digest_start": library_digest(), "bf16_hardware": bf16,
                           "bytecode_compiled": bytecode}
    try:
        data_root, source = find_data(args, work)
        weights = find_weights(args)
        dataset, links = split_files(data_root, work, args.profile)
        res["data"] = {"source": source, "root": str(data_root), "manifest": dataset.manifest,
                       **{s: len(v) for s, v in dataset.splits.items()}}
        res["weights"] = str(weights)
        say(f"data: {source}; train {len(dataset.train)}, validation "
            f"{len(dataset.validation)}, test {len(dataset.test)}; weights {weights.name}")

        if "probe" in args.sections and budget.allows("probe", PROBE_SECONDS):
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
            if i and not budget.allows(f"cold pair {i + 1}", pair_seconds(pairs)):
                break
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
                                                       overrides, profile=args.profile), logs)
                    if r["rc"] != 0:
                        raise RuntimeError("catdog-report build failed:\n"
                                           + "\n".join(r["stderr_tail"]))
                    r |= parse_build_log(r["_stderr"])
                    r["timeline"] = timeline(r["_stamped"], r["wall_s"])
                    pair["records"] = read_records(cache)
                pair[kind] = strip(r)
                memory.append(strip(r))
                say(f"{label}: {r['wall_s']:.1f} s")
            pair["ratio"] = round(pair["catdog"]["wall_s"] / pair["plain"]["wall_s"], 3)
            fit_only = pair["plain"]["wall_s"] - pair["plain_figures_seconds"]
            pair["ratio_without_plain_figures"] = round(pair["catdog"]["wall_s"] / fit_only, 3)
            pairs.append(pair)
            say(f"pair {i + 1}: ratio catdog/plain {pair['ratio']:.2f}x")
            if i + 1 < args.pairs and budget.left() > pair_seconds(pairs) + REBUILD_SECONDS:
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
            "timeline": last["timeline"],  # the last pair's cold build
        }
        if res.get("probe"):
            res["throughput"] = summarise_throughput(res["probe"], pairs)
        rebuilds: dict[str, Any] = {}
        res["rebuilds"] = rebuilds
        rebuilding = "rebuilds" in args.sections and budget.allows("rebuilds", REBUILD_SECONDS)
        steps = [] if not rebuilding else [("warm", overrides, None),
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
        seeds = budget.seeds_for_precision(args.precision_seeds, pairs,
                                           bf16_factor(res.get("probe"))) \
            if precision_wanted(args, res, budget) else 0
        if seeds:
            args.precision_seeds = seeds
            res["precision_seeds"] = args.precision_seeds
            for precision in ("float32", "bf16"):
                label = f"precision {precision}"
                say(f"{label}: {args.precision_seeds} seeds per model on the last pair's cache")
                r = run_measured(label, catdog_cmd(
                    data_root, weights, cache, project, overrides, "--seeds",
                    str(args.precision_seeds), "--precision", precision), logs)
                if r["rc"] != 0:  # the models trained before a failing one are kept
                    res.setdefault("precision_errors", {})[precision] = r["stderr_tail"][-1]
                memory.append(strip(r))
                say(f"{label}: {r['wall_s']:.1f} s" + (f" (FAILED: {r['stderr_tail'][-1]})"
                                                       if r["rc"] else ""))
            res["precision"] = summarise_precision(read_records(cache), args.precision_seeds)
        if "parallel" in args.sections and not args.no_parallel and budget.allows(
                "parallel", 2 * fit_seconds(pairs) + 30):
            say("parallel: every model one by one, then in 2 worker processes (fresh caches)")
            r = run_measured("parallel", [sys.executable, str(BENCH / "parallel.py"),
                                          "--data-dir", str(data_root), "--weights",
                                          str(weights), "--work", str(work / "parallel"),
                                          "--image-size", str(IMAGE_SIZE)], logs)
            if r["rc"] != 0:
                raise RuntimeError("parallel failed:\n" + "\n".join(r["stderr_tail"]))
            res["parallel"] = json.loads(Path(r["stdout_log"]).read_text().splitlines()[-1])
            say(f"parallel: {res['parallel']}")
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
    res["budget"] = {"minutes": args.budget, "skipped": budget.skipped,
                     "within": res["bench_seconds"] <= args.budget * 60}
    args.out.write_text(json.dumps(res, indent=1, default=str))
    print(report(res) if not full else report_full(res), flush=True)
    if args.keep:
        say(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
