"""Run every canonical MBPP solution with its tests in the Docker sandbox and report the pass rate.

Usage: python scripts/mbpp_canonical.py [--sanitized] [--limit N] [--backend docker|local] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sandboxes import make_sandbox
from sandboxes.base import Program, RunResult, Sandbox


def data_dir() -> Path:
    return Path(os.environ.get("SEPO_DATA_DIR") or ROOT.parent / "shared" / "data")


def load_programs(sanitized: bool = False, limit: int | None = None,
                  setup_first: bool = False) -> list[tuple[int, Program]]:
    """(task_id, Program) for each MBPP row: the dataset's own solution, setup code and test asserts.

    MBPP's test_setup_code (2 rows: 367, 927) builds objects from classes the solution defines, so it
    must run after the code, just before the asserts; setup_first=True passes it as Program.setup instead
    (and those two rows fail). Sanitized test_imports are plain imports and go in Program.setup."""
    d = data_dir() / "mbpp"
    if sanitized:
        rows = json.loads((d / "sanitized-mbpp.json").read_text())
        items = [(r["task_id"], Program(r["code"], "\n".join(r["test_list"]), "\n".join(r["test_imports"])))
                 for r in rows]
    else:
        with open(d / "mbpp.jsonl") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        items = [(r["task_id"], Program(r["code"], "\n".join(r["test_list"]), r["test_setup_code"]) if setup_first
                  else Program(r["code"], "\n".join([r["test_setup_code"], *r["test_list"]])))
                 for r in rows]
    return items[:limit] if limit else items


def run_all(sandbox: Sandbox, items: list[tuple[int, Program]], timeout_s: float = 10.0,
            step: int = 100) -> list[RunResult]:
    results: list[RunResult] = []
    t0 = time.monotonic()
    for start in range(0, len(items), step):
        results += sandbox.run_many([p for _, p in items[start:start + step]], timeout_s=timeout_s)
        ok = sum(r.passed for r in results)
        print(f"  {len(results)}/{len(items)} run, {ok} passed, {time.monotonic() - t0:.1f}s", flush=True)
    return results


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sanitized", action="store_true", help="use sanitized-mbpp.json (427 tasks)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--setup-first", action="store_true", help="pass test_setup_code as Program.setup")
    ap.add_argument("--backend", default="docker", choices=["docker", "local"])
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args(argv)
    items = load_programs(args.sanitized, args.limit, args.setup_first)
    kw = {"allow": True} if args.backend == "local" else {}
    sandbox = make_sandbox(args.backend, **kw)
    try:
        t0 = time.monotonic()
        results = run_all(sandbox, items, args.timeout)
        wall = time.monotonic() - t0
    finally:
        sandbox.close()
    n_ok = sum(r.passed for r in results)
    rate = n_ok / len(items) if items else 0.0
    print(f"passed {n_ok}/{len(items)} ({100 * rate:.1f}%) in {wall:.1f}s ({len(items) / wall:.1f} programs/s)")
    for (task_id, _), r in zip(items, results, strict=True):
        if not r.passed:
            print(f"  FAIL task {task_id}: {r.reason}")
    return rate


if __name__ == "__main__":
    sys.exit(0 if main() == 1.0 else 1)
