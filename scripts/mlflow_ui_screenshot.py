"""Screenshot the MLflow UI's run comparison of an experiment's cells, with headless Chromium.

    .venv/bin/python scripts/mlflow_ui_screenshot.py --config configs/reproduce-local.yaml --out ui.png

Starts `mlflow ui` on 127.0.0.1 (a free port) against the experiment's store, finds its cell runs, opens
the compare-runs page and writes a PNG (and the experiment's run list beside it, `<out>-runs.png`); the
server is stopped afterwards. Needs Debian's `chromium` package.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the MLflow UI did not answer at {url} within {timeout_s:.0f} s")


def main(argv: list[str] | None = None) -> int:
    from screenshot import screenshot

    from harness.config import load_config
    from harness.experiment import default_tracking_uri
    from harness.tracking import load_experiment

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the experiment file (its name and store)")
    ap.add_argument("--out", type=Path, default=Path("mlflow-compare.png"))
    ap.add_argument("--wait", type=int, default=15000, help="milliseconds of page time before the capture")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    uri = cfg.tracking.uri or default_tracking_uri(cfg)
    data = load_experiment(uri, cfg.name)
    runs = [r for r in data.cells["run_id"]][:20]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "ui", "--host", "127.0.0.1", "--port",
                             str(port), "--backend-store-uri", uri], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_up(url)
        compare = (f"{url}/#/compare-runs?runs={json.dumps(runs, separators=(',', ':'))}"
                   f"&experiments={json.dumps([data.experiment_id])}")
        shot = screenshot(compare, args.out, width=1600, height=1400, wait_ms=args.wait)
        listing = screenshot(f"{url}/#/experiments/{data.experiment_id}", args.out.with_name(
            args.out.stem + "-runs.png"), width=1600, height=1000, wait_ms=args.wait)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(json.dumps({"compare": str(shot), "runs": str(listing), "cells": len(data.cells)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
