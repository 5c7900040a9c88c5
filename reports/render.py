"""Markdown and self-contained HTML (figures embedded as data URIs) from a Report."""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness import schema as S
from reports import analysis, paper, stats
from reports.analysis import Report


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""
    key: str = ""  # an id for the HTML (tests look tables up by it)
    muted: list[int] = field(default_factory=list)  # rows shown as reference (e.g. the paper's numbers)


def _value(x: Any) -> float | None:
    """x as a number, or None where a table shows a dash (not a number, or NaN)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def pct(x: Any, digits: int = 1) -> str:
    v = _value(x)
    return "–" if v is None else f"{100 * v:.{digits}f}"


def pval(p: Any) -> str:
    v = _value(p)
    if v is None:
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def num(x: Any) -> str:
    v = _value(x)
    if v is None:
        return "–"
    if abs(v) >= 100 or v == int(v):
        return f"{v:,.0f}"
    return f"{v:.4f}" if abs(v) < 1 else f"{v:.2f}"


def _title(b: str) -> str:
    return paper.BENCHMARKS.get(b, b)


def _acc_cells(r: Report, m: str, cols: list[str], best: dict[str, float]) -> list[str]:
    t = r.table1.set_index(["method", "benchmark"]) if len(r.table1) else None
    out = []
    for b in cols:
        if t is None or (m, b) not in t.index or t.loc[(m, b)]["n_seeds"] == 0:
            out.append("–")
            continue
        e = t.loc[(m, b)]
        mark = "**" if math.isclose(e["mean"], best.get(b, math.nan)) else ""
        n = f"{int(e['n_items'])} items" if b == "Average" else f"n={int(e['n_seeds'])}×{_per_seed(r, m, b)}"
        out.append(f"{mark}{pct(e['mean'])}{mark} [{pct(e['lo'])}, {pct(e['hi'])}] {n}")
    return out


def _best(r: Report, methods: list[str]) -> dict[str, float]:
    """The best mean per column among the rows of one table."""
    t = r.table1[r.table1.method.isin(methods)] if len(r.table1) else r.table1
    return t.groupby("benchmark")["mean"].max().dropna().to_dict() if len(t) else {}


def _paper_row(ref: dict[str, dict[str, float]], r: Report, m: str, cols: list[str]) -> list[str] | None:
    base = r.infos[m].base if m in r.infos else m
    got = ref.get(m) or ref.get(base)
    if not got:
        return None
    return [f"{m}: paper"] + [f"{got[k]:.2f}" if k in got else "–"
                              for k in (paper.AVERAGE if b == "Average" else b for b in cols)]


def _stopped(r: Report, m: str) -> str:
    s = r.schedule.set_index("method") if len(r.schedule) else None
    if s is None or m not in s.index:
        return "–"
    e = s.loc[m]
    text = f"{int(e['stopped_early'])}/{int(e['finished'])}"
    return text + (f" (+{int(e['failed'])} failed)" if e["failed"] else "")


def _accuracy_table(r: Report, methods: list[str], ref: dict, title: str, key: str, note: str) -> Table:
    cols = [*r.benchmarks, "Average"] if len(r.benchmarks) > 1 else list(r.benchmarks)
    rows, muted = [], []
    best = _best(r, methods)
    for m in methods:
        rows.append([m, *_acc_cells(r, m, cols, best), _stopped(r, m)])
        extra = _paper_row(ref, r, m, cols)
        if extra is not None:
            muted.append(len(rows))
            rows.append([*extra, ""])
    if ref:
        note += (f" Rows 'paper': the numbers {paper.CITATION} reports for this protocol (– where it gives none); "
                 "its average is over its five benchmarks.")
    headers = ["Method", *[paper.AVERAGE if b == "Average" else _title(b) for b in cols], "Stopped on budget"]
    return Table(title, headers, rows, key=key, note=note, muted=muted)


def table1_methods(r: Report) -> list[str]:
    """Table 1's rows: the paper's methods in its order, then every other method that is not an ablation."""
    rank = {m: i for i, m in enumerate(paper.TABLE1_METHODS)}

    def key(m: str) -> tuple[int, int]:
        base = r.infos[m].base if m in r.infos else m
        return (0, rank[m]) if m in rank else (0, rank[base]) if base in rank else (1, r.methods.index(m))
    return sorted((m for m in r.methods if not analysis.is_ablation(m, r.infos)), key=key)


def table2_methods(r: Report) -> list[str]:
    """Table 2's rows: each full method that is ablated, then its ablations."""
    abl = [m for m in r.methods if analysis.is_ablation(m, r.infos)]
    full = [m for m in dict.fromkeys(r.infos[a].ablation_of if a in r.infos else "" for a in abl) if m in r.methods]
    rank = {m: i for i, m in enumerate(paper.TABLE2_METHODS)}
    return full + sorted(abl, key=lambda m: (rank.get(m, len(rank)), m))


def row_order(r: Report) -> list[str]:
    """Every method in the tables' order: Table 1's rows, then Table 2's."""
    return list(dict.fromkeys([*table1_methods(r), *table2_methods(r), *r.methods]))


STOPPED_NOTE = (" Stopped on budget: cells that stopped on their budget before finishing their method's schedule, of "
                "the finished cells (tag schedule_complete; stores without it: any budget stop).")


def dollars(x: Any) -> str:
    v = _value(x)
    return "–" if v is None else f"{v:,.2f}"


def table1(r: Report) -> Table:
    ref = paper.reference(r.protocol)[0]
    return _accuracy_table(r, table1_methods(r), ref, "Table 1: test accuracy (%)", "table1", (
        "Mean over seeds of the per-seed test accuracy, with a 95% percentile bootstrap interval (seeds and "
        "items resampled; one seed: items), in percentage points. n = seeds × test items per seed. "
        "Bold: best in the column (of this table's rows). avg: mean over benchmarks, its interval from the same "
        "resamples." + STOPPED_NOTE
        + (" " + swap_note(r) if swap_note(r) else "")))


def table2(r: Report) -> Table | None:
    methods = table2_methods(r)
    if not any(analysis.is_ablation(m, r.infos) for m in methods):
        return None
    ref = paper.reference(r.protocol)[1]
    return _accuracy_table(r, methods, ref, "Table 2: ablations of SePO (test accuracy, %)", "table2", (
        "The full method and its ablations (no self-improvement: p~ never evolves; no archive: linear search "
        "from the latest candidate), as Table 1. Paired tests: 'Ablations against the full method'."
        + STOPPED_NOTE))


def _per_seed(r: Report, method: str, bench: str) -> str:
    sub = r.scores[(r.scores.method == method) & (r.scores.benchmark == bench)]
    sizes = sorted(set(sub.groupby("seed").size()))
    if not sizes:
        return "0"
    return str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"


def comparisons(df: pd.DataFrame, title: str, key: str, note: str) -> Table:
    rows = []
    for _, c in df.iterrows():
        ratio = c["odds_ratio"]
        rows.append([c["benchmark"], c["method"], c["versus"], c["test"], str(int(c["n"])),
                     f"{pct(c['acc_method'])} vs {pct(c['acc_versus'])}",
                     f"{'+' if c['diff'] > 0 else ''}{pct(c['diff'])} [{pct(c['diff_lo'])}, {pct(c['diff_hi'])}]",
                     f"{int(c['b'])}/{int(c['c'])}" + (f" (OR {ratio:.2f})" if isinstance(ratio, float)
                                                       and math.isfinite(ratio) else ""),
                     pval(c["p"]), pval(c["p_holm"]), pct(c["mdd"]), c["verdict"]])
    return Table(title, ["Benchmark", "Method", "Versus", "Test", "n", "Accuracy (%)", "Difference (pp) [95% CI]",
                         "b/c", "p", "p (Holm)", "MDD (pp)", "Verdict"], rows, note=note, key=key)


COMPARISON_NOTE = (
    "Items matched on (seed, example id). Exact McNemar: b = items only the method solved, c = items only the "
    "other solved (OR = b/c). p (Holm): Holm-adjusted over every row of this table. MDD: the smallest true "
    "difference this many matched items would detect with 80% power at alpha = 0.05; an observed difference "
    "below it is one the run cannot tell apart from none.")


def heldout(r: Report) -> Table | None:
    if r.heldout.empty:
        return None
    rows = []
    for (m, targets), g in r.heldout.groupby(["method", "targets"], sort=False):
        cells = {row.benchmark: f"{pct(row.mean)} [{pct(row.lo)}, {pct(row.hi)}] n={row.n_seeds}"
                 for row in g.itertuples()}
        pool = ",".join(sorted({v for v in g.target_in_pool if v}))
        rows.append([m, targets, *[cells.get(b, "–") for b in r.benchmarks], pool or "–"])
    return Table("Held-out generalization: test accuracy (%)",
                 ["Method", "Targets", *r.benchmarks, "Target in pool"], rows, key="heldout", note=(
                     "Held-in: the target was in the prompt agent's pre-training pool; held-out: it was kept out "
                     f"(tags {S.HELD_OUT} and {S.TARGET_IN_POOL} of each cell)."))


def cost(r: Report) -> Table:
    rows = []
    for _, c in r.cost.iterrows():
        rows.append([c["method"], c["benchmark"], str(int(c["cells"])), pct(c.get("accuracy")),
                     num(c.get("requests")), num(c.get("tokens")), num(c.get("usd")), num(c.get("evaluations")),
                     num(c.get("usd_total"))])
    return Table("Cost per cell (mean over seeds)", ["Method", "Benchmark", "Cells", "Accuracy (%)", "Requests",
                                                     "Tokens", "Dollars", "Evaluations", "Dollars, all seeds"],
                 rows, key="cost", note="From each cell's metrics (both roles: task and prompt agent).")


def truncation(r: Report) -> Table:
    """Test replies cut off at the reply cap, per method x benchmark, and for the initial prompt."""
    t = r.truncation
    caps: dict[str, set[int]] = {}
    for row in t.itertuples():
        caps.setdefault(row.benchmark, set()).update(row.max_tokens or [])
    heads = [_title(b) + (f" (cap {', '.join(map(str, sorted(caps[b])))})" if caps.get(b) else "")
             for b in r.benchmarks]
    idx = t.set_index(["method", "benchmark"]) if len(t) else None

    def rate(k: float, n: float) -> str:
        return "–" if not n or math.isnan(n) or math.isnan(k) else f"{100 * k / n:.1f}% ({int(k)}/{int(n)})"

    rows = [[m, *[rate(idx.loc[(m, b), "truncated"], idx.loc[(m, b), "n"])
                  if idx is not None and (m, b) in idx.index else "–" for b in r.benchmarks]] for m in row_order(r)]
    if len(t) and t.initial_n.notna().any():
        init = t.groupby("benchmark")[["initial_truncated", "initial_n"]].sum(min_count=1)
        rows.append(["initial prompt", *[rate(init.loc[b, "initial_truncated"], init.loc[b, "initial_n"])
                                         if b in init.index else "–" for b in r.benchmarks]])
    return Table("Truncated replies (% of test replies cut off at the reply cap)", ["Method", *heads], rows,
                 key="truncation", muted=[len(rows) - 1] if rows and rows[-1][0] == "initial prompt" else [],
                 note="Metrics test_truncated / n_test of each finished cell, summed over seeds (stores without "
                      "them: counted from the per-example records); cap: the task agent's reply cap on the test "
                      "split (metric max_tokens). A high rate penalises long reasoning and rewards brevity.")


def _basis(r: Report) -> str:
    return "cell" if r.stage_basis == "cell" else "target"


def stages(r: Report) -> Table:
    """Shared stages: cost once, and amortised over the cells (or targets) they serve."""
    unit = _basis(r)
    rows = []
    for s in r.stages.itertuples():
        rows.append([s.kind, s.key, ", ".join(s.methods), ", ".join(s.targets), s.status, num(s.requests),
                     num(s.tokens), dollars(s.usd), num(s.evaluations), num(s.wall_s), str(s.served),
                     dollars(s.usd_each), num(s.evaluations_each)])
    total = float(r.stages.usd.sum()) if len(r.stages) else 0.0
    how = ("its cost / the finished cells of this report that used it (tag stage_keys)" if unit == "cell" else
           "its cost / (targets × methods) it serves (the cells do not name their stages)")
    return Table("Shared stages (cost once, amortised)", ["Stage", "Key", "Methods", "Targets", "Status", "Requests",
                 "Tokens", "Dollars (once)", "Evaluations", "Wall (s)", f"{unit.title()}s served",
                 f"Dollars per {unit}", f"Evaluations per {unit}"], rows, key="stages",
                 note=f"Amortised per {unit}: {how}. Shared stages in total: ${total:,.2f}, paid once. "
                      f"{paper.COST_NOTE}")


def method_cost(r: Report) -> Table:
    """Per method: its own per-cell cost (fine-tuning) beside its share of the shared stages."""
    unit = _basis(r)
    rows = []
    order = {m: i for i, m in enumerate(row_order(r))}
    for c in sorted(r.method_cost.itertuples(), key=lambda c: order.get(c.method, len(order))):
        rows.append([c.method, str(c.cells), dollars(c.usd), f"{dollars(c.usd_lo)}-{dollars(c.usd_hi)}",
                     num(c.evaluations), dollars(c.stage_usd), num(c.stage_evaluations)])
    cells_usd = float(pd.to_numeric(r.cells.get("usd"), errors="coerce").sum()) if "usd" in r.cells else 0.0
    stage_usd = float(r.stages.usd.sum()) if len(r.stages) else 0.0
    return Table("Cost per method: own run per cell, shared stages amortised", [
        "Method", "Cells", "Dollars per cell (own run)", "Range over benchmarks", "Evaluations per cell",
        f"Shared stages, dollars per {unit}", f"Shared stages, evaluations per {unit}"], rows, key="method_cost",
        note=f"Own run: the cell's metrics (fine-tuning, both roles). Shared stages amortised per {unit} "
             f"(see 'Shared stages'). Whole experiment: cells ${cells_usd:,.2f} + shared stages ${stage_usd:,.2f} "
             f"once = ${cells_usd + stage_usd:,.2f}. {paper.COST_NOTE}")


def swap_note(r: Report) -> str:
    """The model-swap experiment's published averages, when the run is that protocol."""
    if r.protocol != S.PROTOCOL_SWAP:
        return ""
    ref = paper.SWAP
    return (f"Model swap ({paper.SWAP_MODELS}): {paper.CITATION} reports avg "
            f"{ref['manual-cot']['avg']:.2f} -> {ref['sepo-generalist']['avg']:.2f} (read as Manual-CoT -> "
            "SePO-Generalist; the paper gives only these averages).")


def settings_rows(settings: dict[str, Any], uri: str, experiment: str, r: Report) -> list[tuple[str, str]]:
    cfg = settings.get("config") or {}
    code = settings.get("code_version") or {}
    llm = cfg.get("llm") or {}

    def model(role: str) -> str:
        if not cfg:
            return "not recorded"
        e = llm.get(role) or {}
        name = e.get("model") or e.get("local_model") or "default embedded model"
        where = "embedded llama.cpp" if not e.get("base_url") else "endpoint"
        temp = e.get("temperature")
        return f"{name} ({where}" + (f", temperature {temp}" if temp is not None else "") + ")"

    seeds = sorted({int(s) for s in r.cells.seed}) if len(r.cells) else []
    rows = [("Experiment", f"{experiment} ({uri})"),
            ("Endpoint", "SIMULATED (the rehearsal's built-in world)" if r.simulated else "as configured below"),
            ("Protocol", {S.PROTOCOL_PAPER: f"the paper's ({paper.CITATION}, Tables 1 and 2)",
                          S.PROTOCOL_SWAP: f"the paper's model swap ({paper.SWAP_MODELS})"}.get(r.protocol or "",
                                                                                           "not the paper's")),
            ("Code version", ", ".join(f"{k} {v}" for k, v in code.items()) or "not recorded"),
            ("Seeds", ", ".join(map(str, seeds)) or "–"),
            ("Methods", ", ".join(r.methods) or "–"), ("Benchmarks", ", ".join(r.benchmarks) or "–"),
            ("Task model", model("task")), ("Prompt model", model("prompt"))]
    budget = {k: v for k, v in (llm.get("budget") or {}).items() if v is not None}
    rows.append(("Budget caps, whole run", ", ".join(f"{k} {v}" for k, v in budget.items()) or "none"))
    per_cell = {k: v for k, v in (cfg.get("budget_per_cell") or {}).items() if v is not None}
    rows.append(("Budget caps, per cell", ", ".join(f"{k} {v}" for k, v in per_cell.items()) or "none"))
    if cfg.get("held_out"):
        rows.append(("Held out of pre-training", ", ".join(map(str, cfg["held_out"]))))
    benches = []
    for b in cfg.get("benchmarks") or []:
        if isinstance(b, dict):
            sizes = ", ".join(f"{k} {b[k]}" for k in ("n_train", "n_val", "n_test") if b.get(k))
            benches.append(f"{b.get('name')}" + (f" ({sizes})" if sizes else ""))
    if benches:
        rows.append(("Benchmark splits", "; ".join(benches)))
    for m, s in (cfg.get("methods") or {}).items():
        rows.append((f"Settings of {m}", json.dumps(s, sort_keys=True) if s else "defaults"))
    return rows


def figure_notes() -> dict[str, str]:
    return {"best_by_generation": "Best training-minibatch score reached by each generation (running maximum within "
                                  "a cell, mean over the method's cells); task-prompt candidates only.",
            "accuracy_vs_cost": "Mean test accuracy against mean cost per cell, per method and benchmark.",
            "run_vs_paper": "Each method's mean test accuracy with its 95% interval (filled) beside the number the "
                            "paper reports for the same protocol (hollow diamond), per benchmark and on average.",
            "lineage": "The archive of the cell with the best test accuracy among SePO cells (any cell if none)."}


# ---------------------------------------------------------------------------------------- markdown


def _md_table(t: Table) -> str:
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")
    lines = [f"### {t.title}", "", "| " + " | ".join(map(cell, t.headers)) + " |",
             "|" + "|".join("---" for _ in t.headers) + "|"]
    lines += ["| " + " | ".join(map(cell, [f"_{row[0]}_", *row[1:]] if i in t.muted else row)) + " |"
              for i, row in enumerate(t.rows)]
    if not t.rows:
        lines.append("| " + " | ".join(["(none)"] + [""] * (len(t.headers) - 1)) + " |")
    if t.note:
        lines += ["", f"_{t.note}_"]
    return "\n".join(lines) + "\n"


def markdown(title: str, warnings: list[str], settings: list[tuple[str, str]], tables: list[Table],
             figures: dict[str, Path], headline: str = "") -> str:
    out = [f"> **{headline}**", ""] if headline else []
    out += [f"# {title}", ""]
    for w in warnings:
        out += [f"> **Warning:** {w}", ""]
    out += ["", "## Settings", "", "| | |", "|---|---|"]
    out += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in settings]
    out += ["", "## Results", ""]
    out += [_md_table(t) for t in tables]
    out += ["## Figures", ""]
    notes = figure_notes()
    for name, path in figures.items():
        out += [f"![{name}]({path.name})", "", f"_{notes.get(name, '')}_", ""]
    out += ["## Statistics", "", (stats.__doc__ or "").split("Conventions (the report states them too):")[-1].strip()]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------- html

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;
padding:0 16px}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
.banner{background:#fff3cd;border:1px solid #e0b100;border-left:6px solid #e0b100;padding:10px 14px;margin:8px 0;
border-radius:4px}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
td.best{font-weight:700;background:#e6f4ea !important}
.note{color:#555;font-size:12px;max-width:1000px}
figure{margin:16px 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:12px}
.broken{outline:4px solid red}
pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}
.headline{background:#f8d7da;border-color:#c0392b;font-size:1.3em;font-weight:700;color:#7b1d1d}
tr.ref td{color:#666;font-style:italic;background:#f4f7fb !important}
"""

# Marks an image that failed to decode (a red outline and a body attribute the screenshot script reads).
CHECK_JS = """
window.addEventListener('load', function () {
  var bad = 0;
  document.querySelectorAll('img').forEach(function (img) {
    if (!img.complete || img.naturalWidth === 0) { img.classList.add('broken'); bad++; }
  });
  document.body.setAttribute('data-images', document.images.length);
  document.body.setAttribute('data-broken-images', bad);
  document.body.setAttribute('data-tables', document.querySelectorAll('table.report').length);
});
"""


def _html_table(t: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in t.headers)
    body = []
    for i, row in enumerate(t.rows):
        tds = []
        for v in row:
            s = str(v)
            if s.startswith("**"):
                inner = s[2:].replace("**", "", 1)
                tds.append(f'<td class="best">{e(inner)}</td>')
            else:
                tds.append(f"<td>{e(s)}</td>")
        body.append(("<tr class='ref'>" if i in t.muted else "<tr>") + "".join(tds) + "</tr>")
    if not t.rows:
        body.append(f'<tr><td colspan="{len(t.headers)}">(none)</td></tr>')
    note = f'<p class="note">{e(t.note)}</p>' if t.note else ""
    return (f'<h3>{e(t.title)}</h3>\n<table class="report" id="{e(t.key)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>{note}")


def html_page(title: str, warnings: list[str], settings: list[tuple[str, str]], tables: list[Table],
              figures: dict[str, Path], config_text: str = "", headline: str = "") -> str:
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
             f"<style>{CSS}</style><script>{CHECK_JS}</script></head><body>"]
    if headline:
        parts.append(f'<div class="banner headline" id="headline">{e(headline)}</div>')
    parts.append(f"<h1>{e(title)}</h1>")
    parts += [f'<div class="banner"><b>Warning:</b> {e(w)}</div>' for w in warnings]
    parts.append("<h2>Settings</h2><table class='settings'>")
    parts += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in settings]
    parts.append("</table>")
    if config_text:
        parts.append(f"<details><summary>Experiment file</summary><pre>{e(config_text)}</pre></details>")
    parts.append("<h2>Results</h2>")
    parts += [_html_table(t) for t in tables]
    parts.append("<h2>Figures</h2>")
    notes = figure_notes()
    for name, path in figures.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f'<figure id="fig-{e(name)}"><img alt="{e(name)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{e(notes.get(name, ''))}</figcaption></figure>")
    doc = (stats.__doc__ or "").split("Conventions (the report states them too):")[-1].strip()
    parts.append(f"<h2>Statistics</h2><pre>{e(doc)}</pre></body></html>")
    return "\n".join(parts)
