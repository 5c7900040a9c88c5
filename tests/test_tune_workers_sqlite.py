"""`tune --workers 2` on the default sqlite storage with queued trials: each queued trial is run by one worker
only. SQLite has no SELECT ... FOR UPDATE, so two workers could both pop the same WAITING trial, and the one
that finished second crashed with "Cannot tell a COMPLETE trial". The workers here widen that race window
(Optuna's read of a WAITING trial before marking it RUNNING is slowed down), so the old code failed every run.
"""

from __future__ import annotations

import re
import time

import pytest

from harness.config import load_config
from harness.tune import TuneError, tune
from harness.tune import workers as tune_module
from tests.loopback import LoopbackServer
from tests.test_tune import scripted, write_config

QUEUED = [round(0.10 + 0.02 * i, 2) for i in range(8)]  # all below 0.5: same (cheap) trials, workers in step
SPACE = f"""
  n_trials: {len(QUEUED)}
  sampler: random
  space:
    temperature: {{type: float, low: 0.1, high: 0.4}}
  enqueue_defaults: false
  enqueue: [{", ".join(f"{{temperature: {t}}}" for t in QUEUED)}]
  pruner: none
"""
POP_DELAY_S = 0.05


def _worker_with_slow_pop(*args) -> None:
    """harness.tune.workers._worker_main, with a pause between Optuna's read of a WAITING trial and its update to
    RUNNING (as a slow disk or a busy machine would make it)."""
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    find = models.TrialModel.find_or_raise_by_id.__func__

    def slow(cls, trial_id, session, for_update=False):
        trial = find(cls, trial_id, session, for_update)
        if for_update and trial.state == TrialState.WAITING:
            time.sleep(POP_DELAY_S)
        return trial

    models.TrialModel.find_or_raise_by_id = classmethod(slow)
    tune_module._worker_main(*args)


@pytest.mark.parametrize("run", range(3))
def test_two_workers_run_each_queued_trial_once(tmp_path, monkeypatch, capfd, run):
    import optuna

    monkeypatch.setattr(tune_module, "_worker_main", _worker_with_slow_pop)  # spawned by reference
    with LoopbackServer(reply=scripted) as srv:
        cfg = load_config(write_config(tmp_path, srv.url, SPACE, tracking=False))
        try:
            summary = tune(cfg, workers=2, quiet=True)
        except TuneError as exc:  # a worker exited non-zero
            pytest.fail(f"{exc}\n{capfd.readouterr().err[-3000:]}")
    out, err = capfd.readouterr()
    assert "Cannot tell" not in err and "Process tune-worker" not in err, err[-3000:]  # no worker crashed
    assert summary["states"] == {"COMPLETE": len(QUEUED)}, summary["states"]

    study = optuna.load_study(study_name="echo-tune", storage=f"sqlite:///{tmp_path}/runs/echo/tune/optuna.db")
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    assert all(t.user_attrs.get("surplus") for t in trials if t.state.name != "COMPLETE"), \
        [(t.number, t.state.name) for t in trials]  # a late ask that found the study full ran nothing
    assert sorted(t.params["temperature"] for t in done) == QUEUED  # each queued trial COMPLETE exactly once
    started = re.findall(r"^-- trial (\d+) \(worker", out, re.M)
    assert sorted(map(int, started)) == sorted(t.number for t in done), out[-3000:]  # none run twice
