"""Statistical comparison reports, read from MLflow (the only source of truth).

`build_report(uri, experiment, out_dir)` reads an experiment through harness.tracking.load_experiment and
writes report.md, report.html (self-contained: figures embedded) and the figures as PNG files:

- a first-line banner when the endpoint was simulated (the rehearsal), then warnings: failed cells with
  their reasons (left out of everything), cells stopped on budget before their method's schedule ended,
  small runs, runs on the embedded local models;
- Table 1 (the paper's layout: its methods and benchmarks, other methods as extra rows) and Table 2 (SePO's
  ablations): accuracy per method x benchmark and avg, mean over seeds with 95% bootstrap intervals (seeds
  and items), best per column marked, a column of budget stops before the schedule's end; the paper's
  numbers (reports/paper.py) beside the run's when the run follows the paper's protocol (or its model swap);
- paired item-level comparisons per benchmark (SePO variants vs each baseline, each method vs Manual-CoT):
  exact McNemar or permutation tests, effect sizes, Holm-adjusted p-values, minimum detectable differences;
- held-out generalization, ablation tests, truncated replies per method x benchmark (with the reply caps);
- cost: shared stages (pre-training, meta-training) once and amortised per cell or target they serve,
  beside each method's own per-cell cost; per method x benchmark (requests, tokens, dollars, evaluations);
- figures: best score by generation, accuracy vs cost, the lineage tree of the best cell's archive;
- the experiment's settings.
"""

from __future__ import annotations

from pathlib import Path


def build_report(uri: str | None, experiment: str, out_dir: str | Path) -> dict[str, Path]:
    """Write the report of one MLflow experiment into out_dir; returns {"markdown", "html", "<figure>": png}."""
    from reports.build import build_report as _build

    return _build(uri, experiment, out_dir)


__all__ = ["build_report"]
