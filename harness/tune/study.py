"""The Optuna study: storage, sampler, pruner, the trial slots of n_trials, and the sqlite ask-lock."""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
import warnings
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.tune.validate import TuneSetup, jsonable, redact, where

SLOT_STATES = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")  # trial states that take one of the n_trials


def storage_of(setup: TuneSetup):
    import optuna

    url = with_driver(setup.storage)
    kwargs: dict[str, Any] = {"heartbeat_interval": 30, "grace_period": 120}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    else:
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
            return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as exc:
        raise ConfigError(f"The Optuna storage {redact(url)} needs a database driver ({exc}); install it "
                          "(pip install psycopg2-binary for PostgreSQL).") from None
    except Exception as exc:  # noqa: BLE001 (unreachable server, bad credentials: one sentence)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ConfigError(f"The Optuna storage {redact(url)} cannot be used ({first}); start the database or "
                          "fix tune.storage / --storage.") from None


def with_driver(url: str) -> str:
    """postgresql:// means psycopg (v3) to SQLAlchemy 2.1; use psycopg2 (a project dependency) when only it is
    installed."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def sampler_of(setup: TuneSetup, worker: int):
    import optuna

    seed = setup.tune.seed + worker
    if not setup.storage.startswith("sqlite:///"):  # workers on other machines run the same command
        blob = f"{setup.tune.seed}:{worker}:{socket.gethostname()}:{os.getpid()}".encode()
        seed = int.from_bytes(hashlib.sha256(blob).digest()[:4], "big")
    if setup.tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = max(2, min(10, setup.n_trials // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True,
                                      multivariate=True)


def pruner_of(setup: TuneSetup):
    import optuna

    t = setup.tune
    name = t.pruner_name
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=t.pruner_startup_trials,
                                           n_warmup_steps=t.pruner_warmup_steps)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_startup_trials=t.pruner_startup_trials,
                                               n_warmup_steps=t.pruner_warmup_steps)
    return optuna.pruners.HyperbandPruner()


def open_study(setup: TuneSetup, worker: int = 0, *, create: bool = True):
    """The study (created, with its first trials queued, by whichever worker gets there first)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_of(setup)
    kw = {"study_name": setup.study_name, "storage": storage, "sampler": sampler_of(setup, worker),
          "pruner": pruner_of(setup)}
    if not create:
        return optuna.load_study(**kw)
    try:
        study = optuna.create_study(directions=setup.directions, **kw)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**kw)
        if [d.name.lower() for d in study.directions] != setup.directions:
            raise ConfigError(f"{where(setup.cfg, 'objectives')}: the study {setup.study_name!r} in "
                              f"{redact(setup.storage)} was made with other objectives; set tune.study_name to "
                              "start a new study.") from None
        return study
    study.set_user_attr("sepo.study_uid", uuid.uuid4().hex[:12])
    study.set_user_attr("sepo.objectives", list(setup.tune.objectives))
    study.set_user_attr("sepo.method", setup.run)
    study.set_user_attr("sepo.defaults", jsonable(setup.defaults))
    queue = ([(dict(setup.defaults), {"sepo.defaults": True})] if setup.tune.enqueue_defaults else [])
    queue += [(dict(params), {}) for params in setup.tune.enqueue]
    for params, attrs in queue[: setup.n_trials]:
        study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
    return study


def taken(study, before: int | None = None) -> int:
    """Trials holding one of the n_trials (with a number below `before`, when given)."""
    from optuna.trial import TrialState

    states = tuple(getattr(TrialState, s) for s in SLOT_STATES)
    trials = study.get_trials(deepcopy=False, states=states)
    return sum(1 for t in trials if before is None or t.number < before)


def more_to_run(study, n_trials: int) -> bool:
    """Queued trials wait to be run, or fewer than n_trials are finished, running or queued."""
    from optuna.trial import TrialState

    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return True
    return taken(study) < n_trials


def one_ask_at_a_time(study, storage: str) -> None:
    """On sqlite, `study.ask` (which `optimize` calls) holds an exclusive lock on `<db>.lock` next to the
    database: Optuna pops a queued trial by reading it WAITING, then marking it RUNNING, which is atomic only
    where the database locks the row (SELECT ... FOR UPDATE, e.g. PostgreSQL), so two local workers could both
    run it and one then crash ("Cannot tell a COMPLETE trial")."""
    path = storage[len("sqlite:///"):] if storage.startswith("sqlite:///") else ""
    if path in ("", ":memory:"):
        return
    import fcntl

    ask = study.ask

    def locked_ask(*args: Any, **kwargs: Any):
        with open(f"{path}.lock", "a") as lock:  # closing it releases the lock
            fcntl.flock(lock, fcntl.LOCK_EX)
            return ask(*args, **kwargs)

    study.ask = locked_ask


def fail_running(study, pids: set[int]) -> None:
    """Mark FAIL the trials still RUNNING in processes `pids` of this host (interrupted outside the objective, or
    killed), so that a rerun runs the study on at once instead of waiting for their heartbeats to go stale."""
    from optuna.trial import TrialState

    mine = {f"{socket.gethostname()}:{pid}" for pid in pids}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if str(t.user_attrs.get("worker", "")).rsplit(":", 1)[0] in mine:
            study.tell(t.number, state=TrialState.FAIL)

