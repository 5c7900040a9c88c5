"""Statistical comparison reports, read from MLflow (the only source of truth).

`build_report(uri, experiment, out_dir)` reads an experiment through harness.tracking.load_experiment and
writes report.md, report.html (self-contained: figures embedded) and the figures as PNG files:

- Table 1: accuracy per method x benchmark and the average, mean over seeds with 95% bootstrap intervals
  (seeds and items), best per column marked, n per cell;
- paired item-level comparisons per benchmark (SePO variants vs each baseline, each method vs Manual-CoT):
  exact McNemar or permutation tests, effect sizes, Holm-adjusted p-values, minimum detectable differences;
- held-out generalization (Table 2 shape), ablations, cost (requests, tokens, dollars, evaluations);
- figures: best score by generation, accuracy vs cost, the lineage tree of the best cell's archive;
- the experiment's settings, and a warning banner for small runs and runs on the embedded local models.
"""

from __future__ import annotations

from pathlib import Path


def build_report(uri: str | None, experiment: str, out_dir: str | Path) -> dict[str, Path]:
    """Write the report of one MLflow experiment into out_dir; returns {"markdown", "html", "<figure>": png}."""
    from reports.build import build_report as _build

    return _build(uri, experiment, out_dir)


__all__ = ["build_report"]
