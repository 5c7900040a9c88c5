"""Statistics for the report: bootstrap intervals, paired item-level tests, Holm, detectable differences.

Conventions (the report states them too):
- accuracy of a cell = mean item score on its test split; of a method x benchmark = mean over seeds;
- 95% interval: percentile bootstrap, B resamples, fixed seed. One seed: scipy.stats.bootstrap over items.
  Several seeds: two-stage (resample seeds with replacement, then items within each drawn seed), because
  both the seed and the item sample vary between reruns;
- paired tests match items on (seed, example id). Binary scores: exact McNemar (two-sided binomial test on
  the discordant pairs, scipy.stats.binomtest). Graded scores: paired sign-flip permutation test of the
  mean difference (scipy.stats.permutation_test). No matched items: unpaired permutation test;
- effect sizes: the accuracy difference on matched items with a 95% interval (binary: Agresti-Min, adding
  0.5 to each cell of the 2x2 table; graded: Wald), and McNemar's odds ratio b/c;
- Holm's step-down correction over every comparison of a table (the family), at alpha = 0.05;
- minimum detectable difference (MDD): the true accuracy difference the test would find with 80% power at
  alpha 0.05 at this number of matched items, n: (z_{1-alpha/2} + z_{0.8}) * sqrt(psi / n), psi the
  discordant-pair rate (observed; if none were observed, 2p(1-p) at the pooled accuracy p, or 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
N_BOOT = 2000
BOOT_SEED = 12345


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n_seeds: int
    n_items: int  # items in all seeds together


def bootstrap_ci(per_seed: Sequence[Sequence[float]], *, n_resamples: int = N_BOOT, seed: int = BOOT_SEED,
                 confidence: float = 0.95) -> Interval:
    """Mean over seeds of the per-seed mean item score, with a percentile bootstrap interval."""
    groups = [np.asarray(g, dtype=float) for g in per_seed if len(g)]
    if not groups:
        return Interval(float("nan"), float("nan"), float("nan"), 0, 0)
    mean = float(np.mean([g.mean() for g in groups]))
    n_items = int(sum(len(g) for g in groups))
    flat = np.concatenate(groups)
    if np.all(flat == flat[0]):  # no spread: every resample is the same
        return Interval(mean, mean, mean, len(groups), n_items)
    if len(groups) == 1:
        res = stats.bootstrap((groups[0],), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                              method="percentile", random_state=np.random.default_rng(seed))
        return Interval(mean, float(res.confidence_interval.low), float(res.confidence_interval.high), 1, n_items)
    boots = two_stage_resamples(groups, n_resamples=n_resamples, seed=seed)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(boots, [tail, 100 - tail])
    return Interval(mean, float(lo), float(hi), len(groups), n_items)


def two_stage_resamples(groups: list[np.ndarray], *, n_resamples: int, seed: int) -> np.ndarray:
    """B bootstrap means: draw S seeds with replacement (K, shape B x S), then for each drawn seed k draw n_k
    items with replacement (index floor(U * n_k), U uniform, shape B x S x max n); the statistic is the mean
    over drawn seeds of the drawn items' mean."""
    rng = np.random.default_rng(seed)
    s = len(groups)
    sizes = np.array([len(g) for g in groups])
    width = int(sizes.max())
    padded = np.zeros((s, width))
    for i, g in enumerate(groups):
        padded[i, : len(g)] = g
    k = rng.integers(0, s, size=(n_resamples, s))
    u = rng.random((n_resamples, s, width))
    n_k = sizes[k]  # B x S
    idx = np.minimum((u * n_k[:, :, None]).astype(int), width - 1)
    valid = np.arange(width)[None, None, :] < n_k[:, :, None]
    drawn = padded[k[:, :, None], idx] * valid
    seed_means = drawn.sum(axis=2) / n_k
    return seed_means.mean(axis=1)


@dataclass(frozen=True)
class Paired:
    test: str  # "exact McNemar", "paired permutation", "unpaired permutation"
    n: int  # matched items (pairs), or items of both sides for the unpaired test
    diff: float  # accuracy of A minus accuracy of B on those items
    diff_lo: float  # 95% interval of the difference (binary: Agresti-Min; graded: Wald)
    diff_hi: float
    p: float
    statistic: float  # McNemar: b (A right, B wrong); permutation: mean difference
    b: int = 0  # A right, B wrong
    c: int = 0  # A wrong, B right
    odds_ratio: float = float("nan")  # b / c (McNemar's effect size; inf when c = 0)
    mdd: float = float("nan")


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int, float]:
    """(b, c, p): discordant counts and the exact two-sided p-value."""
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    n10 = int(np.sum(x & ~y))
    n01 = int(np.sum(~x & y))
    p = 1.0 if n10 + n01 == 0 else float(stats.binomtest(n10, n10 + n01, 0.5).pvalue)
    return n10, n01, p


def mdd_paired(n: int, discordant: float, pooled: float, *, alpha: float = ALPHA, power: float = POWER) -> float:
    if n <= 0:
        return float("nan")
    psi = discordant if discordant > 0 else (2 * pooled * (1 - pooled) or 0.5)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(min(1.0, z * math.sqrt(psi / n)))


def mdd_unpaired(n_a: int, n_b: int, pooled: float, *, alpha: float = ALPHA, power: float = POWER) -> float:
    if n_a <= 0 or n_b <= 0:
        return float("nan")
    var = pooled * (1 - pooled) or 0.25
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(min(1.0, z * math.sqrt(var * (1 / n_a + 1 / n_b))))


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _permutation_p(x: np.ndarray, y: np.ndarray, permutation_type: str, n_resamples: int, seed: int) -> float:
    """Two-sided p of a permutation test of the difference in means (`permutation_type` as scipy's)."""
    res = stats.permutation_test((x, y), _mean_diff, permutation_type=permutation_type, vectorized=True,
                                 n_resamples=n_resamples, alternative="two-sided",
                                 random_state=np.random.default_rng(seed))
    return float(res.pvalue)


def paired_compare(a: Sequence[float], b: Sequence[float], *, n_resamples: int = 9999,
                   seed: int = BOOT_SEED) -> Paired:
    """A vs B on matched items (a[i] and b[i] are the same item)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(x)
    if n == 0:
        return Paired("none", 0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"))
    d = x - y
    diff = float(d.mean())
    binary = bool(np.all(np.isin(x, (0.0, 1.0))) and np.all(np.isin(y, (0.0, 1.0))))
    n10 = int(np.sum(x > y))
    n01 = int(np.sum(x < y))
    pooled = float((x.mean() + y.mean()) / 2)
    mdd = mdd_paired(n, (n10 + n01) / n, pooled)
    z = stats.norm.ppf(0.975)
    if binary:
        # Agresti & Min (2005): the Wald interval of a paired difference of proportions after adding 0.5 to
        # each of the four cells, which stays informative when b or c is 0
        ba, ca, na = n10 + 0.5, n01 + 0.5, n + 2.0
        centre = (ba - ca) / na
        se = math.sqrt(max((ba + ca) - (ba - ca) ** 2 / na, 0.0)) / na
    else:  # Wald interval of the mean paired difference
        centre, se = diff, float(np.sqrt(max(np.mean(d**2) - diff**2, 0.0) / n))
    lo, hi = max(-1.0, centre - z * se), min(1.0, centre + z * se)
    if binary:
        b_, c_, p = mcnemar_exact(x.astype(bool), y.astype(bool))
        ratio = b_ / c_ if c_ else (float("inf") if b_ else float("nan"))
        return Paired("exact McNemar", n, diff, lo, hi, p, float(b_), b_, c_, ratio, mdd)
    p = 1.0 if np.all(d == 0) else _permutation_p(x, y, "samples", n_resamples, seed)
    return Paired("paired permutation", n, diff, lo, hi, p, diff, n10, n01, float("nan"), mdd)


def unpaired_compare(a: Sequence[float], b: Sequence[float], *, n_resamples: int = 9999,
                     seed: int = BOOT_SEED) -> Paired:
    """A vs B on different items: a permutation test of the difference in means."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0 or len(y) == 0:
        return Paired("none", 0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"))
    diff = float(x.mean() - y.mean())
    pooled = float(np.concatenate([x, y]).mean())
    p = 1.0 if np.all(np.concatenate([x, y]) == x[0]) else _permutation_p(x, y, "independent", n_resamples, seed)
    se = math.sqrt(x.var() / len(x) + y.var() / len(y))
    z = stats.norm.ppf(0.975)
    return Paired("unpaired permutation", len(x) + len(y), diff, max(-1.0, diff - z * se), min(1.0, diff + z * se),
                  p, diff, 0, 0, float("nan"), mdd_unpaired(len(x), len(y), pooled))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted)."""
    ps = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(~np.isnan(ps))
    out = np.full(len(ps), np.nan)
    m = len(ok)
    order = ok[np.argsort(ps[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out.tolist()


def verdict(p_holm: float, diff: float, mdd: float, alpha: float = ALPHA) -> str:
    """One plain sentence on a comparison."""
    if math.isnan(p_holm):
        return "no items to compare"
    if p_holm < alpha:
        return f"significant at {alpha:g} after Holm"
    if not math.isnan(mdd) and abs(diff) < mdd:
        return (f"not significant at {alpha:g} after Holm; this sample cannot tell differences smaller than "
                f"about {100 * mdd:.0f} points")
    return f"not significant at {alpha:g} after Holm"
