"""Tests of the pure statistics module against published values and independent derivations."""

from __future__ import annotations

import importlib.util
import itertools
import math
import random
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from catdog_report import stats

Z_975 = 1.959963984540054  # standard normal 0.975 quantile


def bisect_quantile(p: float) -> float:
    """Normal quantile by bisection on Phi(x) = erfc(-x / sqrt 2) / 2: slow, simple, independent."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def exact_mcnemar(b: int, c: int) -> Fraction:
    """Exact McNemar p-value as a Fraction, from the binomial pmf recurrence (no math.comb)."""
    n, k = b + c, min(b, c)
    pmf = Fraction(1, 2**n)
    tail = Fraction(0)
    for i in range(k + 1):
        tail += pmf
        pmf = pmf * (n - i) / (i + 1)
    return min(Fraction(1), 2 * tail)


def wilson_closed_form(x: int, n: int, z: float) -> tuple[float, float]:
    """Wilson bounds as centre -+ half-width (Wilson 1927), written differently from the module."""
    p = x / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# --- normal quantile -------------------------------------------------------------------------

def test_normal_quantile_known_values() -> None:
    assert stats._normal_quantile(0.975) == pytest.approx(Z_975, abs=1e-12)
    assert stats._two_sided_z(0.95) == pytest.approx(Z_975, abs=1e-12)
    assert stats._normal_quantile(0.995) == pytest.approx(2.5758293035489004, abs=1e-12)
    assert stats._normal_quantile(0.95) == pytest.approx(1.6448536269514722, abs=1e-12)
    assert stats._two_sided_z(0.99) == pytest.approx(2.5758293035489004, abs=1e-12)
    assert stats._normal_quantile(0.5) == 0.0


@pytest.mark.parametrize("p", [1e-300, 1e-12, 1e-6, 0.001, 0.02, 0.02425, 0.03, 0.1, 0.3, 0.49,
                               0.51, 0.7, 0.9, 0.97, 0.98, 0.999])
def test_normal_quantile_matches_bisection(p: float) -> None:
    assert stats._normal_quantile(p) == pytest.approx(bisect_quantile(p), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("k", [2, 3, 6, 10, 20, 40])
def test_normal_quantile_is_antisymmetric(k: int) -> None:
    p = 0.5**k  # 1 - p is exact in binary, so the two calls see mirrored inputs
    x = stats._normal_quantile(p)
    assert x < 0
    assert stats._normal_quantile(1 - p) == pytest.approx(-x, abs=1e-12)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_normal_quantile_rejects_outside_open_unit_interval(bad: float) -> None:
    with pytest.raises(ValueError, match="0 < p < 1"):
        stats._normal_quantile(bad)


# --- Wilson interval -------------------------------------------------------------------------

# Newcombe RG (1998) "Two-sided confidence intervals for the single proportion: comparison of
# seven methods", Statistics in Medicine 17:857-872, Table I, method 3 (score, no continuity
# correction), 95%.
NEWCOMBE_TABLE_I = [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0000),
]


@pytest.mark.parametrize(("x", "n", "low", "high"), NEWCOMBE_TABLE_I)
def test_wilson_matches_newcombe_table_i(x: int, n: int, low: float, high: float) -> None:
    lo, hi = stats.wilson_interval(x, n)
    assert round(lo, 4) == low
    assert round(hi, 4) == high
    ref_lo, ref_hi = wilson_closed_form(x, n, Z_975)
    assert lo == pytest.approx(max(0.0, ref_lo), abs=1e-12)
    assert hi == pytest.approx(min(1.0, ref_hi), abs=1e-12)


def test_wilson_ends_are_exact_and_interval_is_mirrored() -> None:
    assert stats.wilson_interval(0, 20)[0] == 0.0
    assert stats.wilson_interval(20, 20)[1] == 1.0
    for x, n in [(0, 20), (3, 17), (81, 263), (200, 200)]:
        lo, hi = stats.wilson_interval(x, n)
        mlo, mhi = stats.wilson_interval(n - x, n)
        assert lo == pytest.approx(1 - mhi, abs=1e-12)
        assert hi == pytest.approx(1 - mlo, abs=1e-12)
        assert 0.0 <= lo <= x / n <= hi <= 1.0


def test_wilson_confidence_widens_interval() -> None:
    lo90, hi90 = stats.wilson_interval(81, 263, confidence=0.90)
    lo95, hi95 = stats.wilson_interval(81, 263)
    lo99, hi99 = stats.wilson_interval(81, 263, confidence=0.99)
    assert lo99 < lo95 < lo90 < 81 / 263 < hi90 < hi95 < hi99
    ref = wilson_closed_form(81, 263, 2.5758293035489004)
    assert (lo99, hi99) == pytest.approx(ref, abs=1e-12)


def test_wilson_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        stats.wilson_interval(0, 0)
    with pytest.raises(ValueError, match="cannot exceed"):
        stats.wilson_interval(5, 4)
    with pytest.raises(ValueError, match=">= 0"):
        stats.wilson_interval(-1, 4)
    with pytest.raises(ValueError, match="integer"):
        stats.wilson_interval(2.5, 4)  # type: ignore[arg-type]
    for bad in (0.0, 1.0, 95):
        with pytest.raises(ValueError, match="confidence"):
            stats.wilson_interval(2, 4, confidence=bad)


# --- McNemar ---------------------------------------------------------------------------------

def test_mcnemar_small_published_values() -> None:
    assert stats.mcnemar_exact(1, 9) == 2 * 11 / 1024  # 0.02148
    assert round(stats.mcnemar_exact(1, 9), 5) == 0.02148
    # discordant counts 1 and 7: the airway hyper-responsiveness data of Bentur et al., as
    # tabulated in Fagerland, Lydersen & Laake (2013) BMC Med Res Methodol 13:91, Table 1 (a
    # data table); the exact conditional p-value is 2 * (C(8,0) + C(8,1)) / 2^8 = 18/256, and
    # scipy's exact binomial test agrees (test_mcnemar_matches_scipys_binomial_test)
    assert stats.mcnemar_exact(1, 7) == 2 * 9 / 256
    assert round(stats.mcnemar_exact(1, 7), 3) == 0.070
    assert stats.mcnemar_exact(0, 5) == 2 / 32


@pytest.mark.parametrize(("b", "c"), [(1, 7), (1, 9), (0, 5), (12, 30), (100, 140)])
def test_mcnemar_matches_scipys_binomial_test(b: int, c: int) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    expected = scipy_stats.binomtest(min(b, c), b + c, 0.5).pvalue
    assert stats.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_no_or_balanced_discordance_is_one() -> None:
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(7, 7) == 1.0
    assert stats.mcnemar_exact(7, 8) == 1.0  # 2 * P(X <= 7 | n = 15) is exactly 1
    assert stats.mcnemar_exact(0, 1) == 1.0
    assert stats.mcnemar_exact(6, 9) == float(exact_mcnemar(6, 9)) < 1.0


@pytest.mark.parametrize(("b", "c"), [(1, 9), (3, 20), (0, 12), (40, 61), (700, 760)])
def test_mcnemar_is_symmetric(b: int, c: int) -> None:
    assert stats.mcnemar_exact(b, c) == stats.mcnemar_exact(c, b)


@pytest.mark.parametrize(("b", "c"), [(1400, 1600), (1490, 1510), (100, 1000), (0, 1000),
                                      (12, 30), (2, 2)])
def test_mcnemar_matches_independent_fraction_derivation(b: int, c: int) -> None:
    # both sides are the correctly rounded float of the same exact rational, so equal exactly
    assert stats.mcnemar_exact(b, c) == float(exact_mcnemar(b, c))


def test_mcnemar_large_n_neither_overflows_nor_underflows() -> None:
    # a float computation comb(n, k) * 0.5**n overflows (comb) or underflows (0.5**1100)
    p = stats.mcnemar_exact(100, 1000)
    assert 0.0 < p < 1e-150
    assert stats.mcnemar_exact(0, 1000) == 2.0**-999
    assert 0.0 < stats.mcnemar_exact(1400, 1600) < 0.001


def test_mcnemar_shrinks_as_discordance_grows() -> None:
    ps = [stats.mcnemar_exact(5, c) for c in range(6, 30)]
    assert all(a > b for a, b in zip(ps, ps[1:], strict=False))


def test_mcnemar_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="b must be >= 0"):
        stats.mcnemar_exact(-1, 3)
    with pytest.raises(ValueError, match="c must be an integer"):
        stats.mcnemar_exact(1, 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bool"):
        stats.mcnemar_exact(True, 3)


# --- paired counts and the matrix ------------------------------------------------------------

def test_paired_counts() -> None:
    a = [True, True, False, False, True, True]
    b = [True, False, True, False, False, True]
    assert stats.paired_counts(a, b) == (2, 1)
    assert stats.paired_counts(b, a) == (1, 2)
    assert stats.paired_counts([1, 0, 1], [0, 0, 1]) == (1, 0)  # truthy ints / numpy bools
    assert stats.paired_counts([], []) == (0, 0)


def test_paired_counts_rejects_unequal_lengths_naming_both() -> None:
    with pytest.raises(ValueError, match=r"3 items.*has 2"):
        stats.paired_counts([True] * 3, [True] * 2)


# --- several seeds: the photo-clustered test -------------------------------------------------

SEEDS_A = [[True] * 8 + [False] * 2, [True] * 9 + [False], [True] * 7 + [False] * 3]
SEEDS_B = [[True] * 4 + [False] * 6, [True] * 9 + [False], [False] * 3 + [True] * 7]


def brute_sign_flip(differences: list[int]) -> Fraction:
    """The sign-flip p-value by enumerating every sign pattern (independent of the module)."""
    observed = abs(sum(differences))
    hits = sum(abs(sum(s * d for s, d in zip(signs, differences, strict=True))) >= observed
               for signs in itertools.product((1, -1), repeat=len(differences)))
    return Fraction(hits, 2 ** len(differences))


def test_photo_differences_keep_each_photos_seeds_together() -> None:
    # photo by photo, seeds right (of 3): A 3,3,3,3,3,3,3,2,1,0 and B 2,2,2,3,2,2,2,2,2,1
    assert stats.photo_differences(SEEDS_A, SEEDS_B) == [3, 3, 3, 0, 3, 3, 3, 0, -3, -3]
    # unequal seeds: A's first seed (a of 1) against B's first two (b of 2) -> 2 a - 1 b
    assert stats.photo_differences(SEEDS_A[:1], SEEDS_B[:2]) == [0, 0, 0, 0, 1, 1, 1, 1, -1, 0]
    with pytest.raises(ValueError, match="no seeds"):
        stats.photo_differences([], SEEDS_B)
    with pytest.raises(ValueError, match="different numbers of photos"):
        stats.photo_differences([[True], [True, False]], [[True]])
    with pytest.raises(ValueError, match="equal lengths"):
        stats.photo_differences([[True, False]], [[True]])


@pytest.mark.parametrize("differences", [
    [1, 1, 1, -1, 0, 1, 1], [3, 3, 3, 3, 0, 3, 3, 3, 0, 0], [2, -1, 3, 0, 1, 1, -2, 3, 1, 2, 1],
    [1, -1], [5], [0, 0], [-2, -4, -6, 2]])
def test_sign_flip_test_matches_enumeration(differences: list[int]) -> None:
    assert stats.sign_flip_test(differences) == pytest.approx(
        float(brute_sign_flip(differences)), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_sign_flip_test_matches_scipys_exact_permutation_test(seed: int) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(seed)
    d = [rng.choice([-3, -2, -1, 0, 0, 1, 1, 2, 3]) for _ in range(14)]
    x = np.array(d, dtype=float)
    res = scipy_stats.permutation_test((x,), np.sum, permutation_type="samples",
                                       alternative="two-sided", n_resamples=np.inf)
    assert stats.sign_flip_test(d) == pytest.approx(res.pvalue, rel=1e-9)


@pytest.mark.parametrize(("b", "c"), [(1, 9), (1, 7), (0, 6), (10, 10), (3, 40), (60, 90)])
def test_one_seed_each_is_mcnemars_exact_test(b: int, c: int) -> None:
    a = [[True] * b + [False] * c + [True] * 5]
    other = [[False] * b + [True] * c + [True] * 5]
    assert stats.clustered_test(a, other) == pytest.approx(stats.mcnemar_exact(b, c), rel=1e-12)


def test_sign_flip_test_large_and_bad_input() -> None:
    big = [1] * 150 + [-1] * 50 + [3] * 20  # 220 photos: no overflow, a tiny p
    p = stats.sign_flip_test(big)
    assert 0.0 < p < 1e-12
    assert stats.sign_flip_test([]) == 1.0 and stats.sign_flip_test([0, 0]) == 1.0
    with pytest.raises(ValueError, match="whole-number"):
        stats.sign_flip_test([0.5, 1])


def test_holm_matches_statsmodels() -> None:
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = random.Random(7)
    for _ in range(20):
        ps = [rng.random() ** 3 for _ in range(rng.randint(1, 8))]
        assert stats.holm(ps) == pytest.approx(list(multipletests(ps, method="holm")[1]),
                                               rel=1e-12)
    # by hand: sorted 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone), given order kept
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([0.2, math.nan])


def test_pairwise_tests_adjust_over_every_pair() -> None:
    one = [[True] * 20, [True] * 18 + [False] * 2]
    two = [[True] * 10 + [False] * 10, [True] * 9 + [False] * 11]
    three = [[False] + [True] * 19]  # one seed: paired with seed 0 of the others only
    table = stats.pairwise_tests({"one": one, "two": two, "three": three})
    assert list(zip(table["model"], table["versus"], strict=True)) == [
        ("one", "two"), ("one", "three"), ("two", "three")]
    raw = [stats.clustered_test(one, two), stats.clustered_test(one, three),
           stats.clustered_test(two, three)]
    assert list(table["p"]) == raw
    assert list(table["p holm"]) == stats.holm(raw)
    assert table.loc[0, "difference"] == pytest.approx((20 + 18) / 40 - (10 + 9) / 40)
    assert list(table["seed pairs"]) == [2, 1, 1]
    assert table.loc[0, "seed pairs apart"] == 2  # 10 and 11 discordant photos, all one way
    matrix = stats.pvalue_matrix(table)
    assert list(matrix.index) == ["one", "two", "three"]
    assert matrix.loc["two", "one"] == matrix.loc["one", "two"] == table.loc[0, "p holm"]
    assert math.isnan(matrix.loc["one", "one"])


def _bench(name: str) -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


false_claims = _bench("false_claims")  # the simulation bench/false_claims.py reports


@pytest.mark.parametrize(("seeds", "rho"), [(1, 0.25), (3, 0.25), (3, 0.57)])
def test_equal_models_are_claimed_different_in_at_most_about_5_percent(
        seeds: int, rho: float) -> None:
    before, after = false_claims.rates(300, seeds, rho)
    assert after <= 0.07  # the family-wise level is 5%; 300 builds: +-2.5% Monte Carlo error
    if seeds == 3:  # the pooled, unadjusted test this replaces claims far more often
        assert before > 2 * max(after, 0.05)


def test_clustered_test_still_finds_a_real_difference() -> None:
    rng = np.random.default_rng(3)
    ease = rng.beta(2.0, 1.0, size=200)
    good = [list(rng.random(200) < np.minimum(1, ease + 0.12)) for _ in range(3)]
    weak = [list(rng.random(200) < ease) for _ in range(3)]
    assert stats.clustered_test(good, weak) < 0.001


def test_seedwise_mcnemar_is_per_seed_pair() -> None:
    ps = stats.seedwise_mcnemar(SEEDS_A, SEEDS_B)
    assert ps == [2 / 16, 1.0, 1.0]
    assert stats.seedwise_mcnemar(SEEDS_B, SEEDS_A) == ps
    assert stats.seedwise_mcnemar(SEEDS_A, SEEDS_B[:1]) == ps[:1]  # the seeds both have
    with pytest.raises(ValueError, match="no seeds"):
        stats.seedwise_mcnemar([], [])
    with pytest.raises(ValueError, match="equal lengths"):
        stats.seedwise_mcnemar([[True, False]], [[True]])


# --- summaries, verdicts, formatting ---------------------------------------------------------

def test_mean_std_range() -> None:
    s = stats.mean_std_range([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9)
    assert s["std"] == pytest.approx(0.1)  # ddof = 1: sqrt(0.02 / 2)
    assert (s["min"], s["max"], s["n"]) == (0.8, 1.0, 3)
    assert set(s) == {"mean", "std", "min", "max", "n"}
    t = stats.mean_std_range([2, 4, 4, 4, 5, 5, 7, 9])
    assert t["std"] == pytest.approx(math.sqrt(32 / 7))  # population std would be 2


def test_mean_std_range_one_value_and_empty() -> None:
    s = stats.mean_std_range([0.75])
    assert s["mean"] == 0.75 and s["min"] == 0.75 and s["max"] == 0.75 and s["n"] == 1
    assert math.isnan(s["std"])
    with pytest.raises(ValueError, match="at least one"):
        stats.mean_std_range([])


@pytest.mark.parametrize(("value", "claim", "expected"), [
    ((0.70, 0.75), (0.72, 0.80), "consistent with"),   # partial overlap
    ((0.60, 0.90), (0.72, 0.80), "consistent with"),   # value contains claim
    ((0.73, 0.74), (0.72, 0.80), "consistent with"),   # claim contains value
    ((0.80, 0.85), (0.72, 0.80), "consistent with"),   # boundary: value_low == claim_high
    ((0.65, 0.72), (0.72, 0.80), "consistent with"),   # boundary: value_high == claim_low
    ((0.81, 0.85), (0.72, 0.80), "above"),
    ((0.8000001, 0.85), (0.72, 0.80), "above"),
    ((0.60, 0.71), (0.72, 0.80), "below"),
    ((0.60, 0.7199999), (0.72, 0.80), "below"),
    ((0.75, 0.75), (0.75, 0.75), "consistent with"),   # points
])
def test_verdict(value: tuple[float, float], claim: tuple[float, float], expected: str) -> None:
    assert stats.verdict(*value, *claim) == expected


def test_verdict_rejects_reversed_intervals() -> None:
    with pytest.raises(ValueError, match="value interval"):
        stats.verdict(0.9, 0.8, 0.7, 0.8)
    with pytest.raises(ValueError, match="claim interval"):
        stats.verdict(0.7, 0.8, 0.9, 0.8)
    with pytest.raises(ValueError, match="value interval"):
        stats.verdict(math.nan, 0.8, 0.7, 0.8)


def test_format_interval() -> None:
    assert stats.format_interval(0.935, 0.892, 0.962) == "93.5% (89.2\u201396.2)"
    assert stats.format_interval(1.0, 0.8830, 1.0) == "100.0% (88.3\u2013100.0)"
    assert stats.format_interval(0.0, 0.0, 0.1611) == "0.0% (0.0\u201316.1)"
    text = stats.format_interval(0.308, 0.2553, 0.3662)
    assert text == "30.8% (25.5\u201336.6)"
    assert text.count("%") == 1 and "-" not in text


def test_ranking_sentences_say_only_what_the_tests_support() -> None:
    names = ["Four", "One", "Two", "Three"]
    p = pd.DataFrame(1.0, index=names, columns=names)
    for other in ("One", "Two", "Three"):
        p.loc["Four", other] = p.loc[other, "Four"] = 1e-5
    acc = {"One": 0.60, "Two": 0.665, "Three": 0.60, "Four": 0.935}
    assert stats.ranking_sentences(acc, p, 200) == [
        "Four is ahead of every other model (adjusted p < 0.001 against each).",
        "Two, One and Three cannot be told apart on 200 test photos (adjusted p ≥ 0.05 for "
        "every pair)."]
    p.loc["Four", "Two"] = p.loc["Two", "Four"] = 0.2
    p.loc["Two", "Three"] = p.loc["Three", "Two"] = 0.01
    said = stats.ranking_sentences(acc, p, 200)
    assert said[0] == ("Four scores highest, but not significantly above Two (adjusted p = "
                       "0.200); it is ahead of One and Three (adjusted p < 0.001, adjusted "
                       "p < 0.001).")
    assert said[1:] == ["Two is ahead of Three (adjusted p = 0.010)."]
    assert stats.ranking_sentences(acc, p, 200, label="p")[1] == (
        "Two is ahead of Three (p = 0.010).")
    assert stats.ranking_sentences({"Only": 0.9}, p, 200) == []


def test_accuracy_interval_rounds_the_count() -> None:
    assert stats.accuracy_interval(0.935, 200) == stats.wilson_interval(187, 200)
    assert stats.format_p(0.0004) == "p < 0.001" and stats.format_p(0.0123) == "p = 0.012"


def test_format_accuracy_gives_the_wilson_interval_of_the_count() -> None:
    assert stats.format_accuracy(0.935, 200) == "93.5% (89.2–96.2)"  # 187 of 200
    assert stats.format_accuracy(0.585, 200) == "58.5% (51.6–65.1)"
