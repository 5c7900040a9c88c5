"""CI regression benchmark: a small fixed experiment replayed from recorded model replies, compared with a baseline.

    .venv/bin/python perf/bench_regression.py            # run and compare (exit 1 when something moved)
    .venv/bin/python perf/bench_regression.py --update   # run and make the result the new baseline (on purpose)
    .venv/bin/python scripts/record_bench.py             # re-record the replies from the local models

The experiment is `configs/bench-regression.yaml` (SePO with a small Specialist pre-training, and Manual-CoT, on
MBPP). Every LLM reply comes from `perf/regression/responses.jsonl` (recorded once from the embedded local
models by scripts/record_bench.py) through the response cache's `replay` mode: no model server starts, and a
replayed reply is accounted as the paid request it was when recorded, so requests, tokens and budget stops
come out as in the recorded run. The code's outputs are deterministic given the replies (seeded splits,
minibatches and proposals; MBPP programs run in the Docker sandbox), so the run is fast and repeatable.

Compared per cell (method x benchmark x seed) with `perf/regression/baseline.json`: test accuracy of the best
and the initial prompt, the best candidate's train and val scores, candidates (total, admitted, skipped),
requests, cache hits, prompt and completion tokens and example evaluations (the optimizer's and the test
scoring's). The tolerances are stated in the baseline file (`tolerance`): scores may move by at most
`score_abs` (absolute), counts and tokens by at most `count_rel` (relative) - 0 for both by default, since a
replay is exact. A request the recording never made (the code now asks something else: a prompt template, a
feedback format or a scorer changed) is answered with an empty reply and counted as a replay miss, so the table
shows everything that moved instead of stopping at the first miss; any miss fails the benchmark. When the
change is intended, re-record (scripts/record_bench.py) and commit the new responses and baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SEPO_DATA_DIR", str(ROOT.parent / "shared" / "data"))

CONFIG = ROOT / "configs" / "bench-regression.yaml"
REGRESSION = ROOT / "perf" / "regression"
RESPONSES = REGRESSION / "responses.jsonl"
BASELINE = REGRESSION / "baseline.json"
DEFAULT_TOLERANCE = {"score_abs": 0.0, "count_rel": 0.0}
SCORES = ("best_test", "initial_test", "best_train", "best_val")
COUNTS = ("candidates", "admitted", "skipped", "requests", "cache_hits", "prompt_tokens", "completion_tokens",
          "evaluations", "test_requests", "test_tokens", "replay_misses")


def import_responses(src: Path, db: Path) -> int:
    """Load the recorded replies (JSONL: key, value) into a fresh response-cache database."""
    from harness.llm.cache import ResponseCache

    cache = ResponseCache(db, "read-write")
    n = 0
    with src.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                cache.put(row["key"], row["value"])
                n += 1
    cache.close()
    return n


def export_responses(db: Path, dst: Path) -> int:
    """Every cached reply as JSONL sorted by key (stable diffs when re-recorded)."""
    from harness.files import write_atomic

    con = sqlite3.connect(db)
    rows = con.execute("SELECT key, value FROM responses ORDER BY key").fetchall()
    con.close()
    write_atomic(dst, "".join(json.dumps({"key": key, "value": json.loads(value)}, ensure_ascii=False,
                                         sort_keys=True) + "\n" for key, value in rows))
    return len(rows)


class MissCounter:
    """Replay misses answered with an empty reply (instead of an error) and counted, per process."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def install(self) -> None:
        from harness.llm import cache as cache_mod

        real_get = cache_mod.ResponseCache.get
        counter = self

        def get(self, key: str):
            hit = real_get(self, key)
            if hit is None and self.mode == "replay":
                counter.keys.append(key)
                return {"text": "", "prompt_tokens": 0, "completion_tokens": 0, "finish_reason": "replay-miss"}
            return hit

        cache_mod.ResponseCache.get = get
        self._restore = (cache_mod.ResponseCache, real_get)

    def uninstall(self) -> None:
        cls, real = self._restore
        cls.get = real


def cell_metrics(row: dict[str, Any]) -> dict[str, Any]:
    cands = row.get("candidates") or []
    usage = (row.get("usage") or {}).get("total", {})
    test = (row.get("test_usage") or {}).get("total", {})
    return {
        "best_test": row.get("best_test"), "initial_test": row.get("initial_test"),
        "best_train": row.get("best_train"), "best_val": row.get("best_val"),
        "candidates": len(cands),
        "admitted": sum(1 for c in cands if (c.get("meta") or {}).get("admitted") is True),
        "skipped": sum(1 for c in cands if (c.get("meta") or {}).get("skipped")),
        "requests": usage.get("requests", 0), "cache_hits": usage.get("cache_hits", 0),
        "prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0),
        "evaluations": usage.get("evaluations", 0), "test_requests": test.get("requests", 0),
        "test_tokens": test.get("tokens", 0),
    }


def run_replay(config: Path = CONFIG, responses: Path = RESPONSES, workdir: Path | None = None,
               *, mode: str = "replay", quiet: bool = False) -> dict[str, Any]:
    """Run the bench experiment on replayed replies (mode 'replay'), or record them (mode 'read-write' with a
    fresh cache at `responses`' database). Returns {"cells": {cell: metrics}, "wall_s", "replay_misses"}."""
    import contextlib
    import io

    from harness.config import load_config
    from harness.experiment import Experiment, RunOptions

    with tempfile.TemporaryDirectory(prefix="sepo-bench-") as tmp:
        work = Path(workdir or tmp)
        db = work / "cache.sqlite"
        if mode == "replay":
            import_responses(responses, db)
        forced = os.environ.pop("SEPO_LOCAL_MODEL", None)  # the recording pins its models
        try:
            cfg = load_config(config)
        finally:
            if forced is not None:
                os.environ["SEPO_LOCAL_MODEL"] = forced
        cfg.output_dir = str(work / "runs")
        cfg.llm.cache.path = str(db)
        cfg.llm.cache.mode = mode
        cfg.tracking.enabled = False
        misses = MissCounter()
        if mode == "replay":
            misses.install()
        t0 = time.monotonic()
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
                rows = Experiment(cfg, RunOptions(fresh=True)).run()
        finally:
            if mode == "replay":
                misses.uninstall()
        wall = time.monotonic() - t0
        cells = {f"{r['method']}/{r['benchmark']}/seed{r['seed']}": cell_metrics(r) for r in rows}
        cells["(whole run)"] = {"replay_misses": len(misses.keys)}
        if mode != "replay":
            export_responses(db, responses)
        return {"cells": cells, "wall_s": round(wall, 1), "replay_misses": len(misses.keys)}


def _moved(old: Any, new: Any, kind: str, tol: dict[str, float]) -> bool:
    if old is None or new is None:
        return old != new
    if kind == "score":
        return abs(float(new) - float(old)) > tol["score_abs"] + 1e-9
    if old == 0:
        return new != 0
    return abs(float(new) - float(old)) / abs(float(old)) > tol["count_rel"] + 1e-12


def compare(baseline: dict[str, Any], current: dict[str, Any]) -> tuple[bool, str]:
    """(passed, a table of every metric that moved beyond the tolerance; all metrics when verbose)."""
    tol = {**DEFAULT_TOLERANCE, **baseline.get("tolerance", {})}
    base_cells, cur_cells = baseline.get("cells", {}), current.get("cells", {})
    rows: list[tuple[str, str, str, str, str]] = []
    for cell in sorted(set(base_cells) | set(cur_cells)):
        b, c = base_cells.get(cell), cur_cells.get(cell)
        if b is None or c is None:
            rows.append((cell, "(cell)", "absent" if b is None else "present", "absent" if c is None else "present",
                         "cell added" if b is None else "cell missing"))
            continue
        for key in (*SCORES, *COUNTS):
            kind = "score" if key in SCORES else "count"
            if _moved(b.get(key), c.get(key), kind, tol):
                rows.append((cell, key, _fmt(b.get(key)), _fmt(c.get(key)), _delta(b.get(key), c.get(key), kind)))
    if not rows:
        return True, ""
    head = ("cell", "metric", "baseline", "now", "change")
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(5)]
    rule = tuple("-" * w for w in widths)
    table = "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in (head, rule, *rows))
    return False, table


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not float(v).is_integer():
        return f"{v:.4f}"
    return str(int(v)) if isinstance(v, float | int) and not isinstance(v, bool) else str(v)


def _delta(old: Any, new: Any, kind: str) -> str:
    if old is None or new is None:
        return "appeared" if old is None else "vanished"
    d = float(new) - float(old)
    if kind == "score":
        return f"{d:+.4f}"
    rel = f" ({d / float(old):+.1%})" if old else ""
    return f"{d:+.0f}{rel}"


def summary_table(current: dict[str, Any]) -> str:
    lines = []
    for cell, m in current["cells"].items():
        if "best_test" not in m:
            continue
        lines.append(f"  {cell}: test {m['best_test']:.3f} (initial {m['initial_test']:.3f}), {m['candidates']} "
                     f"candidates ({m['admitted']} admitted, {m['skipped']} skipped), {m['requests']} requests, "
                     f"{m['prompt_tokens'] + m['completion_tokens']} tokens, {m['evaluations']} evaluations")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--update", action="store_true", help="write this run as the new baseline")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--responses", type=Path, default=RESPONSES)
    p.add_argument("--baseline", type=Path, default=BASELINE)
    p.add_argument("--verbose", action="store_true", help="show the experiment's own progress")
    args = p.parse_args(argv)
    if not args.responses.is_file():
        print(f"regression benchmark: no recorded replies at {args.responses}; record them with "
              "`.venv/bin/python scripts/record_bench.py` (needs the local models).", file=sys.stderr)
        return 2
    print(f"regression benchmark: {args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config}"
          f", replies replayed from {args.responses.name} (no model)", flush=True)
    current = run_replay(args.config, args.responses, quiet=not args.verbose)
    print(summary_table(current))
    print(f"  replay: {current['wall_s']} s, {current['replay_misses']} replay misses", flush=True)
    if args.update:
        old = json.loads(args.baseline.read_text()) if args.baseline.is_file() else {}
        data = {"about": "perf/bench_regression.py baseline; update on purpose with --update",
                "tolerance": old.get("tolerance", DEFAULT_TOLERANCE), "cells": current["cells"]}
        if current["replay_misses"]:
            print(f"refusing to write a baseline with {current['replay_misses']} replay misses: re-record the "
                  "replies first (scripts/record_bench.py).", file=sys.stderr)
            return 1
        args.baseline.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        print(f"baseline written: {args.baseline}")
        return 0
    if not args.baseline.is_file():
        print(f"no baseline at {args.baseline}; write one with --update.", file=sys.stderr)
        return 2
    baseline = json.loads(args.baseline.read_text())
    ok, table = compare(baseline, current)
    tol = {**DEFAULT_TOLERANCE, **baseline.get("tolerance", {})}
    if ok:
        print(f"regression benchmark: PASSED ({len(current['cells']) - 1} cells match the baseline; tolerance: scores "
              f"±{tol['score_abs']:g}, counts ±{tol['count_rel']:.0%})")
        return 0
    print(f"regression benchmark: FAILED - these moved beyond the tolerance (scores ±{tol['score_abs']:g} absolute, "
          f"counts and tokens ±{tol['count_rel']:.0%}):\n{table}")
    if current["replay_misses"]:
        print(f"{current['replay_misses']} requests were never recorded: the code now asks the models something "
              "else (a prompt template, feedback or scorer changed).")
    print("If the change is intended: re-record with `.venv/bin/python scripts/record_bench.py` (local models) "
          "or, when only the numbers moved, `make bench-baseline`; commit perf/regression/.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
