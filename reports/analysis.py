"""The report's tables as pandas DataFrames, computed from an experiment read from MLflow.

Input: harness.tracking.ExperimentData (cells, candidates, per-example records). Only FINISHED cells
count; when a cell (method x benchmark x seed) has several finished runs, the newest is used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness import schema as S
from reports import cells as bookkeeping
from reports import paper, stats

MANUAL = "manual-cot"
COST_METRICS = S.COST_METRICS
ABLATION_MARKS = ("no-archive", "no-self-improve", "no_archive", "no_self_improve")
PAPER_BASELINES = ("manual-cot", "textgrad", "metaspo")
SMALL_ITEMS = 50  # fewer test items per cell than this: a small run
SMALL_SEEDS = 3


@dataclass(frozen=True)
class MethodInfo:
    """What a method is: its registered method, family (schema.FAMILIES) and the method it ablates ("")."""

    base: str
    family: str
    ablation_of: str = ""


def infer_info(method: str, base: str | None = None, family: Any = None, ablation_of: Any = None) -> MethodInfo:
    """A method's info from its tags; absent tags (stores written before them) are inferred from the names:
    SePO by a "sepo" prefix, baselines the paper's, other optimizers peers, ablations by their marks."""
    base = str(base) if S.is_set(base) else method
    if family not in S.FAMILIES:
        family = (S.FAMILY_SEPO if base.lower().startswith("sepo") else
                  S.FAMILY_BASELINE if base in PAPER_BASELINES else S.FAMILY_PEER)
    if not isinstance(ablation_of, str) or ablation_of.lower() in ("nan", "none"):
        marked = any(m in x.lower() for m in ABLATION_MARKS for x in (method, base))
        ablation_of = "sepo-generalist" if marked else ""
    return MethodInfo(base, family, ablation_of)


def method_infos(cells: pd.DataFrame) -> dict[str, MethodInfo]:
    """Run name -> MethodInfo, from the tags base_method, family and ablation_of of its newest cell."""
    if cells.empty:
        return {}
    out = {}
    for m, g in cells.groupby("method", sort=True):
        row = g.iloc[0]
        out[str(m)] = infer_info(str(m), row.get(S.BASE_METHOD), row.get(S.FAMILY), row.get(S.ABLATION_OF))
    return out


def _info(method: str, infos: Mapping[str, MethodInfo] | None) -> MethodInfo:
    return (infos or {}).get(method) or infer_info(method)


def is_sepo(method: str, infos: Mapping[str, MethodInfo] | None = None) -> bool:
    return _info(method, infos).family == S.FAMILY_SEPO


def is_ablation(method: str, infos: Mapping[str, MethodInfo] | None = None) -> bool:
    return bool(_info(method, infos).ablation_of)


def is_manual(method: str, infos: Mapping[str, MethodInfo] | None = None) -> bool:
    return MANUAL in (method, _info(method, infos).base)


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
    infos: dict[str, MethodInfo] = field(default_factory=dict)
    failed: pd.DataFrame = field(default_factory=pd.DataFrame)  # method, benchmark, seed, reason
    schedule: pd.DataFrame = field(default_factory=pd.DataFrame)  # per method: finished, stopped_early, failed
    truncation: pd.DataFrame = field(default_factory=pd.DataFrame)
    stages: pd.DataFrame = field(default_factory=pd.DataFrame)  # shared stages, cost once and amortised
    stage_basis: str = "target"  # what a stage's cost is amortised over: "cell" or "target"
    method_cost: pd.DataFrame = field(default_factory=pd.DataFrame)
    simulated: bool = False
    protocol: str | None = None  # schema.PROTOCOL_PAPER / PROTOCOL_SWAP, or None


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


def _order(methods: list[str], infos: Mapping[str, MethodInfo] | None = None) -> list[str]:
    """Manual-CoT first, other baselines, then SePO variants, then ablations."""
    def rank(m: str) -> tuple[int, str]:
        return (0 if is_manual(m, infos) else 1 if not is_sepo(m, infos) else 3 if is_ablation(m, infos) else 2, m)
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


def comparison_pairs(methods: list[str], infos: Mapping[str, MethodInfo] | None = None) -> list[tuple[str, str]]:
    """SePO variants (not ablations: they have their own table) vs each baseline; every method vs Manual-CoT."""
    sepo = [m for m in methods if is_sepo(m, infos) and not is_ablation(m, infos)]
    baselines = [m for m in methods if not is_sepo(m, infos)]
    pairs: list[tuple[str, str]] = [(s, b) for s in sepo for b in baselines]
    for manual in [m for m in methods if is_manual(m, infos)]:
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
                  infos: Mapping[str, MethodInfo] | None = None) -> pd.DataFrame:
    """Table-2 shape: per method with held-out information, accuracy on held-in vs held-out targets."""
    if S.HELD_OUT not in cells:
        return pd.DataFrame(columns=["method", "targets", "benchmark", "mean", "lo", "hi", "n_seeds", "n_items"])
    flagged = cells[cells[S.HELD_OUT].notna()]
    methods = [m for m in _order(sorted(flagged.method.unique()), infos) if is_sepo(m, infos)]
    rows = []
    for m in methods:
        mc = flagged[flagged.method == m]
        if not mc[S.HELD_OUT].map(S.flag).any():
            continue
        for label, want in (("held-in", False), ("held-out", True)):
            runs = mc[mc[S.HELD_OUT].map(S.flag) == want]
            for b in benchmarks:
                sub = scores[scores.run_id.isin(runs[runs.benchmark == b].run_id)]
                groups = [g.score.to_numpy(float) for _, g in sub.groupby("seed", sort=True)]
                if not groups:
                    continue
                iv = stats.bootstrap_ci(groups)
                in_pool = runs[runs.benchmark == b].get(S.TARGET_IN_POOL)
                rows.append({"method": m, "targets": label, "benchmark": b, "mean": iv.mean, "lo": iv.lo,
                             "hi": iv.hi, "n_seeds": iv.n_seeds, "n_items": iv.n_items,
                             "target_in_pool": ",".join(sorted(set(map(str, in_pool.dropna()))))
                             if in_pool is not None else ""})
    return pd.DataFrame(rows, columns=["method", "targets", "benchmark", "mean", "lo", "hi", "n_seeds", "n_items",
                                       "target_in_pool"])


def ablation_table(scores: pd.DataFrame, methods: list[str], benchmarks: list[str],
                   infos: Mapping[str, MethodInfo] | None = None) -> pd.DataFrame:
    """Each ablation against the full method (the ablations are of SePO-Generalist, see harness/methods.py)."""
    pairs = []
    for a in (m for m in methods if is_ablation(m, infos)):
        of = _info(a, infos).ablation_of
        full = of if of in methods else next((m for m in ("sepo-generalist", "sepo", "sepo-specialist")
                                              if m in methods), None)
        if full is not None:
            pairs.append((a, full))
    return compare(scores, pairs, benchmarks) if pairs else pd.DataFrame()


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


def bench_order(benchmarks: list[str]) -> list[str]:
    """The paper's column order (AIME'25, ARC-AGI-1, GPQA, MBPP, Sudoku), other benchmarks after it."""
    known = list(paper.BENCHMARKS)
    return sorted(benchmarks, key=lambda b: (known.index(b) if b in known else len(known), b))


def build(data: Any) -> Report:
    """All tables for an ExperimentData."""
    cells = finished_cells(data.cells)
    scores = item_scores(data.records, cells)
    infos = method_infos(cells)
    methods = _order(sorted(cells.method.dropna().unique()), infos) if len(cells) else []
    benchmarks = bench_order(list(cells.benchmark.dropna().unique())) if len(cells) else []
    t1 = table1(scores, methods, benchmarks)
    comps = compare(scores, comparison_pairs(methods, infos), benchmarks)
    failed = bookkeeping.failed_cells(data.cells)
    stages, basis = bookkeeping.stage_table(getattr(data, "stages", None), cells)
    report = Report(cells=cells, scores=scores, table1=t1, comparisons=comps,
                    heldout=heldout_table(cells, scores, benchmarks, infos),
                    ablations=ablation_table(scores, methods, benchmarks, infos),
                    cost=cost_table(cells, scores), methods=methods, benchmarks=benchmarks, infos=infos,
                    failed=failed, schedule=bookkeeping.schedule_table(cells, failed, methods),
                    truncation=bookkeeping.truncation_table(cells, data.records), stages=stages,
                    stage_basis=basis, method_cost=bookkeeping.method_cost(cells, stages, basis, methods),
                    simulated=bookkeeping.is_simulated(data), protocol=bookkeeping.protocol(data))
    report.warnings = warnings_for(data, cells, scores, comps, report)
    return report


def warnings_for(data: Any, cells: pd.DataFrame, scores: pd.DataFrame, comps: pd.DataFrame,
                 report: Report | None = None) -> list[str]:
    out = []
    all_cells = data.cells
    if S.SYNTHETIC in all_cells and all_cells[S.SYNTHETIC].map(S.flag).any():
        out.append("Synthetic experiment (a test fixture with scripted outcomes): these numbers are not results.")
    if S.LOCAL_MODELS in all_cells and all_cells[S.LOCAL_MODELS].map(S.flag).any():
        out.append("Run on the embedded local models (small open models on CPU): a check of the pipeline, not "
                   "the paper's numbers.")
    if report is not None:
        out += status_warnings(report)
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
    unfinished = int((~all_cells.status.isin(["FINISHED", "FAILED"])).sum()) if len(all_cells) else 0
    if report is None:  # failed runs have their own banner in a full report
        unfinished += int((all_cells.status == "FAILED").sum()) if len(all_cells) else 0
    if unfinished:
        out.append(f"{unfinished} cell run(s) did not finish (running or killed) and are left out.")
    if not len(cells):
        out.append("No finished cells: nothing to compare yet.")
    return out


def status_warnings(r: Report, listed: int = 12) -> list[str]:
    """Banners for failed cells (with their reasons) and cells stopped on budget before their schedule ended."""
    out = []
    if len(r.failed):
        items = [f"{f.method} / {f.benchmark} / seed {f.seed}: {f.reason}" for f in r.failed.head(listed).itertuples()]
        more = f"; and {len(r.failed) - listed} more" if len(r.failed) > listed else ""
        out.append(f"{len(r.failed)} cell(s) failed and are left out of every table and test: " + "; ".join(items)
                   + more + ".")
    st = r.stages
    for label, bad in (("failed", st.status.str.startswith("failed") if len(st) else None),
                       ("stopped on its budget before finishing (its best so far was used)",
                        st.status.str.contains("stopped on budget") if len(st) else None)):
        if bad is not None and bad.any():
            out.append(f"{int(bad.sum())} shared stage(s) {label}: "
                       + "; ".join(f"{x.kind} {x.key}: {x.status}" for x in st[bad].itertuples()) + ".")
    early = r.schedule[r.schedule.stopped_early > 0] if len(r.schedule) else r.schedule
    if len(early):
        per = ", ".join(f"{e.method} {e.stopped_early}/{e.finished}" for e in early.itertuples())
        out.append(f"{int(early.stopped_early.sum())} of {int(r.schedule.finished.sum())} finished cells stopped on "
                   f"budget before finishing their method's schedule ({per}): their scores are of a cut-short run, "
                   "not of the method as specified (Table 1, column 'Stopped on budget').")
    return out
