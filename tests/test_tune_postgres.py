"""Two workers share one Optuna study in a real PostgreSQL server (scripts/postgres_server.sh, Debian's
`postgresql`, on 127.0.0.1): every trial number 0..n-1 is run exactly once, none is lost or duplicated,
and each is one MLflow run."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from harness.config import load_config
from harness.tune import tune
from harness.tune.study import with_driver
from tests.loopback import LoopbackServer
from tests.test_tune import scripted, write_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "postgres_server.sh"


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of its own (skipped only when PostgreSQL cannot be installed here)."""
    inst = subprocess.run(["bash", str(SCRIPT), "install"], capture_output=True, text=True, timeout=900)
    if inst.returncode != 0:
        why = (inst.stderr.strip().splitlines() or ["unknown reason"])[-1]
        pytest.skip(f"PostgreSQL cannot be installed on this machine: {why}")
    d = f"/tmp/sepo-pg-{uuid.uuid4().hex[:10]}"
    start = subprocess.run(["bash", str(SCRIPT), "start", d], capture_output=True, text=True, timeout=300)
    try:
        assert start.returncode == 0, f"PostgreSQL did not start: {start.stderr}"
        yield start.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", d], capture_output=True, text=True, timeout=120)


def test_two_workers_share_one_study_without_duplicate_or_lost_trials(tmp_path, postgres_url):
    import optuna
    from mlflow.tracking import MlflowClient

    n = 6
    space = f"""
  n_trials: {n}
  pruner: none
  space:
    temperature: {{type: float, low: 0.1, high: 0.9}}
    minibatch: {{type: int, low: 2, high: 4}}
"""
    with LoopbackServer(reply=scripted, latency_s=0.01) as srv:
        cfg = load_config(write_config(tmp_path, srv.url, space, name="shared"))
        summary = tune(cfg, workers=2, storage=postgres_url)

    study = optuna.load_study(study_name="shared-tune", storage=with_driver(postgres_url))
    trials = study.get_trials()
    counted = [t for t in trials if not t.user_attrs.get("surplus")]
    assert sorted(t.number for t in counted) == list(range(n)), [(t.number, t.state.name) for t in trials]
    assert all(t.state.name == "COMPLETE" for t in counted)
    assert all(t.state.name == "FAIL" for t in trials if t.user_attrs.get("surplus"))  # ran nothing
    workers = {t.user_attrs["worker"] for t in counted}
    assert len(workers) == 2, f"one worker ran every trial: {workers}"
    assert summary["states"] == {"COMPLETE": n}
    assert summary["best"]["trial"] in range(n) and Path(summary["best"]["config"]).is_file()

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("shared")
    runs = client.search_runs([exp.experiment_id], "tags.`sepo.kind` = 'trial'")
    numbers = sorted(int(r.data.tags["sepo.trial"]) for r in runs)
    assert numbers == list(range(n))  # one MLflow run per trial, no duplicates
    by_trial = {int(r.data.tags["sepo.trial"]): r for r in runs}
    for t in counted:
        assert by_trial[t.number].info.run_id == t.user_attrs["mlflow_run_id"]
        assert by_trial[t.number].data.metrics["val_accuracy"] == t.value
