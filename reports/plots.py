"""The report's figures (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 110


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
    return path


def _empty(path: Path, title: str, why: str) -> Path:
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.45, why, ha="center", va="center", fontsize=10, color="#555")
    return _save(fig, path)


def best_by_generation(candidates: pd.DataFrame, cells: pd.DataFrame, path: Path) -> Path:
    """Per benchmark, the best train score reached by each generation (running max within a cell), mean over
    the method's cells. Task-prompt candidates only (pre-training candidates score p~, not a task prompt)."""
    title = "Best score by generation"
    if candidates.empty or "train_score" not in candidates:
        return _empty(path, title, "no candidates were logged")
    c = candidates[candidates.run_id.isin(cells.run_id) & candidates.train_score.notna()].copy()
    if "stage" in c:
        c = c[c.stage.fillna("") != "pretrain"]
    if c.empty:
        return _empty(path, title, "no scored task-prompt candidates")
    c["generation"] = pd.to_numeric(c.generation, errors="coerce").fillna(0).astype(int)
    benchmarks = sorted(c.benchmark.unique())
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(4.2 * len(benchmarks), 3.4), squeeze=False)
    colors = _colors(sorted(c.method.unique()))
    for ax, b in zip(axes[0], benchmarks, strict=True):
        cb = c[c.benchmark == b]
        gmax = int(cb.generation.max())
        for m, cm in cb.groupby("method"):
            curves = []
            for _, cell in cm.groupby("run_id"):
                per_gen = cell.groupby("generation").train_score.max().reindex(range(gmax + 1))
                curves.append(per_gen.cummax().ffill().to_numpy(float))
            arr = np.vstack(curves)
            seen = (~np.isnan(arr)).sum(axis=0)  # cells with a score by that generation
            mean = np.where(seen > 0, np.nansum(arr, axis=0) / np.maximum(seen, 1), np.nan)
            ax.plot(range(gmax + 1), mean, marker="o", ms=3, label=m, color=colors[m])
        ax.set_title(b)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("generation")
        ax.set_ylabel("best train score")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    return _save(fig, path)


def accuracy_vs_cost(cost: pd.DataFrame, path: Path) -> Path:
    title = "Test accuracy vs cost"
    if cost.empty or "accuracy" not in cost:
        return _empty(path, title, "no finished cells")
    key = next((k for k in ("usd", "tokens", "requests", "evaluations")
                if k in cost and cost[k].notna().any() and cost[k].fillna(0).gt(0).any()), None)
    if key is None:
        return _empty(path, title, "the cells logged no cost metrics")
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = _colors(sorted(cost.method.unique()))
    markers = dict(zip(sorted(cost.benchmark.unique()), "osD^v<>pX*", strict=False))
    for _, r in cost.iterrows():
        ax.scatter(r[key], r["accuracy"], color=colors[r["method"]], marker=markers.get(r["benchmark"], "o"), s=40)
    for m, col in colors.items():
        ax.scatter([], [], color=col, label=m)
    for b, mk in markers.items():
        ax.scatter([], [], color="#777", marker=mk, label=b)
    ax.set_xlabel({"usd": "dollars per cell", "tokens": "tokens per cell", "requests": "requests per cell",
                   "evaluations": "example evaluations per cell"}[key])
    if cost[key].max() / max(cost[key][cost[key] > 0].min(), 1e-12) > 50:
        ax.set_xscale("log")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title)
    return _save(fig, path)


def lineage_tree(cands: pd.DataFrame, path: Path, title: str) -> Path:
    """One cell's archive: generation on x, candidates spread on y, parent -> child edges, colour = train
    score, hollow = not admitted, the best candidate ringed."""
    if cands.empty:
        return _empty(path, "Lineage", "no candidates in the best cell")
    c = cands.copy()
    c["generation"] = pd.to_numeric(c.generation, errors="coerce").fillna(0).astype(int)
    c = c.sort_values(["generation", "order"] if "order" in c else ["generation"])
    pos: dict[str, tuple[float, float]] = {}
    for g, cg in c.groupby("generation"):
        n = len(cg)
        for i, cid in enumerate(cg.id):
            pos[cid] = (float(g), (i - (n - 1) / 2))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * (c.generation.max() + 1)),
                                    max(3.0, 0.5 * c.groupby("generation").size().max() + 1.5)))
    for _, r in c.iterrows():
        p = r.get("parent_id")
        if isinstance(p, str) and p in pos:
            (x0, y0), (x1, y1) = pos[p], pos[r.id]
            ax.plot([x0, x1], [y0, y1], color="#999", lw=0.8, zorder=1)
    cmap = plt.get_cmap("viridis")
    scores = pd.to_numeric(c.train_score, errors="coerce")
    best_id = c.loc[scores.idxmax(), "id"] if scores.notna().any() else None
    for (_, r), s in zip(c.iterrows(), scores, strict=True):
        x, y = pos[r.id]
        col = cmap(0 if math.isnan(s) else float(s))
        admitted = r.get("admitted")
        hollow = admitted is False or str(admitted).lower() == "false"
        ax.scatter([x], [y], s=160, facecolor="white" if hollow else col, edgecolor=col, lw=2, zorder=2)
        if r.id == best_id:
            ax.scatter([x], [y], s=420, facecolor="none", edgecolor="crimson", lw=1.5, zorder=3)
        ax.annotate("-" if math.isnan(s) else f"{s:.2f}", (x, y), xytext=(0, 10), textcoords="offset points",
                    ha="center", fontsize=7)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, label="train score", fraction=0.04)
    ax.set_xlabel("generation")
    ax.set_yticks([])
    ax.set_xticks(sorted(c.generation.unique()))
    ax.set_title(title + "\nhollow: not admitted; red ring: best train score", fontsize=9)
    return _save(fig, path)


def run_vs_paper(table1: pd.DataFrame, ref: dict[str, dict[str, float]], methods: dict[str, str],
                 columns: dict[str, str], path: Path, title: str, labels: dict[str, str] | None = None) -> Path:
    """Per column (benchmark, avg), each method's mean with its 95% interval (filled) beside the number the
    paper reports (hollow diamond). methods: run name -> the paper's row; columns: the run's column -> the
    paper's key (e.g. "Average" -> "avg")."""
    fig, ax = plt.subplots(figsize=(max(6.4, 1.5 * len(columns)), 4.2))
    colors = _colors(list(methods))
    t = table1.set_index(["method", "benchmark"])
    width = 0.8 / max(1, len(methods))
    for i, (m, row) in enumerate(methods.items()):
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(columns))]
        for x, (col, key) in zip(xs, columns.items(), strict=True):
            if (m, col) in t.index and not math.isnan(t.loc[(m, col), "mean"]):
                e = t.loc[(m, col)]
                ax.errorbar([x], [100 * e["mean"]], yerr=[[100 * (e["mean"] - e["lo"])], [100 * (e["hi"] - e["mean"])]],
                            fmt="o", color=colors[m], ms=5, capsize=2)
            if key in ref.get(row, {}):
                ax.scatter([x], [ref[row][key]], marker="D", s=36, facecolor="white", edgecolor=colors[m], lw=1.5)
        ax.scatter([], [], color=colors[m], label=m)
    ax.scatter([], [], marker="D", facecolor="white", edgecolor="#555", label="the paper")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([(labels or {}).get(k, k) for k in columns.values()])
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="best", ncol=2)
    ax.set_title(title)
    return _save(fig, path)


def _colors(methods: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {m: cmap(i % 10) for i, m in enumerate(methods)}
