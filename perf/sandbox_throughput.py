"""Throughput: N canonical MBPP programs through DockerSandbox.run_many vs a bare subprocess per program.

Usage: python perf/sandbox_throughput.py [-n 200] [--pool 2] [--repeat 2] [--compare-runner OLD_RUNNER.py]
The bare baseline runs `python3 file.py` per program with no limits: sequentially, and with --pool threads.
--compare-runner also times an older runner.py (one that takes whole program files, as before the runner
parsed tests itself) on the same warm pool, alternating old and new runs so that load from other work on the
machine falls on both alike, and prints new/old throughput (best of --repeat pairs, and the median ratio).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sandboxes.docker as sdocker
import sandboxes.local as slocal
from sandboxes.docker import DockerSandbox
from sandboxes.local import compose

_spec = importlib.util.spec_from_file_location("mbpp_canonical", ROOT / "scripts" / "mbpp_canonical.py")
mbpp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mbpp)


def bare(sources: list[str], workers: int, python: str) -> tuple[float, int]:
    """Run each source as `python file.py`; returns (seconds, number passed)."""
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, s in enumerate(sources):
            paths.append(os.path.join(d, f"p{i}.py"))
            Path(paths[-1]).write_text(s)

        def one(path: str) -> bool:
            return subprocess.run([python, path], check=False, capture_output=True, timeout=30, cwd=d).returncode == 0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(workers) as ex:
            ok = sum(ex.map(one, paths))
        return time.perf_counter() - t0, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--pool", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="best of R runs for each side")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the bare baseline")
    ap.add_argument("--compare-runner", default=None, help="an older runner.py to time against this one")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare subprocess baseline")
    args = ap.parse_args()
    if args.compare_runner:
        compare(args)
        return
    programs = [p for _, p in mbpp.load_programs(limit=args.n)]
    n = len(programs)
    sources = [compose(p) for p in programs]
    t0 = time.perf_counter()
    sb = DockerSandbox(pool_size=args.pool)
    print(f"docker pool of {args.pool} started in {time.perf_counter() - t0:.2f}s")
    try:
        sb.run_many(programs[:4])  # warm the page cache in the containers
        if args.no_bare:
            docker_s, docker_ok = min(_timed(sb, programs) for _ in range(args.repeat))
            print(f"{n} MBPP canonical programs, docker run_many {docker_s:.2f}s  {n / docker_s:.1f} programs/s "
                  f"({docker_ok}/{n} passed)")
            return
        docker_s, docker_ok = min(_timed(sb, programs) for _ in range(args.repeat))
    finally:
        sb.close()
    seq_s, seq_ok = min(bare(sources, 1, args.python) for _ in range(args.repeat))
    par_s, par_ok = min(bare(sources, args.pool, args.python) for _ in range(args.repeat))
    rows = [("docker run_many", docker_s, docker_ok), ("bare sequential", seq_s, seq_ok),
            (f"bare {args.pool} threads", par_s, par_ok)]
    print(f"{n} MBPP canonical programs, best of {args.repeat}, {os.cpu_count()} CPUs")
    for name, s, ok in rows:
        print(f"  {name:<18} {s:6.2f}s  {n / s:6.1f} programs/s  ({ok}/{n} passed)")
    print(f"ratio docker/bare sequential: {seq_s / docker_s:.2f}x   "
          f"docker/bare {args.pool} threads: {par_s / docker_s:.2f}x   (target >= 0.5x)")


class _Runner:
    """Swap the runner the sandboxes send (and how programs are sent) for one run."""

    def __init__(self, path: str | None) -> None:
        self.source = Path(path).read_text() if path else None

    def __enter__(self) -> None:
        if self.source is not None:
            self.saved = (slocal.runner_source, sdocker.runner_source, sdocker.to_wire)
            sdocker.runner_source = lambda: self.source
            sdocker.to_wire = compose  # the old runner takes one file per program

    def __exit__(self, *exc: object) -> None:
        if self.source is not None:
            slocal.runner_source, sdocker.runner_source, sdocker.to_wire = self.saved


def compare(args: argparse.Namespace) -> None:
    import statistics

    programs = [p for _, p in mbpp.load_programs(limit=args.n)]
    n = len(programs)
    sb = DockerSandbox(pool_size=args.pool)
    old, new = _Runner(args.compare_runner), _Runner(None)
    times: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for which in (old, new):
            with which:
                sb.run_many(programs[:8])  # warm
        for _ in range(args.repeat):
            for name, which in (("old", old), ("new", new)):
                with which:
                    t = time.perf_counter()
                    res = sb.run_many(programs)
                    times[name].append(time.perf_counter() - t)
                if name == "new":
                    new_ok = sum(r.passed for r in res)
    finally:
        sb.close()
    best = {k: n / min(v) for k, v in times.items()}
    ratios = [o / w for o, w in zip(times["old"], times["new"], strict=True)]
    print(f"{n} MBPP canonical programs, {args.repeat} alternating pairs, pool {args.pool}, {os.cpu_count()} CPUs")
    print(f"  old runner  best {best['old']:6.1f} programs/s   runs {[round(n / t, 1) for t in times['old']]}")
    print(f"  new runner  best {best['new']:6.1f} programs/s   runs {[round(n / t, 1) for t in times['new']]}  "
          f"({new_ok}/{n} passed)")
    print(f"new/old: best {best['new'] / best['old']:.2f}x   median of pairs {statistics.median(ratios):.2f}x   "
          "(target >= 0.9x)")


def _timed(sb: DockerSandbox, programs: list) -> tuple[float, int]:
    t = time.perf_counter()
    res = sb.run_many(programs)
    return time.perf_counter() - t, sum(r.passed for r in res)


if __name__ == "__main__":
    main()
