"""The report's tables as pandas DataFrames, computed from an experiment read from MLflow.

Input: harness.tracking.ExperimentData (cells, candidates, per-example records). Only FINISHED cells
count; when a cell (method x benchmark x seed) has several finished runs, the newest is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reports import stats

MANUAL = "manual-cot"
COST_METRICS = ("requests", "tokens", "usd", "evaluations", "cache_hits", "wall_s")
ABLATION_MARKS = ("no-archive", "no-self-improve", "no_archive", "no_self_improve")
SMALL_ITEMS = 50  # fewer test items per cell than this: a small run
SMALL_SEEDS = 3


def is_sepo(method: str, bases: dict[str, str] | None = None) -> bool:
    """A SePO variant: by its registered method (tag sepo.base_method) when known, else by its name."""
    return str((bases or {}).get(method, method)).lower().startswith("sepo")


def is_ablation(method: str, bases: dict[str, str] | None = None) -> bool:
    return any(m in str(x).lower() for m in ABLATION_MARKS for x in (method, (bases or {}).get(method, "")))


def is_manual(method: str, bases: dict[str, str] | None = None) -> bool:
    return MANUAL in (method, (bases or {}).get(method))


def base_methods(cells: pd.DataFrame) -> dict[str, str]:
    """Run name -> registered method (tag sepo.base_method), for named setting groups such as sepo-fast."""
    if cells.empty or "sepo.base_method" not in cells:
        return {}
    pairs = cells[["method", "sepo.base_method"]].dropna().drop_duplicates("method")
    return dict(zip(pairs.method, pairs["sepo.base_method"], strict=True))


def _true(v: Any) -> bool:
    return str(v).strip().lower() in ("true", "1", "yes")


@dataclass
class Report:
    """Everything the renderer shows."""

    cells: pd.DataFrame  # finished cells used (one per method x benchmark x seed)
    scores: pd.DataFrame  # item-level test scores of those cells
    table1: pd.DataFrame  # long: method, benchmark (or "Average"), mean, lo, hi, n_seeds, n_items, best
    comparisons: pd.DataFrame
    heldout: pd.DataFrame
    ablations: pd.DataFrame
    cost: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)
    bases: dict[str, str] = field(default_factory=dict)  # run name -> registered method


def finished_cells(cells: pd.DataFrame) -> pd.DataFrame:
    if cells.empty:
        return cells
    done = cells[cells.status == "FINISHED"].copy()
    if done.empty:
        return done
    # the newest finished run of each method x benchmark x seed (an older one, e.g. before a code change
    # gave the cell a new key, is superseded and would otherwise count its items twice)
    done = done.sort_values("start_time", ascending=False)
    done = done.drop_duplicates(["method", "benchmark", "seed"], keep="first")
    return done.sort_values(["method", "benchmark", "seed"]).reset_index(drop=True)


def item_scores(records: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    cols = ["run_id", "method", "benchmark", "seed", "example_id", "score", "correct", "tokens"]
    if records.empty or cells.empty:
        return pd.DataFrame(columns=cols)
    test = records[(records.split == "test") & records.run_id.isin(cells.run_id)]
    return test[cols].reset_index(drop=True)


def _order(methods: list[str], bases: dict[str, str] | None = None) -> list[str]:
    """Manual-CoT first, other baselines, then SePO variants, then ablations."""
    def rank(m: str) -> tuple[int, str]:
        return (0 if is_manual(m, bases) else 1 if not is_sepo(m, bases) else 3 if is_ablation(m, bases) else 2, m)
    return sorted(methods, key=rank)


def table1(scores: pd.DataFrame, methods: list[str], benchmarks: list[str]) -> pd.DataFrame:
    """Mean over seeds of test accuracy with a 95% bootstrap interval (seeds and items), per method x
    benchmark; 'Average' is the mean over benchmarks (its interval from the same resamples); best marked."""
    rows = []
    for m in methods:
        dists = []
        for b in benchmarks:
            sub = scores[(scores.method == m) & (scores.benchmark == b)]
            groups = [g.score.to_numpy(float) for _, g in sub.groupby("seed", sort=True)]
            if not groups:
                rows.append({"method": m, "benchmark": b, "mean": math.nan, "lo": math.nan, "hi": math.nan,
                             "n_seeds": 0, "n_items": 0})
                dists.append(None)
                continue
            iv = stats.bootstrap_ci(groups)
            rows.append({"method": m, "benchmark": b, "mean": iv.mean, "lo": iv.lo, "hi": iv.hi,
                         "n_seeds": iv.n_seeds, "n_items": iv.n_items})
            dists.append(_distribution(groups))
        if len(benchmarks) > 1:
            got = [r for r in rows if r["method"] == m and r["benchmark"] in benchmarks]
            if all(d is not None for d in dists):
                avg = float(np.mean([r["mean"] for r in got]))
                mean_dist = np.mean(np.vstack(dists), axis=0)
                lo, hi = np.percentile(mean_dist, [2.5, 97.5])
                rows.append({"method": m, "benchmark": "Average", "mean": avg, "lo": float(lo), "hi": float(hi),
                             "n_seeds": min(r["n_seeds"] for r in got), "n_items": sum(r["n_items"] for r in got)})
            else:
                rows.append({"method": m, "benchmark": "Average", "mean": math.nan, "lo": math.nan,
                             "hi": math.nan, "n_seeds": 0, "n_items": 0})
    out = pd.DataFrame(rows, columns=["method", "benchmark", "mean", "lo", "hi", "n_seeds", "n_items"])
    out["mean"] = out["mean"].astype(float)
    best = out.groupby("benchmark")["mean"].transform("max").astype(float)
    out["best"] = np.isclose(out["mean"].to_numpy(float), best.to_numpy(float)) & out["mean"].notna().to_numpy()
    return out


def _distribution(groups: list[np.ndarray]) -> np.ndarray:
    """Bootstrap distribution of the mean over seeds (as bootstrap_ci draws it), for averaging benchmarks."""
    flat = np.concatenate(groups)
    if np.all(flat == flat[0]):
        return np.full(stats.N_BOOT, float(flat[0]))
    if len(groups) == 1:
        from scipy import stats as sst

        res = sst.bootstrap((groups[0],), np.mean, n_resamples=stats.N_BOOT, method="percentile",
                            random_state=np.random.default_rng(stats.BOOT_SEED))
        return np.asarray(res.bootstrap_distribution)
    return stats.two_stage_resamples(groups, n_resamples=stats.N_BOOT, seed=stats.BOOT_SEED)


def comparison_pairs(methods: list[str], bases: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """SePO variants (not ablations: they have their own table) vs each baseline; every method vs Manual-CoT."""
    sepo = [m for m in methods if is_sepo(m, bases) and not is_ablation(m, bases)]
    baselines = [m for m in methods if not is_sepo(m, bases)]
    pairs: list[tuple[str, str]] = [(s, b) for s in sepo for b in baselines]
    for manual in [m for m in methods if is_manual(m, bases)]:
        pairs += [(m, manual) for m in methods if m != manual]
    seen, out = set(), []
    for p in pairs:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def compare(scores: pd.DataFrame, pairs: list[tuple[str, str]], benchmarks: list[str]) -> pd.DataFrame:
    """Item-level tests per benchmark and pair; Holm over all rows of the table."""
    rows = []
    for b in benchmarks:
        for a, ref in pairs:
            sa = scores[(scores.method == a) & (scores.benchmark == b)]
            sb = scores[(scores.method == ref) & (scores.benchmark == b)]
            if sa.empty or sb.empty:
                continue
            matched = sa.merge(sb, on=["seed", "example_id"], suffixes=("_a", "_b"))
            if len(matched):
                r = stats.paired_compare(matched.score_a.to_numpy(float), matched.score_b.to_numpy(float))
                acc_a, acc_b = float(matched.score_a.mean()), float(matched.score_b.mean())
            else:
                r = stats.unpaired_compare(sa.score.to_numpy(float), sb.score.to_numpy(float))
                acc_a, acc_b = float(sa.score.mean()), float(sb.score.mean())
            rows.append({"benchmark": b, "method": a, "versus": ref, "test": r.test, "n": r.n,
                         "acc_method": acc_a, "acc_versus": acc_b, "diff": r.diff, "diff_lo": r.diff_lo,
                         "diff_hi": r.diff_hi, "b": r.b, "c": r.c, "odds_ratio": r.odds_ratio,
                         "statistic": r.statistic, "p": r.p, "mdd": r.mdd})
    cols = ["benchmark", "method", "versus", "test", "n", "acc_method", "acc_versus", "diff", "diff_lo", "diff_hi",
            "b", "c", "odds_ratio", "statistic", "p", "mdd", "p_holm", "significant", "verdict"]
    out = pd.DataFrame(rows)
    if out.empty:
        return pd.DataFrame(columns=cols)
    out["p_holm"] = stats.holm(out.p.tolist())
    out["significant"] = out.p_holm < stats.ALPHA
    out["verdict"] = [stats.verdict(p, d, m) for p, d, m in zip(out.p_holm, out["diff"], out.mdd, strict=True)]
    return out[cols]


def heldout_table(cells: pd.DataFrame, scores: pd.DataFrame, benchmarks: list[str],
                  bases: dict[str, str] | None = None) -> pd.DataFrame:
    """Table-2 shape: per method with held-out information, accuracy on held-in vs held-out targets."""
    if "sepo.held_out" not in cells:
        return pd.DataFrame(columns=["method", "targets", "benchmark", "mean", "lo", "hi", "n_seeds", "n_items"])
    flagged = cells[cells["sepo.held_out"].notna()]
    methods = [m for m in _order(sorted(flagged.method.unique()), bases) if is_sepo(m, bases)]
    rows = []
    for m in methods:
        mc = flagged[flagged.method == m]
        if not mc["sepo.held_out"].map(_true).any():
            continue
        for label, want in (("held-in", False), ("held-out", True)):
            runs = mc[mc["sepo.held_out"].map(_true) == want]
            for b in benchmarks:
                sub = scores[scores.run_id.isin(runs[runs.benchmark == b].run_id)]
                groups = [g.score.to_numpy(float) for _, g in sub.groupby("seed", sort=True)]
                if not groups:
                    continue
                iv = stats.bootstrap_ci(groups)
                in_pool = runs[runs.benchmark == b].get("sepo.target_in_pool")
                rows.append({"method": m, "targets": label, "benchmark": b, "mean": iv.mean, "lo": iv.lo,
                             "hi": iv.hi, "n_seeds": iv.n_seeds, "n_items": iv.n_items,
                             "target_in_pool": ",".join(sorted(set(map(str, in_pool.dropna()))))
                             if in_pool is not None else ""})
    return pd.DataFrame(rows, columns=["method", "targets", "benchmark", "mean", "lo", "hi", "n_seeds", "n_items",
                                       "target_in_pool"])


def ablation_table(scores: pd.DataFrame, methods: list[str], benchmarks: list[str],
                   bases: dict[str, str] | None = None) -> pd.DataFrame:
    """Each ablation against the full method (the ablations are of SePO-Generalist, see harness/methods.py)."""
    abl = [m for m in methods if is_ablation(m, bases)]
    full = next((m for m in ("sepo-generalist", "sepo", "sepo-specialist") if m in methods), None)
    if not abl or full is None:
        return pd.DataFrame()
    out = compare(scores, [(a, full) for a in abl], benchmarks)
    return out


def cost_table(cells: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per method x benchmark: mean per cell of requests, tokens, dollars, evaluations (cell metrics), with
    the mean test accuracy; totals over seeds too."""
    rows = []
    for (m, b), g in cells.groupby(["method", "benchmark"], sort=False):
        row: dict[str, Any] = {"method": m, "benchmark": b, "cells": len(g)}
        for k in COST_METRICS:
            if k in g:
                vals = pd.to_numeric(g[k], errors="coerce")
                row[k] = float(vals.mean()) if vals.notna().any() else math.nan
                row[f"{k}_total"] = float(vals.sum()) if vals.notna().any() else math.nan
        sub = scores[scores.run_id.isin(g.run_id)]
        row["accuracy"] = float(sub.groupby("seed").score.mean().mean()) if len(sub) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def build(data: Any) -> Report:
    """All tables for an ExperimentData."""
    cells = finished_cells(data.cells)
    scores = item_scores(data.records, cells)
    bases = base_methods(cells)
    methods = _order(sorted(cells.method.dropna().unique()), bases) if len(cells) else []
    benchmarks = sorted(cells.benchmark.dropna().unique()) if len(cells) else []
    t1 = table1(scores, methods, benchmarks)
    comps = compare(scores, comparison_pairs(methods, bases), benchmarks)
    report = Report(cells=cells, scores=scores, table1=t1, comparisons=comps,
                    heldout=heldout_table(cells, scores, benchmarks, bases),
                    ablations=ablation_table(scores, methods, benchmarks, bases),
                    cost=cost_table(cells, scores), methods=methods, benchmarks=benchmarks, bases=bases)
    report.warnings = warnings_for(data, cells, scores, comps)
    return report


def warnings_for(data: Any, cells: pd.DataFrame, scores: pd.DataFrame, comps: pd.DataFrame) -> list[str]:
    out = []
    all_cells = data.cells
    if "sepo.synthetic" in all_cells and all_cells["sepo.synthetic"].map(_true).any():
        out.append("Synthetic experiment (a test fixture with scripted outcomes): these numbers are not results.")
    if "sepo.local_models" in all_cells and all_cells["sepo.local_models"].map(_true).any():
        out.append("Run on the embedded local models (small open models on CPU): a check of the pipeline, not "
                   "the paper's numbers.")
    if len(cells):
        seeds = cells.groupby(["method", "benchmark"]).seed.nunique()
        items = scores.groupby("run_id").size() if len(scores) else pd.Series(dtype=int)
        small = []
        if seeds.min() < SMALL_SEEDS:
            small.append(f"as few as {int(seeds.min())} seed(s) per method and benchmark")
        if len(items) and items.min() < SMALL_ITEMS:
            small.append(f"as few as {int(items.min())} test items per cell")
        if len(comps) and comps.mdd.notna().any() and comps.mdd.max() > 0.1:
            small.append(f"comparisons can only detect differences of {100 * comps.mdd.min():.0f}-"
                         f"{100 * comps.mdd.max():.0f} points")
        if small:
            out.append("Small run: " + "; ".join(small) + ". Treat differences with the caution the intervals "
                       "and tests below call for.")
    finished = int((all_cells.status == "FINISHED").sum()) if len(all_cells) else 0
    if finished > len(cells):
        out.append(f"{finished - len(cells)} older finished run(s) of the same method, benchmark and seed are "
                   "superseded by newer ones and left out.")
    unfinished = len(all_cells) - finished
    if unfinished:
        out.append(f"{unfinished} cell run(s) did not finish (running, failed or killed) and are left out.")
    if not len(cells):
        out.append("No finished cells: nothing to compare yet.")
    return out
