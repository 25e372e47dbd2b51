"""How often the comparison page would claim a difference between models that are equal by
construction: the page's own test (stats.pairwise_tests, photo-clustered and Holm-adjusted)
against the test it replaced (McNemar on discordant pairs pooled over seeds, unadjusted).

    python bench/false_claims.py [--builds N]

Each simulated build has 4 equally good models scored on 200 test photos. Every photo has its
own ease (Beta-distributed, mean 2/3), shared by every run of every model, so the runs agree on
a photo more often than chance: the correlation of two runs' correctness on a photo is rho.
With --run-spread S each run also gets its own skill (a shift of the log-odds, sd S): seeds then
differ as a whole, as real seeds do, which a test over photos cannot tell from a model effect.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence

import numpy as np

from catdog_report import stats

MODELS = ("A", "B", "C", "D")
PHOTOS = 200


def simulate_builds(builds: int, seeds: int, rho: float, rng_seed: int,
                    run_spread: float = 0.0) -> list[dict[str, list[list[bool]]]]:
    """Per build, model → per seed, per-photo correctness of equally good models."""
    rng = np.random.default_rng(rng_seed)
    total = 1.0 / rho - 1.0  # Beta(a, b) with a + b = 1/rho - 1 gives that correlation
    out = []
    for _ in range(builds):
        ease = np.clip(rng.beta(total * 2 / 3, total / 3, size=PHOTOS), 1e-9, 1 - 1e-9)
        logit = np.log(ease / (1 - ease))
        out.append({m: [list(rng.random(PHOTOS) < 1 / (1 + np.exp(
            -(logit + rng.normal(0.0, run_spread))))) for _ in range(seeds)] for m in MODELS})
    return out


def claims_difference(correct: Mapping[str, Sequence[Sequence[bool]]]) -> bool:
    """Whether the comparison page's sentences say one model is ahead of another."""
    tests = stats.pairwise_tests(correct)
    accuracy = {m: float(np.mean(c)) for m, c in correct.items()}
    said = stats.ranking_sentences(accuracy, stats.pvalue_matrix(tests), PHOTOS)
    return any("is ahead of" in s for s in said)


def pooled_claims_difference(correct: Mapping[str, Sequence[Sequence[bool]]]) -> bool:
    """The page before: any pair with pooled-over-seeds McNemar p < 0.05, unadjusted."""
    names = list(correct)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            counts = [stats.paired_counts(x, y)
                      for x, y in zip(correct[a], correct[b], strict=True)]
            if stats.mcnemar_exact(sum(c[0] for c in counts), sum(c[1] for c in counts)) < 0.05:
                return True
    return False


def rates(builds: int, seeds: int, rho: float, run_spread: float = 0.0,
          rng_seed: int = 19) -> tuple[float, float]:
    """(before, after): the share of simulated builds with at least one false claim."""
    sims = simulate_builds(builds, seeds, rho, rng_seed, run_spread)
    return (sum(map(pooled_claims_difference, sims)) / builds,
            sum(map(claims_difference, sims)) / builds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--builds", type=int, default=2000)
    args = p.parse_args()
    print(f"{args.builds} simulated builds each; 4 equal models, 6 pairs, 200 photos; a build "
          "counts when any sentence says a model is ahead of another")
    print("| seeds | rho | run spread | before (pooled McNemar, unadjusted) | after (clustered,"
          " Holm) |")
    print("|--:|--:|--:|--:|--:|")
    for seeds, rho, spread in ((1, 0.25, 0.0), (3, 0.25, 0.0), (3, 0.4, 0.0), (3, 0.57, 0.0),
                               (3, 0.25, 0.3)):
        before, after = rates(args.builds, seeds, rho, spread)
        se = math.sqrt(max(after * (1 - after), 1e-9) / args.builds)
        print(f"| {seeds} | {rho} | {spread} | {before:.1%} | {after:.1%} (± {1.96 * se:.1%}) |")


if __name__ == "__main__":
    main()
