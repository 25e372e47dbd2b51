"""Pure statistics for the report: intervals on accuracies and exact paired tests between models.

No SciPy: the normal quantile and the binomial tail are written here, exactly where an exact
form exists (the McNemar p-value is computed in integer arithmetic), and to double precision
where it does not (the normal quantile, refined from Acklam's approximation by a Halley step).
"""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

# Acklam's rational approximation of the inverse normal CDF (relative error < 1.15e-9),
# https://web.archive.org/web/20151030215612/http://home.online.no/~pjacklam/notes/invnorm/
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
      3.754408661907416e00)
_P_LOW = 0.02425  # below this, Acklam switches to the tail form
_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


def _count(value: int, name: str) -> int:
    """A non-negative integer count, or ValueError naming it."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer count, got a bool ({value!r})")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer count, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {number}")
    return number


def _acklam(p: float) -> float:
    """Acklam's approximation of the standard normal quantile for 0 < p <= 0.5."""
    if p < _P_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        num = ((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]
        den = (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        return num / den
    q = p - 0.5
    r = q * q
    num = (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * q
    den = ((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0
    return num / den


def _normal_quantile(p: float) -> float:
    """Standard normal quantile (inverse CDF) to about double precision, for 0 < p < 1."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"normal quantile needs 0 < p < 1, got {p!r}")
    if p > 0.5:
        return -_normal_quantile(1.0 - p)  # work in the lower tail, where erfc keeps precision
    x = _acklam(p)
    # one Halley step on Phi(x) - p, with Phi(x) = erfc(-x / sqrt 2) / 2
    e = 0.5 * math.erfc(-x / _SQRT2) - p
    u = e * _SQRT2PI * math.exp(0.5 * x * x)
    return x - u / (1.0 + 0.5 * x * u)


def _two_sided_z(confidence: float) -> float:
    """The z with P(|Z| <= z) = confidence for a standard normal Z."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return -_normal_quantile((1.0 - confidence) / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (no continuity correction).

    The interval is the set of proportions ``p`` whose score test of ``successes`` out of ``n``
    is not rejected at the two-sided level ``1 - confidence``:

    ``(2x + z^2 -+ z * sqrt(z^2 + 4x(n - x)/n)) / (2(n + z^2))``

    with ``z`` the two-sided normal quantile (1.959963984540054 for 95%). Unlike the Wald
    interval it stays inside [0, 1] and does not collapse to a point at 0 or n successes.
    This is method 3 of Newcombe (1998), Statistics in Medicine 17:857-872.

    Args:
        successes: number of successes (e.g. correctly classified photos), 0 <= successes <= n.
        n: number of trials (e.g. test photos), at least 1.
        confidence: two-sided confidence level, strictly between 0 and 1.

    Returns:
        (low, high) as proportions in [0, 1].

    Raises:
        ValueError: for n == 0, negative or non-integer counts, successes > n, or a confidence
            outside (0, 1).
    """
    n = _count(n, "n")
    successes = _count(successes, "successes")
    if n == 0:
        raise ValueError("wilson_interval needs n >= 1 trials; an interval on 0 trials is "
                         "undefined (was the test set empty?)")
    if successes > n:
        raise ValueError(f"successes ({successes}) cannot exceed n ({n})")
    return _wilson(successes, n, confidence)


def _wilson(successes: float, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson bounds for a (possibly fractional) count of successes, 0 <= it <= n."""
    z = _two_sided_z(confidence)
    z2 = z * z
    centre = 2.0 * successes + z2
    spread = z * math.sqrt(z2 + 4.0 * successes * (n - successes) / n)
    denominator = 2.0 * (n + z2)
    low = 0.0 if successes == 0 else (centre - spread) / denominator
    high = 1.0 if successes == n else (centre + spread) / denominator
    return max(0.0, low), min(1.0, high)


def _binomial_half_lower_tail(k: int, n: int) -> int:
    """Sum of C(n, i) for i = 0..k, exactly, as an integer (the tail of Bin(n, 1/2) times 2^n)."""
    term = 1
    total = 1
    for i in range(k):
        term = term * (n - i) // (i + 1)  # C(n, i+1) from C(n, i); the division is exact
        total += term
    return total


def mcnemar_exact(b: int, c: int) -> float:
    """Exact (binomial) two-sided McNemar p-value from the two discordant counts.

    Under the null hypothesis that both classifiers have the same error rate, each of the
    ``b + c`` discordant pairs is equally likely to go either way, so ``min(b, c)`` is a draw
    from Binomial(b + c, 1/2) and

    ``p = min(1, 2 * P(X <= min(b, c)))``,  X ~ Binomial(b + c, 1/2).

    The tail is summed in integer arithmetic and divided once (Python's int / int is correctly
    rounded), so there is neither overflow nor underflow for thousands of discordant pairs;
    only a p-value below the smallest float (about 5e-324) comes back as 0.0.

    Args:
        b: pairs where A is right and B is wrong.
        c: pairs where A is wrong and B is right.

    Returns:
        The p-value in [0, 1]; 1.0 when there are no discordant pairs (b + c == 0).

    Raises:
        ValueError: for negative or non-integer counts.
    """
    b = _count(b, "b")
    c = _count(c, "c")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    if 2 * k >= n - 1:  # b == c, or they differ by one: twice the tail reaches 1
        return 1.0
    return min(1.0, 2 * _binomial_half_lower_tail(k, n) / 2**n)


def paired_counts(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[int, int]:
    """Discordant counts of two classifiers scored on the same items, in the same order.

    Args:
        correct_a: per-item correctness of classifier A (truthy = right).
        correct_b: per-item correctness of classifier B, aligned with ``correct_a``.

    Returns:
        (b, c): b counts items A got right and B got wrong, c items A got wrong and B right.

    Raises:
        ValueError: when the two sequences differ in length (both lengths are named).
    """
    if len(correct_a) != len(correct_b):
        raise ValueError(f"paired correctness must have equal lengths: correct_a has "
                         f"{len(correct_a)} items, correct_b has {len(correct_b)}")
    b = c = 0
    for a_right, b_right in zip(correct_a, correct_b, strict=True):
        if a_right and not b_right:
            b += 1
        elif b_right and not a_right:
            c += 1
    return b, c


def seedwise_mcnemar(correct_a: Sequence[Sequence[bool]],
                     correct_b: Sequence[Sequence[bool]]) -> list[float]:
    """Exact McNemar p-value of each seed pair separately (seed i of A against seed i of B).

    Each p-value is a valid test of those two runs on its own (its pairs are distinct
    photos); counting the seed pairs with p < 0.05 describes how often single runs differ, but
    the counts are not a test of the models (the same photos recur in every pair): the
    headline test is :func:`clustered_test`.

    Args:
        correct_a: per seed, the per-photo correctness of model A.
        correct_b: per seed, the per-photo correctness of model B; when the two have different
            numbers of seeds, only the seeds both have are paired.

    Returns:
        One p-value per seed pair, in seed order.

    Raises:
        ValueError: for no seeds, or a seed pair scored on different numbers of photos.
    """
    if not correct_a or not correct_b:
        raise ValueError("no seeds given: need at least one seed pair")
    return [mcnemar_exact(*paired_counts(seed_a, seed_b))
            for seed_a, seed_b in zip(correct_a, correct_b, strict=False)]


def _check_photos(correct: Sequence[Sequence[bool]], name: str) -> int:
    """The photo count every seed of a model was scored on (ValueError if none or uneven)."""
    if len(correct) == 0:
        raise ValueError(f"{name}: no seeds given; need at least one run per model")
    lengths = {len(seed) for seed in correct}
    if len(lengths) != 1:
        raise ValueError(f"{name}: its seeds were scored on different numbers of photos "
                         f"({sorted(lengths)}); paired tests need the same test photos")
    return lengths.pop()


def photo_differences(correct_a: Sequence[Sequence[bool]],
                      correct_b: Sequence[Sequence[bool]]) -> list[int]:
    """Per test photo, how much more often model A's seeds got it right than model B's.

    Photo i's difference is ``k_b * right_a[i] - k_a * right_b[i]``, with ``right_x[i]`` the
    number of model X's ``k_x`` seeds that got photo i right: the difference of the two
    per-photo seed means, scaled to a whole number (with one seed each, +1 where only A is
    right, -1 where only B is, else 0). Seeds stay together: each photo is one cluster.

    Args:
        correct_a: per seed of model A, the per-photo correctness, every seed over the same
            photos in the same order.
        correct_b: the same for model B, over the same photos.

    Returns:
        One integer per photo, in photo order.

    Raises:
        ValueError: for a model with no seeds, or seeds or models scored on different numbers
            of photos (the counts are named).
    """
    n_a, n_b = _check_photos(correct_a, "correct_a"), _check_photos(correct_b, "correct_b")
    if n_a != n_b:
        raise ValueError(f"paired correctness must have equal lengths: correct_a has {n_a} "
                         f"photos per seed, correct_b has {n_b}")
    k_a, k_b = len(correct_a), len(correct_b)
    right_a = [sum(bool(seed[i]) for seed in correct_a) for i in range(n_a)]
    right_b = [sum(bool(seed[i]) for seed in correct_b) for i in range(n_b)]
    return [k_b * a - k_a * b for a, b in zip(right_a, right_b, strict=True)]


def sign_flip_test(differences: Sequence[int]) -> float:
    """Exact two-sided sign-flip (Fisher–Pitman permutation) test of paired differences.

    Under the null hypothesis each difference is as likely to have its sign as the opposite
    one (the two models are exchangeable on every photo), so the sum ``T = sum(d_i)`` is
    compared with the distribution of ``sum(s_i * |d_i|)`` over all ``2^m`` sign patterns
    ``s`` of the ``m`` non-zero differences:

    ``p = P(|T*| >= |T|)``.

    The null distribution is computed exactly, with no random draws, by convolving the ``m``
    two-point distributions (differences divided by their greatest common divisor first), in
    double precision. With one seed per model (differences in {-1, 0, 1}) this is the exact
    McNemar test: it equals :func:`mcnemar_exact` on the discordant counts.

    Args:
        differences: whole-number paired differences, one per independent unit (here a test
            photo, from :func:`photo_differences`).

    Returns:
        The p-value in [0, 1]; 1.0 when every difference is 0.

    Raises:
        ValueError: for a difference that is not a whole number.
    """
    values = [_whole(d) for d in differences]
    sizes = sorted(abs(d) for d in values if d)
    if not sizes:
        return 1.0
    unit = math.gcd(*sizes)
    sizes = [d // unit for d in sizes]
    total = sum(sizes)
    observed = abs(sum(values)) // unit
    dist = np.zeros(total + 1)  # of S, the sum of the sizes signed +: T* = 2 S - total
    dist[0] = 1.0
    reach = 0
    for size in sizes:
        kept = dist[:reach + 1].copy()
        dist[:reach + 1] *= 0.5
        dist[size:size + reach + 1] += 0.5 * kept
        reach += size
    s = np.arange(total + 1)
    return float(min(1.0, dist[np.abs(2 * s - total) >= observed].sum()))


def _whole(value: int) -> int:
    """A whole number, or ValueError."""
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"sign_flip_test needs whole-number differences, got {value!r}")
    return int(value)


def clustered_test(correct_a: Sequence[Sequence[bool]],
                   correct_b: Sequence[Sequence[bool]]) -> float:
    """The paired test of two models over all their seeds, clustered by photo: the exact
    sign-flip test (:func:`sign_flip_test`) of each photo's difference of seed means
    (:func:`photo_differences`).

    What it tests: that on a random photo like the test photos, the runs of A (all seeds
    together) and the runs of B are equally likely to be right. Each photo counts once however
    many seeds there are, so photos that recur across seeds are not counted as independent
    (unlike McNemar's test on discordant pairs pooled over seeds, which is anti-conservative).
    It says nothing about runs trained with other seeds: the spread over seeds is reported
    separately.

    Args:
        correct_a: per seed of model A, the per-photo correctness.
        correct_b: per seed of model B, over the same photos (its seed count may differ).

    Returns:
        The exact two-sided p-value.
    """
    return sign_flip_test(photo_differences(correct_a, correct_b))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (Holm 1979, Scand. J. Statist.
    6:65-70).

    The i-th smallest of m p-values becomes ``max over j <= i of min(1, (m - j + 1) p_(j))``;
    rejecting every hypothesis whose adjusted p-value is below alpha keeps the chance of any
    false rejection in the family at most alpha, whatever the dependence between the tests.

    Args:
        pvalues: the family's p-values, in any order.

    Returns:
        The adjusted p-values, in the order given.

    Raises:
        ValueError: for a p-value outside [0, 1] or NaN.
    """
    values = [float(p) for p in pvalues]
    for p in values:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must lie in [0, 1], got {p!r}")
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: values[i])):
        running = max(running, min(1.0, (m - rank) * values[i]))
        adjusted[i] = running
    return adjusted


PAIR_COLUMNS = ["model", "versus", "difference", "p", "p holm", "seed pairs",
                "seed pairs apart"]


def pairwise_tests(correct: Mapping[str, Sequence[Sequence[bool]]],
                   alpha: float = 0.05) -> pd.DataFrame:
    """Every pair of models tested once on the same photos, Holm-adjusted over the pairs.

    Args:
        correct: model name -> per seed, per-photo correctness (seed counts may differ
            between models; every sequence over the same photos in the same order).
        alpha: the level of the per-seed-pair counts (a description, not adjusted).

    Returns:
        One row per unordered pair, in the mapping's order: "model" and "versus" (the pair),
        "difference" (A's mean accuracy over its seeds minus B's), "p" (:func:`clustered_test`),
        "p holm" (adjusted over all the pairs: :func:`holm`), "seed pairs" (how many seed
        pairs, seed i against seed i, both models have) and "seed pairs apart" (in how many
        of them the exact McNemar test of the two runs alone gives p < alpha).
    """
    names = list(correct)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            single = seedwise_mcnemar(correct[a], correct[b])
            rows.append({"model": a, "versus": b,
                         "difference": _mean_accuracy(correct[a]) - _mean_accuracy(correct[b]),
                         "p": clustered_test(correct[a], correct[b]), "p holm": math.nan,
                         "seed pairs": len(single),
                         "seed pairs apart": sum(p < alpha for p in single)})
    table = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    table["p holm"] = holm(list(table["p"]))
    return table


def _mean_accuracy(correct: Sequence[Sequence[bool]]) -> float:
    """The mean over seeds of the share of photos right."""
    return statistics.fmean(statistics.fmean(bool(x) for x in seed) for seed in correct)


def pvalue_matrix(tests: pd.DataFrame, column: str = "p holm") -> pd.DataFrame:
    """A symmetric model × model matrix of one p-value column of :func:`pairwise_tests`
    (the diagonal NaN), rows and columns in the order the models first appear."""
    names = list(dict.fromkeys([*tests["model"], *tests["versus"]]))
    matrix = pd.DataFrame(math.nan, index=pd.Index(names, name="model"),
                          columns=pd.Index(names, name="versus"), dtype=float)
    for a, b, p in zip(tests["model"], tests["versus"], tests[column], strict=True):
        matrix.loc[a, b] = matrix.loc[b, a] = float(p)
    return matrix


def mean_std_range(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation, minimum, maximum and count of some values.

    Args:
        values: at least one number (e.g. one test accuracy per seed).

    Returns:
        ``{"mean", "std", "min", "max", "n"}``; std is the sample standard deviation
        (ddof = 1), NaN when there is only one value.

    Raises:
        ValueError: when ``values`` is empty.
    """
    numbers = [float(v) for v in values]
    if not numbers:
        raise ValueError("mean_std_range needs at least one value")
    std = statistics.stdev(numbers) if len(numbers) > 1 else math.nan
    return {"mean": statistics.fmean(numbers), "std": std, "min": min(numbers),
            "max": max(numbers), "n": len(numbers)}


def verdict(value_low: float, value_high: float, claim_low: float, claim_high: float) -> str:
    """Compare a measured interval with a claimed range.

    The intervals are closed, so touching end points count as overlapping.

    Args:
        value_low: low end of the measured interval (e.g. a Wilson interval or the min over
            the last epochs).
        value_high: high end of the measured interval.
        claim_low: low end of the claimed range.
        claim_high: high end of the claimed range.

    Returns:
        "above" when value_low > claim_high, "below" when value_high < claim_low, else
        "consistent with" (the claimed range overlaps the measured interval: the
        measurement does not contradict the claim, which is all an overlap shows).

    Raises:
        ValueError: when an interval has its low end above its high end, or an end is NaN.
    """
    for name, low, high in (("value", value_low, value_high), ("claim", claim_low, claim_high)):
        if not low <= high:
            raise ValueError(f"{name} interval must have low <= high, got ({low!r}, {high!r})")
    if value_low > claim_high:
        return "above"
    if value_high < claim_low:
        return "below"
    return "consistent with"


def format_interval(p: float, low: float, high: float) -> str:
    """Proportions as a percentage with its interval, e.g. ``"93.5% (89.2–96.2)"``.

    Args:
        p: point estimate as a proportion (0.935 for 93.5%).
        low: low end of the interval, as a proportion.
        high: high end of the interval, as a proportion.

    Returns:
        One decimal each, an en dash between the ends, the percent sign only after the point
        estimate.
    """
    return f"{100 * p:.1f}% ({100 * low:.1f}\u2013{100 * high:.1f})"


def accuracy_interval(accuracy: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson interval of an accuracy measured on n items: its count of successes is the
    accuracy times n (a whole count for one run, read through float rounding; a fraction for
    a mean over seeds scored on the same n items, whose interval is that of its proportion
    on n items: the true sample size)."""
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"an accuracy lies in [0, 1], got {accuracy!r}")
    count = accuracy * _count(n, "n")
    if n == 0:
        raise ValueError("accuracy_interval needs n >= 1 items")
    whole = round(count)
    return _wilson(whole if abs(count - whole) < 1e-6 else count, n, confidence)


def format_accuracy(accuracy: float, n: int) -> str:
    """An accuracy measured on n items with its 95% Wilson interval: ``"93.5% (89.2–96.2)"``."""
    return format_interval(accuracy, *accuracy_interval(accuracy, n))


def format_p(p: float, label: str = "p") -> str:
    """A p-value as prose: 'p < 0.001' or 'p = 0.012' (label replaces 'p', e.g.
    'adjusted p')."""
    return f"{label} < 0.001" if p < 0.001 else f"{label} = {p:.3f}"


def _join(names: Sequence[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def ranking_sentences(accuracy: Mapping[str, float], pvalues: pd.DataFrame, n: int,
                      alpha: float = 0.05, label: str = "adjusted p") -> list[str]:
    """What a paired test lets a page say about a ranking, computed, never typed.

    Args:
        accuracy: model title → the accuracy the page ranks by (the seed mean with several
            seeds: the same statistic as the page's table).
        pvalues: the p-values over the same titles, already adjusted for the whole family of
            pairs (:func:`pvalue_matrix` of :func:`pairwise_tests`, Holm).
        n: how many test photos (for the 'cannot be told apart' sentence).
        alpha: the family-wise significance level.
        label: how the sentences name the p-values.

    Returns:
        Sentences: whether the best model is ahead of every other (with its largest p), then
        which of the rest are significantly apart or cannot be told apart.
    """
    order = sorted(accuracy, key=lambda m: -accuracy[m])
    if len(order) < 2:
        return []
    best, rest = order[0], order[1:]
    p_best = {m: float(pvalues.loc[best, m]) for m in rest}
    beaten = [m for m in rest if p_best[m] < alpha]
    out = []
    if len(beaten) == len(rest):
        worst = max(p_best.values())
        if len(rest) == 1:
            out.append(f"{best} is ahead of {rest[0]} ({format_p(worst, label)}).")
        elif worst < 0.001:
            out.append(f"{best} is ahead of every other model ({label} < 0.001 against each).")
        else:
            out.append(f"{best} is ahead of every other model ({format_p(worst, label)} at "
                       "most).")
    else:
        close = [m for m in rest if m not in beaten]
        ahead = (f"; it is ahead of {_join(beaten)} "
                 f"({', '.join(format_p(p_best[m], label) for m in beaten)})" if beaten else "")
        out.append(f"{best} scores highest, but not significantly above {_join(close)} "
                   f"({', '.join(format_p(p_best[m], label) for m in close)}){ahead}.")
    apart = [(a, b) for i, a in enumerate(rest) for b in rest[i + 1:]
             if float(pvalues.loc[a, b]) < alpha]
    if len(rest) > 1 and not apart:
        out.append(f"{_join(rest)} cannot be told apart on {n} test photos "
                   f"({label} ≥ {alpha:g} for every pair).")
    for a, b in apart:
        out.append(f"{a} is ahead of {b} ({format_p(float(pvalues.loc[a, b]), label)}).")
    return out
