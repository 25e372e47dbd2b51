"""The benchmark's time budget: its plan, said up front, and the sections that would end
past the budget shortened or skipped (each skip is said and kept in the results).

The estimates up front are for a slow 2-core machine (an AMD EPYC without AVX-512, loaded);
once the first cold pair has run, the budget uses what it measured there instead.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from constants import say

BUDGET_MINUTES = 30.0
SECTIONS = ("probe", "cold", "rebuilds", "precision", "parallel")
PROBE_SECONDS = 250  # matmul, FLOPs, one step process per thread setting and malloc (186-213 s
# measured with three step processes; the fourth, malloc, adds about 40 s)
PAIR_SECONDS = 170  # one quick cold build and one plain script, with their set-up
REBUILD_SECONDS = 120  # warm, prose edit, one model's epochs changed
FIT_SECONDS = 45  # every model's quick fit once
BF16_FACTOR = 2.0  # a bf16 fit against a float32 one before the probe measured it
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags of bf16 arithmetic in hardware
RESERVE_SECONDS = 60  # the report, the results file, the clean-up


def fit_seconds(pairs: list[dict[str, Any]]) -> float:
    """Seconds every model's fit takes here once (the cold builds' run records), or the
    estimate before any pair ran."""
    totals = [sum(r["train_seconds"] for r in p.get("records", [])) for p in pairs]
    return statistics.median(totals) if totals else FIT_SECONDS


def pair_seconds(pairs: list[dict[str, Any]]) -> float:
    """Seconds one cold pair takes here (the longest so far), or the estimate before."""
    walls = [p["plain"]["wall_s"] + p["catdog"]["wall_s"] + 5 for p in pairs
             if "plain" in p and "catdog" in p]
    return max(walls) if walls else PAIR_SECONDS


def precision_seconds(seeds: int, fit: float, bf16: float = BF16_FACTOR) -> float:
    """The float32 builds of seeds 1.. (seed 0 is in the cache) and the bf16 builds of every
    seed (bf16: a bf16 fit's time over a float32 one's), with their pages."""
    return (seeds - 1) * fit + seeds * fit * bf16 + 60


def bf16_factor(probe: dict[str, Any] | None) -> float:
    """A bf16 training step's time over a float32 one's, the median over the models the
    probe stepped both ways (BF16_FACTOR without a probe)."""
    steps: dict[tuple[str, str], float] = {
        (s["model"], s["variant"]): s["step_seconds"] for s in (probe or {}).get("train_step", [])
        if s.get("step_seconds")}
    ratios = [steps[m, "bf16"] / steps[m, "default"] for m, v in steps
              if v == "default" and (m, "bf16") in steps]
    return statistics.median(ratios) if ratios else BF16_FACTOR


def bf16_hardware(cpuinfo: Path = Path("/proc/cpuinfo"),
                  gpus: Path = Path("/proc/driver/nvidia/gpus")) -> str | None:
    """What does bf16 arithmetic here (a CPU flag of BF16_FLAGS, or an NVIDIA GPU), or None
    where bf16 is only emulated (then it is slower than float32, not faster)."""
    try:
        words = set(cpuinfo.read_text().split())
    except OSError:
        words = set()
    found = [flag for flag in BF16_FLAGS if flag in words]
    if found:
        return "CPU " + ", ".join(found)
    if gpus.is_dir() and any(gpus.iterdir()):
        return "an NVIDIA GPU"
    return None


class Budget:
    """What is left of the benchmark's time, and which sections fit in it."""

    def __init__(self, seconds: float, t0: float) -> None:
        self.seconds = seconds
        self.t0 = t0
        self.skipped: list[str] = []

    def left(self) -> float:
        """Seconds left before the budget ends (minus what the report needs)."""
        return self.seconds - (time.perf_counter() - self.t0) - RESERVE_SECONDS

    def allows(self, section: str, estimate: float) -> bool:
        """Whether a section estimated to take `estimate` seconds ends within the budget;
        if not, it is skipped, and that is said and recorded."""
        if estimate <= self.left():
            return True
        why = (f"{section}: skipped, it would take about {estimate / 60:.1f} min and "
               f"{max(self.left(), 0) / 60:.1f} min of the {self.seconds / 60:.0f}-minute "
               "budget are left (--budget MINUTES to allow it)")
        self.skipped.append(why)
        say(why)
        return False

    def seeds_for_precision(self, wanted: int, pairs: list[dict[str, Any]],
                            bf16: float = BF16_FACTOR) -> int:
        """The most seeds (up to wanted) the float32 vs bf16 comparison can train within
        the budget, keeping time for the parallel runs (bf16: a bf16 fit's time over a
        float32 one's, as the probe measured it); 0 (skipped, and said) when not one."""
        fit = fit_seconds(pairs)
        room = self.left() - (2 * fit + 30)
        seeds = next((k for k in range(wanted, 0, -1)
                      if precision_seconds(k, fit, bf16) <= room), 0)
        if seeds < wanted:
            why = (f"precision: {seeds} seed(s) per model instead of {wanted}, to end within "
                   f"the {self.seconds / 60:.0f}-minute budget" if seeds else
                   f"precision: skipped, even one seed (about "
                   f"{precision_seconds(1, fit, bf16) / 60:.1f} min) would end past the "
                   f"{self.seconds / 60:.0f}-minute budget")
            self.skipped.append(why)
            say(why)
        return seeds

    def plan(self, sections: Iterable[str], pairs: int, profile: str, bf16: bool = True) -> str:
        """The plan said up front: each section's estimate and the promise to end in time
        (bf16: whether float32 vs bf16 is measured here; precision_wanted says why not)."""
        chosen, unmeasured = set(sections), ""
        if not bf16 and "precision" in chosen:
            chosen.discard("precision")
            unmeasured = ", float32 vs bf16 skipped (no bf16 arithmetic here)"
        if profile == "full":
            return (f"plan: one cold pair on the full profile, about an hour on 2 cores; the "
                    f"{self.seconds / 60:.0f}-minute budget does not apply to it")
        parts = {"probe": ("probe", PROBE_SECONDS),
                 "cold": (f"{pairs} cold pair(s)", pairs * PAIR_SECONDS),
                 "rebuilds": ("rebuilds", REBUILD_SECONDS),
                 "precision": ("float32 vs bf16, 3 seeds", precision_seconds(3, FIT_SECONDS)),
                 "parallel": ("one by one vs 2 workers", 2 * FIT_SECONDS + 30)}
        shown = [(label, s) for key, (label, s) in parts.items() if key in chosen]
        total = sum(s for _, s in shown)
        return ("plan (estimates for a slow 2-core machine): "
                + ", ".join(f"{label} ~{s / 60:.1f} min" for label, s in shown) + unmeasured
                + f"; about {total / 60:.0f} min in all. It ends within "
                f"{self.seconds / 60:.0f} min (--budget): a section that would end later is "
                "shortened or skipped, and the report says which")
