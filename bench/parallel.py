"""Independent training runs one by one against on a local Dask cluster (--workers N: local:N).

    python bench/parallel.py --data-dir D [--weights W] [--workers 2] [--epochs N] --work DIR

Trains the study's models at the quick profile's epochs (or N each) on the quick split,
once with one worker (one by one in this process, TensorFlow's default threads) and once
in N worker processes (each with the same threads: the cores are shared), each into a
fresh run cache; prints one JSON object: the wall time of each, whether the run keys are
the same, and how far the histories differ.
Run by bench.py in its own process.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any


def train_all(settings: Any, workers: int, work: Path) -> dict[str, Any]:
    """Every model of the study at the settings' seed, in `workers` processes."""
    from harness import fresh_project

    from catdog_report import data, execute, training, weights

    project = work / f"project-{workers}"
    shutil.rmtree(project, ignore_errors=True)
    fresh_project(project)  # no frozen/: every run trains
    settings = settings.replace(workers=workers, cache_dir=work / f"cache-{workers}",
                                project_dir=project, study_file=project / "study.yml")
    shutil.rmtree(settings.cache_root, ignore_errors=True)
    dataset = data.scan(settings, settings.data_dir, "bench")
    base, _ = weights.resolve(settings)
    specs = training.run_specs_for(settings, base, dict.fromkeys(settings.study.models,
                                                                 [settings.seed]))
    t0 = time.perf_counter()
    book = execute.train(settings, dataset, specs, base)
    seconds = time.perf_counter() - t0
    store = training.run_store(settings)
    histories = {run_id: training.load_run(store.path(entry["key"])).record["history"]
                 for run_id, entry in book.by_id.items()}
    return {"seconds": round(seconds, 2), "keys": {i: e["key"] for i, e in book.by_id.items()},
            "histories": histories}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--weights", type=Path)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--epochs", type=int, help="every model's epochs (default: the quick profile's)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from catdog_report.config import Settings

    repo = Path(__file__).resolve().parent.parent
    settings = Settings(profile="quick", project_dir=repo, study_file=repo / "study.yml",
                        data_dir=args.data_dir, weights=args.weights,
                        image_size=args.image_size)
    if args.epochs:
        settings = settings.replace(epochs=dict.fromkeys(settings.study.models, args.epochs))
    one = train_all(settings, 1, args.work)
    many = train_all(settings, args.workers, args.work)
    diffs = [abs(a - b) for i in one["histories"] for m in one["histories"][i]
             for a, b in zip(one["histories"][i][m], many["histories"][i][m], strict=True)]
    print(json.dumps({"runs": len(one["keys"]), "workers": args.workers,
                      "epochs": {m: settings.epochs_for(m) for m in settings.study.models},
                      "one_by_one_seconds": one["seconds"],
                      "workers_seconds": many["seconds"],
                      "speedup": round(one["seconds"] / many["seconds"], 3),
                      "same_keys": one["keys"] == many["keys"],
                      "same_histories": one["histories"] == many["histories"],
                      "max_history_difference": max(diffs) if diffs else 0.0}))


if __name__ == "__main__":
    main()
