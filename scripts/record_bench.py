"""Re-record the CI regression benchmark's replies from the embedded local models, then rewrite its baseline.

    .venv/bin/python scripts/record_bench.py      # or: make bench-record

Runs configs/bench-regression.yaml against the local models with a fresh, empty response cache (so every
request is a real one and the run's accounting is that of a live run), writes every reply to
perf/regression/responses.jsonl (sorted by key), then replays it in a new process
(perf/bench_regression.py --update) to check that the replay needs no model and misses nothing, and to
write perf/regression/baseline.json. Commit both files. Needed whenever the code changes what it asks the
models (prompt templates, feedback, scorers, the bench config); takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "perf"))
sys.path.insert(0, str(ROOT))

import bench_regression as bench  # noqa: E402 (perf/ is not a package)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=bench.CONFIG)
    p.add_argument("--responses", type=Path, default=bench.RESPONSES)
    p.add_argument("--no-baseline", action="store_true", help="record the replies only")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    print(f"recording {args.config} from the local models into {args.responses} ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="sepo-record-") as tmp:
        result = bench.run_replay(args.config, args.responses, Path(tmp), mode="read-write")
    n = sum(1 for line in args.responses.open(encoding="utf-8") if line.strip())
    size = args.responses.stat().st_size
    print(bench.summary_table(result))
    print(f"recorded {n} replies ({size / 1e6:.2f} MB) in {time.monotonic() - t0:.0f} s", flush=True)
    if args.no_baseline:
        return 0
    return subprocess.call([sys.executable, str(ROOT / "perf" / "bench_regression.py"), "--update",
                            "--config", str(args.config), "--responses", str(args.responses)])


if __name__ == "__main__":
    sys.exit(main())
