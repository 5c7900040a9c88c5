"""Ctrl-C stops `sepo-bench tune` promptly: the real CLI in a subprocess against the loopback server, SIGINT
while a trial waits on slow replies (to the process group, as a terminal sends it, or to the main process
only); it exits 130 within seconds with one line on how to resume, the interrupted trial is FAIL, finished
trials stay, no process is left behind, and rerunning the same command finishes the study."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.loopback import LoopbackServer
from tests.test_tune import scripted, write_config

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 20.0  # before the fix, workers went on with the study and the CLI waited for them
# No enqueued trials: two workers starting together on sqlite can pop the same queued trial (an Optuna race)
SPACE = """
  n_trials: 4
  sampler: random
  space:
    temperature: {type: float, low: 0.1, high: 0.4}
  enqueue_defaults: false
  pruner: none
"""


def _session(sid: int) -> list[str]:
    """Live (not zombie) processes of session `sid` (the CLI started with start_new_session=True)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
        if int(session) == sid and state != "Z":
            found.append(f"{name} {stat.split(')')[0].split('(', 1)[1]} {state}")
    return found


def _wait_for(pred, timeout: float, what: str, log: Path) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _trials(tmp_path: Path):
    import optuna

    study = optuna.load_study(study_name="echo-tune", storage=f"sqlite:///{tmp_path}/runs/echo/tune/optuna.db")
    return {t.number: t for t in study.get_trials(deepcopy=False)}


@pytest.mark.parametrize("workers, group", [(1, True), (2, True), (2, False)],
                         ids=["1-worker-ctrl-c", "2-workers-ctrl-c", "2-workers-sigint-to-main"])
def test_ctrl_c_stops_promptly_and_a_rerun_finishes_the_study(tmp_path, workers, group):
    cmd = [sys.executable, "-m", "harness.cli", "tune", "--workers", str(workers)]
    log = tmp_path / "tune.log"
    with LoopbackServer(reply=scripted, latency_s=0.05) as srv:
        cmd += ["--config", str(write_config(tmp_path, srv.url, SPACE))]
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            # one trial finishes, then replies slow down so that the next trials are in flight for long
            _wait_for(lambda: re.search(r"trial \d+: val accuracy", log.read_text()), 120, "a finished trial", log)
            srv.latency_s = 5.0
            _wait_for(lambda: srv.in_flight > 0 and proc.poll() is None, 30, "a request in flight", log)
            time.sleep(1.0)
            t0 = time.monotonic()
            if group:
                os.killpg(proc.pid, signal.SIGINT)
            else:
                os.kill(proc.pid, signal.SIGINT)
            try:
                rc = proc.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"tune did not stop within {DEADLINE_S:.0f} s of SIGINT; log:\n{log.read_text()[-3000:]}")
            took = time.monotonic() - t0
            _wait_for(lambda: not _session(proc.pid), 5, "no process left behind", log)
        finally:
            if proc.poll() is None or _session(proc.pid):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        text = log.read_text()
        assert rc == 130, text[-3000:]
        lines = [ln for ln in text.splitlines() if "interrupted" in ln.lower()]
        assert len(lines) == 1 and "rerun" in lines[0], text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        print(f"stopped in {took:.1f} s")

        trials = _trials(tmp_path)
        states = {n: t.state.name for n, t in trials.items()}
        assert "RUNNING" not in states.values(), states
        failed = [n for n, s in states.items() if s == "FAIL"]
        finished = {n: t.values for n, t in trials.items() if t.state.name in ("COMPLETE", "PRUNED")}
        assert failed and finished, states  # the trial(s) in flight failed, the finished one is kept

        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
        exp = client.get_experiment_by_name("echo")
        runs = client.search_runs([exp.experiment_id], "tags.`sepo.kind` = 'trial'")
        assert all(r.info.status != "RUNNING" for r in runs), [(r.data.tags["sepo.trial"], r.info.status)
                                                                for r in runs]

        # the same command again continues the study: the finished trials stay, n_trials end up done
        srv.latency_s = 0.0
        again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    after = {n: t for n, t in _trials(tmp_path).items() if not t.user_attrs.get("surplus")}  # two asked at once
    assert {n: t.values for n, t in after.items() if n in finished} == finished
    assert all(after[n].state.name == "FAIL" for n in failed)
    done = [t for t in after.values() if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 4 and len(after) == 4 + len(failed), {n: t.state.name for n, t in after.items()}
