"""Screenshot the MLflow UI's run list and run comparison of an experiment, in headless Chromium.

    .venv/bin/python scripts/screenshot_mlflow.py sqlite:///runs/reproduce-local/mlflow.db reproduce-local \
        --out-dir runs/reproduce-local/screenshots [--benchmark mbpp] [--max-runs 6]

With a store URI (sqlite://, postgresql://) it starts `mlflow server` on 127.0.0.1 (a free port) on that
store for the capture and stops it after; with an http(s) URI it uses that server. It compares the
finished cell runs (one seed by default: the first), so the page shows methods side by side.
Needs Debian's `chromium` package.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshot import screenshot  # noqa: E402

# The server's job runner imports litellm, which otherwise tries to fetch a cost map from the internet at
# start-up and stalls the server here; jobs are not needed to browse runs.
SERVER_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
              "MLFLOW_DISABLE_TELEMETRY": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UiServer:
    """`mlflow server` on 127.0.0.1 over a store, for as long as the with-block lasts."""

    def __init__(self, store_uri: str, port: int | None = None, timeout_s: float = 180) -> None:
        self.store_uri, self.port, self.timeout_s = store_uri, port or free_port(), timeout_s
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> UiServer:
        binary = Path(sys.executable).with_name("mlflow")
        self.log = tempfile.NamedTemporaryFile("w+", prefix="mlflow-ui-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen([str(binary), "server", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--workers", "1", "--backend-store-uri", self.store_uri],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **SERVER_ENV})
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("mlflow server did not start; its log: " + self.log.name) from None
                time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def pick_runs(url: str, experiment: str, benchmark: str | None, seed: int | None, limit: int) -> tuple[str, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"No experiment named {experiment!r} at {url}.")
    runs = client.search_runs([exp.experiment_id], "tags.`sepo.kind` = 'cell' and attributes.status = 'FINISHED'",
                              max_results=1000)
    if benchmark:
        runs = [r for r in runs if r.data.tags.get("sepo.benchmark") == benchmark]
    seeds = sorted({r.data.tags.get("sepo.seed") for r in runs})
    want = str(seed) if seed is not None else (seeds[0] if seeds else None)
    runs = [r for r in runs if r.data.tags.get("sepo.seed") == want] or runs
    return exp.experiment_id, [r.info.run_id for r in runs[:limit]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("uri", help="the tracking store (sqlite:///..., postgresql://...) or a server's http address")
    ap.add_argument("experiment")
    ap.add_argument("--out-dir", type=Path, default=Path("screenshots"))
    ap.add_argument("--benchmark", default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-runs", type=int, default=6)
    ap.add_argument("--wait", type=int, default=20000, help="milliseconds for the UI to load its data")
    args = ap.parse_args(argv)

    def capture(url: str) -> dict[str, str]:
        exp_id, run_ids = pick_runs(url, args.experiment, args.benchmark, args.seed, args.max_runs)
        shots = {"runs": f"{url}/#/experiments/{exp_id}/runs"}
        if run_ids:
            q = urllib.parse.urlencode({"runs": json.dumps(run_ids), "experiments": json.dumps([exp_id])},
                                       safe="[]\",")
            shots["compare"] = f"{url}/#/compare-runs?{q}"
        out = {}
        for name, page in shots.items():
            path = screenshot(page, args.out_dir / f"mlflow-{name}.png", height=1400, wait_ms=args.wait)
            out[name] = str(path)
        return out

    if args.uri.startswith(("http://", "https://")):
        result = capture(args.uri.rstrip("/"))
    else:
        with UiServer(args.uri) as srv:
            result = capture(srv.url)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
