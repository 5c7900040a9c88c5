"""Bookkeeping of a grid, from the tags and metrics the runner writes (harness/schema.py): what kind of run
it was (simulated, which protocol), which cells failed, which stopped on budget before their method's
schedule ended, how often replies were cut off at the reply cap, and what the shared stages cost, once and
amortised over what they serve.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from harness import schema as S

SIMULATED_BANNER = "SIMULATED endpoint: no number here is a result."


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series([None] * len(df), index=df.index, dtype=object)


def _num(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(_col(df, name), errors="coerce")


# ------------------------------------------------------------------------------------- kind of run


def is_simulated(data: Any) -> bool:
    """The rehearsal's simulated endpoint: the settings run's tag, the config's flag, or any cell's tag."""
    s = data.settings or {}
    if S.flag((s.get("run_tags") or {}).get(S.SIMULATED)) or S.flag((s.get("experiment_tags") or {}).get(S.SIMULATED)):
        return True
    if S.flag((s.get("config") or {}).get("simulated")):
        return True
    return bool(len(data.cells)) and _col(data.cells, S.SIMULATED).map(S.flag).any()


def protocol(data: Any) -> str | None:
    """The paper's protocol the run follows (schema.PROTOCOL_PAPER / PROTOCOL_SWAP), or None. From the
    settings run's tags; a store written before those tags falls back to the experiment's name."""
    s = data.settings or {}
    tags = {**(s.get("experiment_tags") or {}), **(s.get("run_tags") or {})}
    if S.is_set(tags.get(S.PROTOCOL)):
        return str(tags[S.PROTOCOL])
    if S.PAPER_PROTOCOL in tags:
        return S.PROTOCOL_PAPER if S.flag(tags[S.PAPER_PROTOCOL]) else None
    name = str((s.get("config") or {}).get("name") or data.experiment).removesuffix("-rehearsal")
    return name if name in (S.PROTOCOL_PAPER, S.PROTOCOL_SWAP) else None


# ------------------------------------------------------------------------------------- cell status


def failed_cells(all_cells: pd.DataFrame) -> pd.DataFrame:
    """Cells (method x benchmark x seed) whose newest run failed and that have no finished run: method,
    benchmark, seed, reason."""
    cols = ["method", "benchmark", "seed", "reason"]
    if all_cells.empty:
        return pd.DataFrame(columns=cols)
    finished = set(map(tuple, all_cells[all_cells.status == "FINISHED"][["method", "benchmark", "seed"]]
                       .astype(str).to_numpy()))
    newest = all_cells.sort_values("start_time", ascending=False).drop_duplicates(["method", "benchmark", "seed"])
    failed = newest[newest.status == "FAILED"]
    rows = [{"method": r.method, "benchmark": r.benchmark, "seed": r.seed,
             "reason": str(r.get(S.FAIL_REASON) or "no reason recorded")}
            for _, r in failed.iterrows() if (str(r.method), str(r.benchmark), str(r.seed)) not in finished]
    return pd.DataFrame(rows, columns=cols).sort_values(["method", "benchmark", "seed"]).reset_index(drop=True)


def stopped_early(cells: pd.DataFrame) -> pd.Series:
    """Per finished cell: stopped on budget before its method's schedule ended (tag schedule_complete "false";
    a store without that tag: any budget stop counts)."""
    complete = _col(cells, S.SCHEDULE_COMPLETE).astype(str).str.strip().str.lower()
    known = complete.isin(["true", "false"])
    stopped = _col(cells, S.STOPPED).map(S.is_set).astype(bool)
    return (known & complete.eq("false")) | (~known & stopped)


def schedule_table(cells: pd.DataFrame, failed: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per method: cells finished, of which stopped on budget before the schedule ended, cells failed."""
    early = stopped_early(cells) if len(cells) else pd.Series(dtype=bool)
    rows = []
    for m in methods:
        mine = cells.method == m if len(cells) else pd.Series(dtype=bool)
        rows.append({"method": m, "finished": int(mine.sum()), "stopped_early": int((early & mine).sum()),
                     "failed": int((failed.method == m).sum()) if len(failed) else 0})
    return pd.DataFrame(rows, columns=["method", "finished", "stopped_early", "failed"])


# ------------------------------------------------------------------------------------- truncation


def truncation_table(cells: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """Per method x benchmark: test replies cut off at the reply cap (metric test_truncated, else counted
    from the records), test items (n_test), their ratio, and the reply cap(s) used (metric max_tokens)."""
    cols = ["method", "benchmark", "truncated", "n", "rate", "max_tokens", "initial_truncated", "initial_n"]
    if cells.empty:
        return pd.DataFrame(columns=cols)
    c = cells.copy()
    c["_trunc"], c["_n"], c["_init"] = _num(c, S.TEST_TRUNCATED), _num(c, S.N_TEST), _num(c, S.INITIAL_TRUNCATED)
    missing = c._trunc.isna() | c._n.isna()
    if missing.any() and len(records) and "truncated" in records:
        rec = records[records.run_id.isin(c.run_id[missing])]
        for split, col in (("test", "_trunc"), ("initial", "_init")):
            sub = rec[rec.split == split]
            got = sub.groupby("run_id").truncated.agg(lambda x: float(pd.Series(x).astype(bool).sum()))
            size = sub.groupby("run_id").size()
            fill = c.run_id.map(got)
            c[col] = c[col].where(c[col].notna(), fill)
            if split == "test":
                c["_n"] = c._n.where(c._n.notna(), c.run_id.map(size))
    rows = []
    for (m, b), g in c.groupby(["method", "benchmark"], sort=False):
        n = float(g._n.sum(min_count=1)) if g._n.notna().any() else math.nan
        t = float(g._trunc.sum(min_count=1)) if g._trunc.notna().any() else math.nan
        init = g[g._init.notna()]
        caps = sorted({int(v) for v in _num(g, S.MAX_TOKENS).dropna()})
        rows.append({"method": m, "benchmark": b, "truncated": t, "n": n,
                     "rate": t / n if n and not math.isnan(t) else math.nan, "max_tokens": caps,
                     "initial_truncated": float(init._init.sum()) if len(init) else math.nan,
                     "initial_n": float(init._n.sum()) if len(init) else math.nan})
    return pd.DataFrame(rows, columns=cols)


# ------------------------------------------------------------------------------------- shared stages


def _keys(value: Any) -> list[str]:
    if not S.is_set(value):
        return []
    try:
        got = json.loads(value)
    except (TypeError, ValueError):
        return [str(value)]
    return [str(x) for x in got] if isinstance(got, list) else [str(got)]


def stage_table(stages: pd.DataFrame | None, cells: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """One row per shared stage (the newest finished run of each key): its cost once, what it serves and its
    cost amortised per unit served; and the basis: "cell" when cells name the stages they used (tag
    stage_keys: cost / cells of this report that used it), else "target" (cost / (targets x methods) the
    stage lists)."""
    cols = ["key", "kind", "methods", "targets", "status", "served", "requests", "tokens", "usd", "evaluations",
            "wall_s", "usd_each", "evaluations_each"]
    if stages is None or stages.empty:
        return pd.DataFrame(columns=cols), "target"
    used: dict[str, int] = {}
    for v in _col(cells, S.STAGE_KEYS):
        for k in _keys(v):
            used[k] = used.get(k, 0) + 1
    basis = "cell" if used else "target"
    st = stages.sort_values("start_time", ascending=False)
    st = pd.concat([st[st.status == "FINISHED"], st[st.status != "FINISHED"]]).drop_duplicates("key")
    rows = []
    for _, s in st.iterrows():
        served = used.get(s.key, 0) if basis == "cell" else len(s.targets) * max(1, len(s.methods))
        stopped = s.get(S.STOPPED)
        status = "failed: " + str(s.fail_reason) if s.status == "FAILED" else s.status.lower()
        row = {"key": s.key, "kind": s.kind, "methods": list(s.methods), "targets": list(s.targets),
               "status": status + (f" (stopped on budget: {stopped})" if S.is_set(stopped) else ""),
               "served": served}
        for k in S.STAGE_METRICS:
            row[k] = float(s[k]) if k in s and pd.notna(s[k]) else math.nan
        row["usd_each"] = row["usd"] / served if served else math.nan
        row["evaluations_each"] = row["evaluations"] / served if served else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=cols).sort_values(["kind", "key"]).reset_index(drop=True), basis


def method_cost(cells: pd.DataFrame, stages: pd.DataFrame, basis: str, methods: list[str]) -> pd.DataFrame:
    """Per method: the per-cell cost of its own run (fine-tuning; mean over cells, range of the
    per-benchmark means) beside the shared stages' cost amortised per cell (basis "cell") or per target
    (basis "target") of that method."""
    rows = []
    per_key = dict(zip(stages.key, stages.usd_each, strict=True)) if len(stages) else {}
    per_key_eval = dict(zip(stages.key, stages.evaluations_each, strict=True)) if len(stages) else {}
    for m in methods:
        g = cells[cells.method == m]
        usd = _num(g, S.USD)
        by_bench = usd.groupby(g.benchmark).mean() if len(g) else pd.Series(dtype=float)
        if basis == "cell":
            keys = [_keys(v) for v in _col(g, S.STAGE_KEYS)]
            share = [sum(per_key.get(k, 0.0) for k in ks) for ks in keys]
            share_eval = [sum(per_key_eval.get(k, 0.0) for k in ks) for ks in keys]
            stage_usd = float(pd.Series(share).mean()) if share else 0.0
            stage_eval = float(pd.Series(share_eval).mean()) if share_eval else 0.0
        else:
            mine = stages[stages.methods.map(lambda ms, m=m: m in ms)] if len(stages) else stages
            stage_usd = float(mine.usd_each.sum()) if len(mine) else 0.0
            stage_eval = float(mine.evaluations_each.sum()) if len(mine) else 0.0
        rows.append({"method": m, "cells": len(g), "usd": float(usd.mean()) if usd.notna().any() else math.nan,
                     "usd_lo": float(by_bench.min()) if len(by_bench.dropna()) else math.nan,
                     "usd_hi": float(by_bench.max()) if len(by_bench.dropna()) else math.nan,
                     "evaluations": float(_num(g, S.EVALUATIONS).mean()) if len(g) else math.nan,
                     "stage_usd": stage_usd, "stage_evaluations": stage_eval})
    return pd.DataFrame(rows, columns=["method", "cells", "usd", "usd_lo", "usd_hi", "evaluations", "stage_usd",
                                       "stage_evaluations"])
