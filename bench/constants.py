"""What every part of the benchmark shares: paths, the study's models and quick epochs (read
from study.yml through the package), the measured settings and the targets."""

from __future__ import annotations

import re
import time
from pathlib import Path

from catdog_report.config import Settings

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"

STUDY = Settings(profile="quick", project_dir=REPO).study
MODEL_NAMES = tuple(STUDY.models)
QUICK_EPOCHS = {m: STUDY.epochs(m, "quick") for m in MODEL_NAMES}
IMAGE_SIZE = 160
BATCH_SIZE = 32
SEED = 0
TIME_BIN = Path("/usr/bin/time")
SAMPLE_SECONDS = 0.2
TARGET_RATIO = 0.8
TARGET_MODEL_ONE_PEAK = 0.60
TARGET_WARM_SECONDS = 0.5
TARGET_PROSE_SECONDS = 2.0
CHANGED_EPOCHS = (MODEL_NAMES[min(2, len(MODEL_NAMES) - 1)], 3)  # the third model's epochs

PAGE_RE = re.compile(r"^\s*\[(\d+)/(\d+)\] ([\w.-]+): (executing|cached|executed in)", re.M)
TRAIN_RE = re.compile(r"^training (\w+):", re.M)
LOADED_RE = re.compile(r"^(\w+): loaded from the run cache", re.M)
MODULES_RE = re.compile(r"^BENCH-MODULES (\{.*\})$", re.M)
MAXRSS_RE = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")

T0 = time.perf_counter()


def say(message: str) -> None:
    """A progress line with the elapsed benchmark time."""
    elapsed = time.perf_counter() - T0
    print(f"[bench {int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {message}", flush=True)
