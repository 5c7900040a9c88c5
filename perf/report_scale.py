"""Report build time and MLflow store size at the paper's scale (9 methods x 5 benchmarks x 5 seeds = 225 cells,
plus the shared stages), on a synthetic store written through harness.tracking like the runner writes it
(tests/paper_grid.py).

    .venv/bin/python perf/report_scale.py                       # 5 seeds, 20 test items per cell
    .venv/bin/python perf/report_scale.py --seeds 1 --screenshot /tmp/report.png --keep /tmp/grid

Prints one JSON line: cells, write time, store size (sqlite file and artifacts), read time (load_experiment),
report build time (read + tables + figures + Markdown/HTML), and the screenshot's path when asked for.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n-test", type=int, default=20, help="test items per cell")
    ap.add_argument("--screenshot", type=Path, default=None, help="a PNG of the report (headless Chromium)")
    ap.add_argument("--keep", type=Path, default=None, help="write the store and report here and keep them")
    args = ap.parse_args(argv)

    from harness.tracking import load_experiment
    from reports import build_report
    from tests import paper_grid

    d = args.keep or Path(tempfile.mkdtemp(prefix="sepo-report-scale-"))
    d.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.monotonic()
        grid = paper_grid.write_grid(str(d), seeds=args.seeds, n_test=args.n_test)
        write_s = time.monotonic() - t0
        t0 = time.monotonic()
        load_experiment(str(d), grid.experiment)
        read_s = time.monotonic() - t0
        t0 = time.monotonic()
        paths = build_report(str(d), grid.experiment, d / "report")
        build_s = time.monotonic() - t0
        out = {"cells": grid.cells, "stages": len(grid.stage_usd), "write_s": round(write_s, 1),
               "read_s": round(read_s, 1), "report_build_s": round(build_s, 1),
               "store_db_mb": round((d / "mlflow.db").stat().st_size / 1e6, 2),
               "store_artifacts_mb": round(size(d / "mlartifacts") / 1e6, 2), "report": str(paths["html"])}
        if args.screenshot:
            import screenshot

            shot = screenshot.screenshot(str(paths["html"]), args.screenshot, height=5200)
            out["screenshot"] = str(shot)
        print(json.dumps(out))
    finally:
        if args.keep is None:
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
