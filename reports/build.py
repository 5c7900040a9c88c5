"""Read an experiment from MLflow, compute the tables, draw the figures, write Markdown and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from reports import analysis, paper, plots, render
from reports import cells as bookkeeping


def best_cell(report: analysis.Report) -> pd.Series | None:
    """The cell with the best test accuracy among SePO cells (among all cells if there are none)."""
    if report.scores.empty:
        return None
    acc = report.scores.groupby("run_id").score.mean()
    cells = report.cells.set_index("run_id")
    sepo = [r for r in acc.index if analysis.is_sepo(cells.loc[r, "method"], report.infos)]
    pick = acc[sepo] if sepo else acc
    run_id = pick.idxmax()
    row = cells.loc[run_id].copy()
    row["run_id"], row["accuracy"] = run_id, float(pick[run_id])
    return row


def _paper_name(report: analysis.Report, method: str, ref: dict) -> str | None:
    """The paper's row for a method: its run name, else its registered method."""
    base = report.infos[method].base if method in report.infos else method
    return method if method in ref else base if base in ref else None


def figures(data: Any, report: analysis.Report, out: Path) -> dict[str, Path]:
    figs = {"best_by_generation": plots.best_by_generation(data.candidates, report.cells,
                                                           out / "best_by_generation.png"),
            "accuracy_vs_cost": plots.accuracy_vs_cost(report.cost, out / "accuracy_vs_cost.png")}
    ref = paper.reference(report.protocol)[0]
    rows = {m: r for m in render.table1_methods(report) if (r := _paper_name(report, m, ref))}
    if rows and report.benchmarks:
        cols = {b: b for b in report.benchmarks if b in paper.BENCHMARKS}
        cols |= {"Average": paper.AVERAGE} if len(report.benchmarks) > 1 else {}
        figs["run_vs_paper"] = plots.run_vs_paper(report.table1, ref, rows, cols, out / "run_vs_paper.png",
                                                  f"This run (filled, 95% CI) and {paper.CITATION} (hollow)",
                                                  paper.BENCHMARKS)
    best = best_cell(report)
    if best is not None and len(data.candidates):
        cands = data.candidates[data.candidates.run_id == best["run_id"]]
        title = (f"Lineage: {best['method']} on {best['benchmark']}, seed {best['seed']} "
                 f"(test {100 * best['accuracy']:.1f}%)")
        figs["lineage"] = plots.lineage_tree(cands, out / "lineage.png", title)
    else:
        figs["lineage"] = plots.lineage_tree(pd.DataFrame(), out / "lineage.png", "Lineage")
    return figs


def tables(report: analysis.Report) -> list[render.Table]:
    """Accuracy first (Tables 1 and 2), then what qualifies it (truncation, cost), then the tests."""
    out = [render.table1(report)]
    t2 = render.table2(report)
    if t2 is not None:
        out.append(t2)
    out += [render.truncation(report), render.method_cost(report)]
    if len(report.stages):
        out.append(render.stages(report))
    held = render.heldout(report)
    if held is not None:
        out.append(held)
    out.append(render.comparisons(report.comparisons, "Paired comparisons per benchmark", "comparisons",
                                  render.COMPARISON_NOTE))
    if not report.ablations.empty:
        out.append(render.comparisons(report.ablations, "Ablations against the full method", "ablations",
                                      render.COMPARISON_NOTE.replace("this table", "the ablation table")))
    out.append(render.cost(report))
    return out


def build_report(uri: str | None, experiment: str, out_dir: str | Path) -> dict[str, Path]:
    from harness.tracking import load_experiment

    data = load_experiment(uri, experiment)
    report = analysis.build(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = figures(data, report, out)
    tabs = tables(report)
    settings = render.settings_rows(data.settings, data.uri, experiment, report)
    title = f"SePO benchmark report: {experiment}"
    md = out / "report.md"
    headline = bookkeeping.SIMULATED_BANNER if report.simulated else ""
    md.write_text(render.markdown(title, report.warnings, settings, tabs, figs, headline), encoding="utf-8")
    page = out / "report.html"
    page.write_text(render.html_page(title, report.warnings, settings, tabs, figs,
                                     data.settings.get("config_text", ""), headline), encoding="utf-8")
    for name, frame in (("table1", report.table1), ("comparisons", report.comparisons), ("cost", report.cost),
                        ("heldout", report.heldout), ("ablations", report.ablations),
                        ("truncation", report.truncation), ("stages", report.stages),
                        ("method_cost", report.method_cost), ("failed", report.failed)):
        frame.to_csv(out / f"{name}.csv", index=False)
    return {"markdown": md, "html": page, **figs}
