"""Throughput: canonical MBPP programs through the Docker sandbox, the old in-container runner vs the new driver.

Usage: python perf/sandbox_throughput.py [-n 200] [--pool 2] [--repeat 3] [--old REV] [--bare]

The old side is sandboxes/image/runner.py as it was before the driver replaced it (read from git history at
run time: the parent of the commit that deleted it, or --old REV), run on the same warm pool with the old
wire format (its verdict came from inside the container). The new side is DockerSandbox.run_many as the
harness calls it: sandboxes/driver.py plus the host-side checks. Old and new runs alternate so load from
other work on the machine falls on both alike; prints programs/s of each (best of --repeat) and new/old
(best, and the median of the pairs). --bare adds a bare `python3 file.py` per program on this machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandboxes.docker import DockerSandbox
from sandboxes.wire import compose

_spec = importlib.util.spec_from_file_location("mbpp_canonical", ROOT / "scripts" / "mbpp_canonical.py")
mbpp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mbpp)
OLD_PATH = "sandboxes/image/runner.py"


def old_runner(rev: str | None) -> tuple[str, str]:
    """(revision, source) of the old runner from git history."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout

    if rev is None:
        rev = git("rev-list", "-1", "HEAD", "--", OLD_PATH).strip() + "^"
    return rev, git("show", f"{rev}:{OLD_PATH}")


def bare(sources: list[str], workers: int) -> tuple[float, int]:
    """Each source as `python3 file.py` on this machine, no limits: (seconds, number passed)."""
    with tempfile.TemporaryDirectory() as d:
        paths = [os.path.join(d, f"p{i}.py") for i in range(len(sources))]
        for p, s in zip(paths, sources, strict=True):
            Path(p).write_text(s)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as ex:
            ok = sum(ex.map(lambda p: subprocess.run([sys.executable, p], check=False, capture_output=True,
                                                     timeout=30, cwd=d).returncode == 0, paths))
        return time.perf_counter() - t0, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--pool", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="alternating old/new pairs")
    ap.add_argument("--old", default=None, help="git revision holding the old runner")
    ap.add_argument("--bare", action="store_true", help="also time a bare python3 per program")
    args = ap.parse_args()
    rev, old_source = old_runner(args.old)
    programs = [p for _, p in mbpp.load_programs(limit=args.n)]
    n = len(programs)
    old_wire = [{"code": p.code, "tests": p.tests, "setup": p.setup} for p in programs]
    sb = DockerSandbox(pool_size=args.pool)
    times: dict[str, list[float]] = {"old": [], "new": []}
    passed: dict[str, int] = {}
    try:
        sb.run_many(programs[:8])  # warm both paths
        sb.dispatch(old_wire[:8], 10.0, driver=old_source)
        for _ in range(args.repeat):
            t = time.perf_counter()
            passed["old"] = sum(bool(d.get("passed")) for d in sb.dispatch(old_wire, 10.0, driver=old_source))
            times["old"].append(time.perf_counter() - t)
            t = time.perf_counter()
            passed["new"] = sum(r.passed for r in sb.run_many(programs))
            times["new"].append(time.perf_counter() - t)
    finally:
        sb.close()
    print(f"{n} MBPP canonical programs, docker pool {args.pool}, {args.repeat} alternating pairs, "
          f"{os.cpu_count()} CPUs; old runner from {rev}")
    for name, label in (("old", "old runner (verdict in the container)"), ("new", "new driver + host checks")):
        runs = [round(n / t, 1) for t in times[name]]
        print(f"  {label:<38} best {max(runs):6.1f} programs/s  runs {runs}  ({passed[name]}/{n} passed)")
    best = min(times["old"]) / min(times["new"])
    ratios = [o / w for o, w in zip(times["old"], times["new"], strict=True)]
    print(f"new/old throughput: best {best:.2f}x   median of pairs {statistics.median(ratios):.2f}x")
    if args.bare:
        s, ok = bare([compose(p) for p in programs], args.pool)
        print(f"  bare python3 x{args.pool} threads (this machine) {n / s:6.1f} programs/s  ({ok}/{n} passed)")


if __name__ == "__main__":
    main()
