"""`sepo-bench tune`: an Optuna study over a method's settings (SePO's evolution hyperparameters by default).

The `tune:` section of an experiment file (harness/config.py:TuneConfig) names the method, the search space
(each key a setting of that method: int/float ranges, optionally log or stepped, or categorical choices), the
number of trials, the objectives, the storage, the sampler and the pruner.

A trial runs the method with the trial's settings on top of the method's own on every benchmark x seed of the
file, on train and validation data only: the benchmarks are opened here and only their train and val splits
are ever loaded, so test data never reaches a trial. Each cell's optimizer gets the experiment's
`budget_per_cell`, as in `sepo-bench optimize`. The trial's value is the validation accuracy of the method's
best prompt (mean over cells), scored by the task's evaluator on the whole val split after the method
returns (replies the method already paid for come from the cache). With a second objective (tokens, usd,
requests or evaluations the method spent, minimized) the study is multi-objective and its Pareto front is
reported. Costs count every reply the method used, cached or not (class Spent), so a trial's cost does not
depend on what earlier trials left in the response cache; for the same reason a per-cell budget for tuning
is best given in `max_evaluations` (request, token and dollar caps count paid requests only). Note the method
may itself choose its best prompt on val (SePO's `val_top_n`), so the value is an optimistic estimate; test
accuracy is measured by running the written best experiment file.

Pruning: the method reports every candidate (`on_candidate`); the best admitted train (minibatch) score so
far is reported to Optuna once per finished generation (step = generation; cell i of a trial adds i * 1000),
and the pruner (median by default) stops a trial that lags the others at the same generation.

Storage: sqlite under the run folder by default (`<run dir>/tune/optuna.db`); an RDB URL
(`postgresql://user@host:port/db`, in `tune.storage` or `--storage`) lets workers on several machines share
one study, each started with the same command. `--workers N` starts N worker processes here. `n_trials` is
the study's total: a worker starts a trial only while fewer than n_trials are finished, running or queued,
and a trial that finds its slot already taken (two workers asked at once) is marked FAIL with user attr
`surplus` and runs nothing, so the study ends with exactly n_trials COMPLETE or PRUNED trials. RDB storages
record heartbeats: a killed worker's trial is failed after a grace period and its slot freed, and rerunning
the command finishes the study.

Tracking: every trial is one MLflow run in the experiment (through harness.tracking, tag `sepo.kind=trial`, so
reports of the experiment's cells do not count them) with the trial's settings as params, its candidates,
per-generation intermediate values, its value(s) and its state (COMPLETE / PRUNED / FAIL).

Outputs (`<run dir>/tune/`): `best.yaml` (the experiment file with the best trial's settings and no tune
section, ready for `sepo-bench optimize` or `make reproduce REPRODUCE_CONFIG=...`), `summary.json` (best vs
the method's own settings, the Pareto front, states), `trials.csv`, and Optuna's plots as PNG under `plots/`
(optimization history, parameter importances, intermediate values; Pareto front for two objectives).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import re
import signal
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config import ConfigError, ExperimentConfig, TuneConfig, TuneParam, load_config, suggest

STEP_STRIDE = 1000  # intermediate-value steps of cell i of a trial are i * STEP_STRIDE + generation
COST_KEYS = {"tokens": "tokens", "usd": "usd", "requests": "requests", "evaluations": "evaluations"}
SLOT_STATES = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")  # trial states that take one of the n_trials
MAX_FAILED_IN_A_ROW = 3


class TuneError(ConfigError):
    """A tuning run that cannot go on (one sentence; the study keeps what finished)."""


class SurplusTrial(Exception):
    """The study already had n_trials when this trial was created (workers asked at the same moment)."""


# ------------------------------------------------------------------------------------------------ setup


@dataclass
class TuneSetup:
    cfg: ExperimentConfig
    tune: TuneConfig
    run: str  # the methods: entry tuned
    base: str  # its registered method
    settings: dict[str, Any]  # its full settings (presets + the file's)
    defaults: dict[str, Any]  # the method's own values of the space's settings
    storage: str
    study_name: str
    n_trials: int
    out: Path  # <run dir>/tune
    pools: list[str] = field(default_factory=list)

    @property
    def directions(self) -> list[str]:
        return ["maximize"] + ["minimize"] * (len(self.tune.objectives) - 1)

    @property
    def multi(self) -> bool:
        return len(self.tune.objectives) > 1


def redact(url: str) -> str:
    """A storage URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _where(cfg: ExperimentConfig, key: str) -> str:
    return f"{cfg.source}: 'tune.{key}'"


def _param_values(p: TuneParam) -> list[Any]:
    """Values that exercise a parameter's whole range (for validation against the method's settings)."""
    if p.type == "categorical":
        return list(p.choices or [])
    if p.type == "int":
        return [int(p.low), int(p.high)]
    return [float(p.low), float(p.high)]


def prepare(cfg: ExperimentConfig, *, trials: int | None = None, storage: str | None = None) -> TuneSetup:
    """Validate the tune section against the method it tunes; ConfigError sentences name the key."""
    from harness.experiment import pools_needed
    from harness.methods import make_optimizer, resolve_method

    t = cfg.tune
    if t is None:
        raise ConfigError(f"{cfg.source} has no 'tune' section; add one naming the search space (see "
                          "configs/tune-mbpp-local.yaml).")
    if storage is not None:  # --storage: validated like the file's key
        t = TuneConfig.model_validate({**t.model_dump(), "storage": storage})
    methods = cfg.methods or {"sepo": {}}
    run = t.method or (next(iter(methods)) if len(methods) == 1 else "sepo")
    if run not in methods:
        if t.method is None:
            raise ConfigError(f"{_where(cfg, 'method')} is not set and 'methods' lists {len(methods)} entries; name "
                              f"the one to tune (one of {', '.join(methods)}).")
        raise ConfigError(f"{_where(cfg, 'method')}: {run!r} is not an entry of 'methods'"
                          f"{suggest(run, list(methods))}; name one of {', '.join(methods)}.")
    base, full = resolve_method(run, methods[run])
    opt = make_optimizer(run, {**full, "method": base})
    settings_model = getattr(opt, "settings", None)
    if settings_model is None or not hasattr(settings_model, "model_dump"):
        raise ConfigError(f"{_where(cfg, 'method')}: method {base!r} exposes no settings to tune.")
    current = settings_model.model_dump()
    known = sorted(current)
    for name, p in t.space.items():
        if name not in current:
            raise ConfigError(f"{_where(cfg, 'space.' + name)} is not a setting of method {base!r}"
                              f"{suggest(name, known)}; name one of its settings.")
        for v in _param_values(p):
            try:
                make_optimizer(run, {**full, name: v, "method": base})
            except ConfigError as exc:
                reason = str(exc).split(": ", 1)[-1].rstrip(".")
                raise ConfigError(f"{_where(cfg, 'space.' + name)}: the value {v!r} is not valid for the method "
                                  f"({reason}); narrow the range.") from None
    for i, trial in enumerate(t.enqueue):
        try:
            make_optimizer(run, {**full, **trial, "method": base})
        except ConfigError as exc:
            reason = str(exc).split(": ", 1)[-1].rstrip(".")
            raise ConfigError(f"{_where(cfg, f'enqueue.{i}')}: {reason}; fix the values.") from None
    if not cfg.benchmarks:
        raise ConfigError(f"{cfg.source}: 'benchmarks' is empty; list the benchmarks the trials run on.")
    out = cfg.run_dir / "tune"
    url = t.storage or f"sqlite:///{out / 'optuna.db'}"
    pools = set().union(*(pools_needed(opt, b, cfg.held_out) for b in cfg.benchmarks))
    return TuneSetup(cfg, t, run, base, full, {k: current[k] for k in t.space}, url, t.study_name or f"{cfg.name}-tune",
                     trials or t.n_trials, out, sorted(pools))


# ------------------------------------------------------------------------------------------------ study


def _storage(setup: TuneSetup):
    import optuna

    url = _with_driver(setup.storage)
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


def _with_driver(url: str) -> str:
    """postgresql:// means psycopg (v3) to SQLAlchemy 2.1; use psycopg2 (a project dependency) when only it is
    installed."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def _sampler(setup: TuneSetup, worker: int):
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


def _pruner(setup: TuneSetup):
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
    storage = _storage(setup)
    kw = {"study_name": setup.study_name, "storage": storage, "sampler": _sampler(setup, worker),
          "pruner": _pruner(setup)}
    if not create:
        return optuna.load_study(**kw)
    try:
        study = optuna.create_study(directions=setup.directions, **kw)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**kw)
        if [d.name.lower() for d in study.directions] != setup.directions:
            raise ConfigError(f"{_where(setup.cfg, 'objectives')}: the study {setup.study_name!r} in "
                              f"{redact(setup.storage)} was made with other objectives; set tune.study_name to "
                              "start a new study.") from None
        return study
    study.set_user_attr("sepo.study_uid", uuid.uuid4().hex[:12])
    study.set_user_attr("sepo.objectives", list(setup.tune.objectives))
    study.set_user_attr("sepo.method", setup.run)
    study.set_user_attr("sepo.defaults", _jsonable(setup.defaults))
    queue = ([(dict(setup.defaults), {"sepo.defaults": True})] if setup.tune.enqueue_defaults else [])
    queue += [(dict(params), {}) for params in setup.tune.enqueue]
    for params, attrs in queue[: setup.n_trials]:
        study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=True)
    return study


def _taken(study, before: int | None = None) -> int:
    """Trials holding one of the n_trials (with a number below `before`, when given)."""
    from optuna.trial import TrialState

    states = tuple(getattr(TrialState, s) for s in SLOT_STATES)
    trials = study.get_trials(deepcopy=False, states=states)
    return sum(1 for t in trials if before is None or t.number < before)


def _more_to_run(study, n_trials: int) -> bool:
    """Queued trials wait to be run, or fewer than n_trials are finished, running or queued."""
    from optuna.trial import TrialState

    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return True
    return _taken(study) < n_trials


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


# ------------------------------------------------------------------------------------------------ trials


class Spent:
    """Every reply a trial's method used, cached or not: a trial's cost must not depend on what earlier trials
    (or runs) left in the response cache, so it is counted here rather than from the ledger (which counts
    paid requests only)."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.calls = 0
        self.tokens = 0
        self.usd = 0.0

    def add(self, client, reply) -> None:
        with self.lock:
            self.calls += 1
            self.tokens += reply.prompt_tokens + reply.completion_tokens
            self.usd += client._cost(reply.prompt_tokens, reply.completion_tokens)


def metered(client, spent: Spent):
    """The same client (endpoint, connections, cache, ledger) counting every reply into `spent`."""
    from harness.llm.client import LLMClient

    class Metered(LLMClient):
        async def chat(self, *args: Any, **kwargs: Any):
            reply = await LLMClient.chat(self, *args, **kwargs)
            spent.add(self, reply)
            return reply

    clone = copy.copy(client)
    clone.__class__ = Metered
    return clone



@contextmanager
def open_train_val(setup: TuneSetup) -> Iterator[dict[str, Any]]:
    """Every benchmark the trials need (targets and pools), with only train and val loaded."""
    from harness.experiment import open_benchmarks

    cfg = setup.cfg
    with open_benchmarks(cfg, cfg.benchmarks, cfg.seeds, list(setup.pools), splits=("train", "val")) as opened:
        yield opened


def suggest_params(trial, space: dict[str, TuneParam]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "categorical":
            out[name] = trial.suggest_categorical(name, list(p.choices or []))
        elif p.type == "int":
            out[name] = trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            out[name] = trial.suggest_float(name, float(p.low), float(p.high), step=p.step, log=p.log)
    return out


class GenerationReporter:
    """Turns a cell's candidates into one intermediate value per finished generation: the best admitted
    train (minibatch) score so far. Reports and asks the pruner when a generation's last child arrives
    (children per generation from the method's settings), else when the next generation starts. With
    prune=False (multi-objective studies) the values are only recorded (and logged through on_report)."""

    def __init__(self, trial, offset: int, kids: int | None, prune: bool, on_report=None) -> None:
        self.trial, self.offset, self.kids, self.prune = trial, offset, kids, prune
        self.on_report = on_report
        self.best: float | None = None
        self.gen: int | None = None
        self.seen: dict[int, int] = {}
        self.reported: set[int] = set()
        self.values: dict[int, float] = {}

    def __call__(self, cand) -> None:
        if (cand.meta or {}).get("stage") == "pretrain":
            return
        g = int(cand.generation)
        if self.gen is not None and g > self.gen:
            self.report(self.gen)
        self.gen = g if self.gen is None else max(self.gen, g)
        if cand.train_score is not None and (cand.meta or {}).get("admitted", True) is not False:
            self.best = cand.train_score if self.best is None else max(self.best, cand.train_score)
        self.seen[g] = self.seen.get(g, 0) + 1
        if g == 0 or (self.kids is not None and self.seen[g] >= self.kids):
            self.report(g)

    def report(self, g: int, *, final: bool = False) -> None:
        import optuna

        if g in self.reported or self.best is None:
            return
        self.reported.add(g)
        self.values[g] = self.best
        step = self.offset + g
        if self.prune:  # Optuna takes intermediate values of single-objective studies only
            self.trial.report(self.best, step)
        if self.on_report is not None:
            self.on_report(step, self.best)
        if self.prune and not final and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after generation {g}: best train score so far {self.best:.3f}")

    def finish(self) -> None:
        if self.gen is not None:
            self.report(self.gen, final=True)


class Worker:
    """Runs trials of one study with one set of opened benchmarks, LLM clients and MLflow tracker."""

    def __init__(self, setup: TuneSetup, study, benches: dict[str, Any], llms, tracker, worker: int,
                 quiet: bool = False) -> None:
        self.setup, self.study, self.benches, self.llms, self.tracker = setup, study, benches, llms, tracker
        self.worker = worker
        self.quiet = quiet
        self.failed_in_a_row = 0
        self.uid = study.user_attrs.get("sepo.study_uid", "study")

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    # -- one trial -------------------------------------------------------------------------------
    def objective(self, trial) -> float | tuple[float, float]:
        s = self.setup
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}:{self.worker}")
        if _taken(self.study, before=trial.number) >= s.n_trials:
            trial.set_user_attr("surplus", True)
            self.study.stop()
            raise SurplusTrial(f"trial {trial.number}: the study already has {s.n_trials} trials")
        params = suggest_params(trial, s.tune.space)
        self.say(f"-- trial {trial.number} (worker {self.worker}): {_fmt_params(params)}")
        run = self._start_run(trial, params)
        t0 = time.monotonic()
        try:
            value, costs, per_cell = self._run_cells(trial, params, run)
        except KeyboardInterrupt:  # Optuna fails the trial and re-raises; the CLI says so in one line
            import optuna

            optuna.logging.set_verbosity(optuna.logging.ERROR)  # no "Trial N failed" warning with a traceback
            trial.set_user_attr("fail_reason", "interrupted")
            if run is not None:
                run.log_tags({"sepo.trial_state": "FAIL"})
                run.fail("interrupted")
            raise
        except Exception as exc:
            import optuna

            if run is not None:
                if isinstance(exc, optuna.TrialPruned):
                    run.log_tags({"sepo.trial_state": "PRUNED", "sepo.pruned": str(exc)})
                    run.finish(metrics={"wall_s": time.monotonic() - t0, "pruned": 1.0}, test_records=[],
                               best_prompt="", result={"state": "PRUNED", "params": _jsonable(params),
                                                       "reason": str(exc)})
                else:
                    run.log_tags({"sepo.trial_state": "FAIL"})
                    run.fail(f"{type(exc).__name__}: {exc}")
            if isinstance(exc, optuna.TrialPruned):
                self.say(f"   trial {trial.number}: {exc}")
                self.failed_in_a_row = 0
                raise
            if isinstance(exc, ConfigError):  # settings the method refuses together: this trial fails, go on
                trial.set_user_attr("fail_reason", str(exc)[:2000])
                self.say(f"   trial {trial.number} failed: {exc}")
                self.failed_in_a_row += 1
                if self.failed_in_a_row >= MAX_FAILED_IN_A_ROW:
                    raise TuneError(f"{MAX_FAILED_IN_A_ROW} trials in a row failed, the last with: {exc}") from None
                return float("nan") if not s.multi else (float("nan"), float("nan"))
            raise
        self.failed_in_a_row = 0
        wall = time.monotonic() - t0
        trial.set_user_attr("val_accuracy", value)
        trial.set_user_attr("costs", costs)
        trial.set_user_attr("cells", per_cell)
        trial.set_user_attr("wall_s", round(wall, 1))
        if run is not None:
            run.log_tags({"sepo.trial_state": "COMPLETE"})
            run.finish(metrics={"val_accuracy": value, **{f"cost_{k}": v for k, v in costs.items()},
                                "wall_s": wall}, test_records=[],
                       best_prompt="\n\n".join(c["best_prompt"] for c in per_cell),
                       result={"state": "COMPLETE", "params": _jsonable(params), "value": value,
                               "costs": costs, "cells": per_cell})
            trial.set_user_attr("mlflow_run_id", run.run_id)
        cost_txt = f", {costs['tokens']:.0f} tokens, {costs['requests']:.0f} requests"
        self.say(f"   trial {trial.number}: val accuracy {value:.3f}{cost_txt}, {wall:.0f} s")
        if s.multi:
            return value, float(costs[COST_KEYS[s.tune.objectives[1]]])
        return value

    def _start_run(self, trial, params: dict[str, Any]):
        if self.tracker is None:
            return None
        s = self.setup
        key = f"tune-{self.uid}-{trial.number}"
        run = self.tracker.start_cell(
            key, method=s.run, benchmark="+".join(b.name for b in s.cfg.benchmarks), seed=s.cfg.seeds[0],
            params={"trial": trial.number, "study": s.study_name, "tuned": params,
                    "settings": {**s.settings, **params}, "seeds": s.cfg.seeds,
                    "budget_per_cell": s.cfg.budget_per_cell.model_dump()},
            tags={"sepo.base_method": s.base})
        run.log_tags({"sepo.kind": "trial", "mlflow.runName": f"{s.study_name}-trial-{trial.number}",
                      "sepo.study": s.study_name, "sepo.trial": str(trial.number),
                      "sepo.trial_state": "RUNNING"})
        trial.set_user_attr("mlflow_run_id", run.run_id)
        return run

    def _run_cells(self, trial, params: dict[str, Any], run) -> tuple[float, dict[str, float], list[dict]]:
        from harness.evaluator import Evaluator
        from harness.experiment import canonical_name, entry_key
        from harness.llm.usage import Budget
        from harness.methods import make_optimizer
        from harness.optimizer import Candidate, OptimizationTask, RunContext

        s, cfg = self.setup, self.setup.cfg
        settings = {**s.settings, **params}
        totals = dict.fromkeys(COST_KEYS.values(), 0.0)
        per_cell: list[dict] = []
        cells = [(b, seed) for b in cfg.benchmarks for seed in cfg.seeds]
        for i, (b, seed) in enumerate(cells):
            opt = make_optimizer(s.run, {**settings, "method": s.base})
            ob = self.benches[entry_key(b)]
            ledger = self.llms.ledger.child(Budget(**cfg.budget_per_cell.model_dump()))
            spent = Spent()
            task_llm = metered(self.llms.task.with_ledger(ledger), spent)
            prompt_llm = metered(self.llms.prompt.with_ledger(ledger), spent)

            def open_task(name: str, seed_: int, task_llm=task_llm) -> OptimizationTask:
                key = canonical_name(name)
                if key not in self.benches:
                    raise ConfigError(f"trial settings ask for benchmark {name!r}, which the tuning run did not "
                                      "open; keep pool settings out of the search space.")
                o = self.benches[key]
                return OptimizationTask(o.bench.name, o.bench, o.split("train", seed_), o.split("val", seed_),
                                        Evaluator(o.bench, task_llm, seed=seed_), cfg.system_prompt)

            ctx = RunContext(open_task=open_task, shared_dir=cfg.run_dir / "shared", held_out=tuple(cfg.held_out))
            task = OptimizationTask(ob.bench.name, ob.bench, ob.split("train", seed), ob.split("val", seed),
                                    Evaluator(ob.bench, task_llm, seed=seed), cfg.system_prompt)
            shape = getattr(getattr(opt, "settings", None), "shape", None)
            kids = shape[1] if isinstance(shape, tuple) else None

            def on_report(step: int, value: float) -> None:
                if run is not None:
                    run.log_metrics({"intermediate_value": value}, step=step)

            reporter = GenerationReporter(trial, i * STEP_STRIDE, kids, prune=not s.multi, on_report=on_report)
            prefix = f"{ob.bench.name}-s{seed}/" if len(cells) > 1 else ""

            def on_candidate(c: Candidate, prefix=prefix, reporter=reporter) -> None:
                if run is not None:
                    run.log_candidate(Candidate(prefix + c.id, c.prompt, prefix + c.parent_id if c.parent_id else None,
                                                c.generation, c.train_score, c.val_score, dict(c.meta or {})))
                reporter(c)

            res = opt.optimize(task, prompt_llm, seed=seed, on_candidate=on_candidate, context=ctx)
            reporter.finish()
            val_ledger = self.llms.ledger.child()
            val = ob.split("val", seed)
            scored = Evaluator(ob.bench, self.llms.task.with_ledger(val_ledger), seed=seed).evaluate(
                res.best.prompt, val, label=f"trial {trial.number} val")
            u = ledger.total
            used = {"tokens": float(spent.tokens), "usd": spent.usd, "requests": float(spent.calls),
                    "evaluations": float(u.evaluations)}
            for k in totals:
                totals[k] += used[k]
            per_cell.append({"benchmark": ob.bench.name, "seed": seed, "val_accuracy": scored.accuracy,
                             "n_val": len(val), "best_id": res.best.id, "best_prompt": res.best.prompt,
                             "n_candidates": len(res.candidates), "stopped": (res.extra or {}).get("stopped"),
                             "generation_best": {str(g): v for g, v in reporter.values.items()},
                             "spent": used, "paid": {"requests": u.requests, "tokens": u.tokens, "usd": u.usd}})
            if len(cells) > 1:
                self.say(f"   {ob.bench.name} seed {seed}: val {scored.accuracy:.3f} ({len(val)} examples)")
        value = sum(c["val_accuracy"] for c in per_cell) / len(per_cell)
        return value, totals, per_cell

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        s = self.setup
        if not _more_to_run(self.study, s.n_trials):
            self.say(f"worker {self.worker}: the study already has its {s.n_trials} trials")
            return

        def stop_when_full(study, _trial) -> None:
            if not _more_to_run(study, s.n_trials):
                study.stop()

        try:
            _one_ask_at_a_time(self.study, s.storage)
            self.study.optimize(self.objective, n_trials=None, callbacks=[stop_when_full], catch=(SurplusTrial,))
        except KeyboardInterrupt:
            fail_running(self.study, {os.getpid()})
            raise


def _one_ask_at_a_time(study, storage: str) -> None:
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


def run_worker(setup: TuneSetup, worker: int = 0, *, quiet: bool = False) -> None:
    """One worker: open train/val data, the LLMs and the tracker once, then run trials until the study is full."""
    from harness.experiment import open_tracker, print_models
    from harness.llm.session import open_llms

    study = open_study(setup, worker)
    tracker = open_tracker(setup.cfg)
    with open_train_val(setup) as benches, open_llms(setup.cfg.llm) as llms:
        if worker == 0 and not quiet:
            print_models(llms)
        Worker(setup, study, benches, llms, tracker, worker, quiet=quiet).run()


def stop_workers(procs: list, grace_s: float = 10.0) -> None:
    """Ctrl-C in the parent: SIGTERM every worker (each fails its trial and closes its servers), kill those
    still there after `grace_s`, and reap them all."""
    procs = [p for p in procs if p.pid is not None]  # started
    for p in procs:
        if p.is_alive():
            p.terminate()
    end = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, end - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()


def _interrupt(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise KeyboardInterrupt


def _worker_main(config: str, output_dir: str | None, trials: int | None, storage: str | None, worker: int) -> None:
    """A spawned worker process (--workers N): the same config, its own models and clients. It ignores Ctrl-C
    (see tune()): the parent stops it with SIGTERM, which ends it as Ctrl-C ends a single-process run."""
    from harness.errors import user_error_types

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        setup = prepare(_load(config, output_dir), trials=trials, storage=storage)
        run_worker(setup, worker)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if not isinstance(exc, user_error_types()):
            raise
        print(f"error: worker {worker}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def _load(config: str, output_dir: str | None) -> ExperimentConfig:
    cfg = load_config(config)
    if output_dir:
        cfg.output_dir = str(Path(output_dir).expanduser().resolve())
    return cfg


# ------------------------------------------------------------------------------------------------ outputs


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def best_trials(setup: TuneSetup, study) -> list:
    """Single objective: the best trial; two: the Pareto front, by val accuracy (desc), then cost."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and all(v is not None and math.isfinite(v) for v in t.values)]
    if not done:
        return []
    if not setup.multi:
        return [max(done, key=lambda t: (t.values[0], -t.number))]
    front = [t for t in done if not any(_dominates(o, t) for o in done if o is not t)]
    return sorted(front, key=lambda t: (-t.values[0], t.values[1], t.number))


def _dominates(a, b) -> bool:
    (a0, a1), (b0, b1) = a.values, b.values
    return a0 >= b0 and a1 <= b1 and (a0 > b0 or a1 < b1)


def best_config(setup: TuneSetup, params: dict[str, Any], note: str, path: Path) -> Path:
    """The experiment file with the tuned method's settings replaced, no tune section, a new name."""
    cfg = setup.cfg
    try:
        raw = yaml.safe_load(Path(cfg.source).read_text(encoding="utf-8")) or {}
    except OSError:
        raw = cfg.model_dump(exclude_defaults=True)
    raw = copy.deepcopy(raw)
    raw.pop("tune", None)
    raw["name"] = f"{cfg.name}-tuned"
    methods = raw.get("methods") or {setup.run: {}}
    entry = dict(methods.get(setup.run) or {})
    entry.update(_jsonable(params))
    methods[setup.run] = entry
    raw["methods"] = methods
    _relocate_paths(raw, cfg, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "".join(f"# {line}\n" for line in note.splitlines())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=110), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _relocate_paths(raw: dict[str, Any], cfg: ExperimentConfig, new_path: Path) -> None:
    """Relative paths in the file mean the same from the new file's project folder (else made absolute)."""
    probe = ExperimentConfig()
    probe._source = new_path
    if probe.project_dir == cfg.project_dir:
        return
    if raw.get("output_dir") is None:
        raw["output_dir"] = str(cfg.path(cfg.output_dir))
    for key in ("output_dir", "data_dir"):
        if isinstance(raw.get(key), str) and not Path(raw[key]).expanduser().is_absolute():
            raw[key] = str(cfg.path(raw[key]))
    cache = (raw.get("llm") or {}).get("cache") or {}
    if isinstance(cache.get("path"), str) and not Path(cache["path"]).expanduser().is_absolute():
        cache["path"] = str(cfg.path(cache["path"]))
    elif "cache" not in (raw.get("llm") or {}):
        raw.setdefault("llm", {}).setdefault("cache", {})["path"] = cfg.llm.cache.path
    for b in raw.get("benchmarks") or []:
        opts = b.get("options") if isinstance(b, dict) else None
        p = (opts or {}).get("path")
        if isinstance(p, str) and not Path(p).is_absolute() and cfg.path(p).exists():
            opts["path"] = str(cfg.path(p))


def save_plots(setup: TuneSetup, study, out: Path) -> dict[str, str]:
    """Optuna's matplotlib plots as PNG; a plot that cannot be drawn yet is listed with the reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    acc = {"target": (lambda t: t.values[0]), "target_name": "val_accuracy"} if setup.multi else {}
    plots = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, **acc),
        "param_importances": lambda: ovm.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), **acc),
        "intermediate_values": lambda: ovm.plot_intermediate_values(study),
    }
    if setup.multi:
        plots["pareto_front"] = lambda: ovm.plot_pareto_front(
            study, target_names=["val_accuracy", setup.tune.objectives[1]])
    done: dict[str, str] = {}
    for name, draw in plots.items():
        if name == "intermediate_values" and setup.multi:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            path = out / f"{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            done[name] = str(path)
        except Exception as exc:  # noqa: BLE001 (e.g. importances need two finished trials that differ)
            done[name] = f"not drawn: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            plt.close("all")
    return done


def summarize(setup: TuneSetup, study) -> dict[str, Any]:
    """best.yaml, summary.json, trials.csv and the plots under <run dir>/tune/; returns the summary."""
    from optuna.trial import TrialState

    out = setup.out
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if not t.user_attrs.get("surplus")]
    states: dict[str, int] = {}
    for t in counted:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    best = best_trials(setup, study)
    defaults = next((t for t in trials if t.user_attrs.get("sepo.defaults") and t.state == TrialState.COMPLETE), None)
    summary: dict[str, Any] = {
        "study": setup.study_name, "storage": redact(setup.storage), "method": setup.run,
        "objectives": list(setup.tune.objectives), "n_trials": setup.n_trials, "states": states,
        "surplus_trials": len(trials) - len(counted), "defaults": None, "best": None, "pareto_front": [],
    }
    if defaults is not None:
        summary["defaults"] = {"trial": defaults.number, "params": defaults.params, "values": defaults.values}
    if best:
        b = best[0]
        note = (f"Tuned by `sepo-bench tune` ({setup.study_name}, {redact(setup.storage)}): trial {b.number}, "
                f"validation accuracy {b.values[0]:.4f}"
                + (f" ({setup.tune.objectives[1]} {b.values[1]:.6g})" if setup.multi else "")
                + (f"; the method's own settings (trial {defaults.number}) scored {defaults.values[0]:.4f}"
                   if defaults is not None else "")
                + f".\nSource: {setup.cfg.source}. Validation accuracy is what the study optimized; run this "
                "file (sepo-bench optimize) for test accuracy.")
        path = best_config(setup, b.params, note, out / "best.yaml")
        summary["best"] = {"trial": b.number, "params": b.params, "values": b.values, "config": str(path),
                           "cells": b.user_attrs.get("cells"), "mlflow_run_id": b.user_attrs.get("mlflow_run_id")}
        if setup.multi:
            summary["pareto_front"] = [{"trial": t.number, "params": t.params, "values": t.values} for t in best]
    _write_trials_csv(study, out / "trials.csv")
    summary["plots"] = save_plots(setup, study, out / "plots")
    tmp = out / f".summary.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(_jsonable(summary), indent=2), encoding="utf-8")
    os.replace(tmp, out / "summary.json")
    return summary


def _write_trials_csv(study, path: Path) -> None:
    try:
        df = study.trials_dataframe(attrs=("number", "state", "value" if len(study.directions) == 1 else "values",
                                           "params", "duration", "user_attrs"))
    except Exception:  # noqa: BLE001 (no trials yet)
        return
    drop = [c for c in df.columns if c in ("user_attrs_cells", "user_attrs_costs")]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.drop(columns=drop).to_csv(tmp, index=False)
    os.replace(tmp, path)


def print_summary(setup: TuneSetup, study, summary: dict[str, Any]) -> None:
    from optuna.trial import TrialState

    rows = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    names = list(setup.tune.space)
    head = ["trial", "state", *setup.tune.objectives, *names]
    table = [head]
    for t in rows:
        if t.state == TrialState.COMPLETE and t.values:
            vals = [f"{v:.4g}" for v in t.values]
        elif t.state == TrialState.PRUNED:
            last = max(t.intermediate_values) if t.intermediate_values else None
            vals = [f"(gen {last % STEP_STRIDE}: {t.intermediate_values[last]:.3f})" if last is not None else "-"]
            vals += ["-"] * (len(setup.tune.objectives) - 1)
        else:
            vals = ["-"] * len(setup.tune.objectives)
        mark = " *" if summary.get("best") and t.number == summary["best"]["trial"] else ""
        dflt = " (defaults)" if t.user_attrs.get("sepo.defaults") else ""
        table.append([f"{t.number}{mark}{dflt}", t.state.name, *vals,
                      *[(f"{t.params[n]:.4g}" if isinstance(t.params.get(n), float) else str(t.params.get(n, "-")))
                        for n in names]])
    widths = [max(len(str(r[i])) for r in table) for i in range(len(head))]
    print("\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in table))
    st = ", ".join(f"{n} {k.lower()}" for k, n in summary["states"].items())
    print(f"study {setup.study_name}: {st} (of {setup.n_trials}); storage {summary['storage']}")
    if summary.get("defaults"):
        d = summary["defaults"]
        print(f"method's own settings (trial {d['trial']}): val accuracy {d['values'][0]:.4f}")
    if summary.get("best"):
        b = summary["best"]
        print(f"best (trial {b['trial']}): val accuracy {b['values'][0]:.4f}; {_fmt_params(b['params'])}")
        if setup.multi:
            print(f"Pareto front (val_accuracy up, {setup.tune.objectives[1]} down): " + "; ".join(
                f"trial {p['trial']}: {p['values'][0]:.3f} / {p['values'][1]:.6g}" for p in summary["pareto_front"]))
        print(f"best experiment file: {b['config']}  (sepo-bench optimize --config {b['config']})")
    for name, p in summary.get("plots", {}).items():
        print(f"plot {name}: {p}")
    print(f"summary: {setup.out / 'summary.json'}")


# ------------------------------------------------------------------------------------------------ entry


def tune(cfg: ExperimentConfig, *, workers: int = 1, trials: int | None = None, storage: str | None = None,
         quiet: bool = False) -> dict[str, Any]:
    """Run (or continue) the study of `cfg.tune` with `workers` local worker processes; write the outputs."""
    setup = prepare(cfg, trials=trials, storage=storage)
    study = open_study(setup)
    tracking = "" if not cfg.tracking.enabled else "; trials tracked in MLflow"
    b = cfg.budget_per_cell
    if b.max_requests or b.max_tokens or b.max_usd:
        print("note: budget_per_cell caps requests/tokens/usd, which count paid requests only: a trial whose "
              "replies earlier trials cached gets more work for the same cap; max_evaluations does not.", flush=True)
    print(f"tune {setup.study_name}: {setup.n_trials} trials of {setup.run} over {', '.join(setup.tune.space)} "
          f"({'/'.join(setup.tune.objectives)}, pruner {setup.tune.pruner_name}); storage {redact(setup.storage)}; "
          f"{workers} worker(s); outputs in {setup.out}{tracking}", flush=True)
    if workers <= 1:
        run_worker(setup, 0, quiet=quiet)
    else:
        if cfg._source is None:
            raise ConfigError("--workers needs the experiment as a file (each worker process reads it).")
        import multiprocessing as mp

        from harness.experiment import open_tracker

        if cfg.llm.task.embedded or cfg.llm.prompt.embedded:
            print(f"note: each of the {workers} workers starts its own embedded model server; on a small machine "
                  "one worker, or a shared OpenAI-compatible server (base_url), is faster.", flush=True)

        open_tracker(cfg)  # the MLflow store and experiment exist before the workers race to create them
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(str(cfg._source), cfg.output_dir, trials, storage, i),
                             name=f"tune-worker-{i}") for i in range(workers)]
        try:
            sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)  # workers inherit it: Ctrl-C is the parent's
            try:
                for p in procs:
                    p.start()
            finally:
                signal.signal(signal.SIGINT, sigint)
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            stop_workers(procs)
            fail_running(open_study(setup, create=False), {p.pid for p in procs if p.pid})
            raise
        bad = [i for i, p in enumerate(procs) if p.exitcode != 0]
        if bad:
            summary = summarize(setup, open_study(setup, create=False))
            raise TuneError(f"worker(s) {', '.join(map(str, bad))} stopped with an error (see above); the study "
                            f"keeps every finished trial ({summary['states']}); rerun the same command to finish it.")
    study = open_study(setup, create=False)
    summary = summarize(setup, study)
    if not quiet:
        print_summary(setup, study, summary)
    return summary


def _cmd_tune(args: argparse.Namespace) -> int:
    """Optuna study over a method's settings (the config's `tune:` section): trials on train/val only, pruned
    per generation, each an MLflow run; writes the best experiment file, a summary and plots. With a
    postgresql:// storage, the same command on several machines shares one study."""
    from harness.checks import check

    cfg = _load(args.config, args.output_dir)
    check(cfg)
    try:
        tune(cfg, workers=args.workers, trials=args.trials, storage=args.storage)
    except KeyboardInterrupt:
        print("interrupted: the study keeps every finished trial and marks the one(s) in flight FAIL; rerun the "
              "same command to continue it.", file=sys.stderr, flush=True)
        return 130
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `tune` on the CLI's subparsers."""
    from harness.cli import _positive

    t = subparsers.add_parser("tune", help="Optuna search over a method's settings (the config's tune: section)",
                              description=_cmd_tune.__doc__)
    t.add_argument("--config", default="configs/tune-mbpp-local.yaml", help="experiment YAML with a tune: section "
                   "(default: %(default)s)")
    t.add_argument("--workers", type=_positive, default=1, help="worker processes here (default 1)")
    t.add_argument("--trials", type=_positive, default=None, help="trials of the whole study (default: tune.n_trials)")
    t.add_argument("--storage", default=None, help="Optuna storage URL, e.g. postgresql://user@host:5432/db "
                   "(default: tune.storage, else sqlite under the run folder)")
    t.add_argument("--output-dir", default=None, help="write outputs here instead of the config's output_dir")
    t.set_defaults(func=_cmd_tune)
    return t


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.tune [flags]`: the same as `sepo-bench tune [flags]`."""
    from harness.cli import main as cli_main

    return cli_main(["tune", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
