"""One trial: the method run with the trial's settings on every benchmark x seed of the file, on train and
validation data only, scored on the whole val split; one MLflow run per trial.

Each cell runs through the one cell runner (harness/cell.py), with the best prompt scored on val."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from harness import schema
from harness.config import ConfigError, TuneParam
from harness.tune.generations import STEP_STRIDE, GenerationReporter
from harness.tune.study import taken
from harness.tune.validate import TuneError, TuneSetup, fmt_params, jsonable

COST_KEYS = {"tokens": "tokens", "usd": "usd", "requests": "requests", "evaluations": "evaluations"}
MAX_FAILED_IN_A_ROW = 3


class SurplusTrial(Exception):
    """The study already had n_trials when this trial was created (workers asked at the same moment)."""


@contextmanager
def open_train_val(setup: TuneSetup) -> Iterator[dict[str, Any]]:
    """Every benchmark the trials need (targets and pools), with only train and val loaded."""
    from harness.grid import open_benchmarks

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


class TrialRunner:
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

    def objective(self, trial) -> float | tuple[float, float]:
        s = self.setup
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}:{self.worker}")
        if taken(self.study, before=trial.number) >= s.n_trials:
            trial.set_user_attr("surplus", True)
            self.study.stop()
            raise SurplusTrial(f"trial {trial.number}: the study already has {s.n_trials} trials")
        params = suggest_params(trial, s.tune.space)
        self.say(f"-- trial {trial.number} (worker {self.worker}): {fmt_params(params)}")
        run = self._start_run(trial, params)
        t0 = time.monotonic()
        try:
            value, costs, per_cell = self._run_cells(trial, params, run)
        except KeyboardInterrupt:  # Optuna fails the trial and re-raises; the CLI says so in one line
            import optuna

            optuna.logging.set_verbosity(optuna.logging.ERROR)  # no "Trial N failed" warning with a traceback
            trial.set_user_attr("fail_reason", "interrupted")
            if run is not None:
                run.log_tags({schema.TRIAL_STATE: schema.TRIAL_FAIL})
                run.fail("interrupted")
            raise
        except Exception as exc:
            import optuna

            if run is not None:
                if isinstance(exc, optuna.TrialPruned):
                    run.log_tags({schema.TRIAL_STATE: schema.TRIAL_PRUNED, schema.PRUNED: str(exc)})
                    run.finish(metrics={"wall_s": time.monotonic() - t0, "pruned": 1.0}, test_records=[],
                               best_prompt="", result={"state": "PRUNED", "params": jsonable(params),
                                                       "reason": str(exc)})
                else:
                    run.log_tags({schema.TRIAL_STATE: schema.TRIAL_FAIL})
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
            run.log_tags({schema.TRIAL_STATE: schema.TRIAL_COMPLETE})
            run.finish(metrics={"val_accuracy": value, **{f"cost_{k}": v for k, v in costs.items()},
                                "wall_s": wall}, test_records=[],
                       best_prompt="\n\n".join(c["best_prompt"] for c in per_cell),
                       result={"state": "COMPLETE", "params": jsonable(params), "value": value,
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
        run = self.tracker.start_trial(
            key, study=s.study_name, number=trial.number, method=s.run,
            benchmark="+".join(b.name for b in s.cfg.benchmarks), seed=s.cfg.seeds[0],
            params={"trial": trial.number, "study": s.study_name, "tuned": params,
                    "settings": {**s.settings, **params}, "seeds": s.cfg.seeds,
                    "budget_per_cell": s.cfg.budget_per_cell.model_dump()},
            tags={schema.BASE_METHOD: s.base})
        trial.set_user_attr("mlflow_run_id", run.run_id)
        return run

    def _run_cells(self, trial, params: dict[str, Any], run) -> tuple[float, dict[str, float], list[dict]]:
        cfg = self.setup.cfg
        totals = dict.fromkeys(COST_KEYS.values(), 0.0)
        per_cell: list[dict] = []
        cells = [(b, seed) for b in cfg.benchmarks for seed in cfg.seeds]
        for i, (b, seed) in enumerate(cells):
            cell = self.run_cell(trial, params, run, i, b, seed, prefix=len(cells) > 1)
            for k in totals:
                totals[k] += cell["spent"][k]
            per_cell.append(cell)
            if len(cells) > 1:
                self.say(f"   {cell['benchmark']} seed {seed}: val {cell['val_accuracy']:.3f} "
                         f"({cell['n_val']} examples)")
        value = sum(c["val_accuracy"] for c in per_cell) / len(per_cell)
        return value, totals, per_cell

    def run_cell(self, trial, params: dict[str, Any], run, i: int, b, seed: int, *, prefix: bool) -> dict[str, Any]:
        """Cell i of the trial: optimize on train/val under the cell budget, then score the best prompt on val.
        Its cost counts every reply the method used, cached or not (Usage.used), so a trial's cost does not
        depend on what earlier trials left in the response cache."""
        import optuna

        from harness.cell import run_cell
        from harness.grid import entry_key, task_opener
        from harness.llm.usage import Budget
        from harness.methods import make_optimizer
        from harness.optimizer import Callbacks, Candidate, RunContext

        s, cfg = self.setup, self.setup.cfg
        opt = make_optimizer(s.run, {**s.settings, **params, "method": s.base})
        ob = self.benches[entry_key(b)]

        def context(task_llm) -> RunContext:
            return RunContext(open_task=task_opener(self.benches, task_llm, cfg.system_prompt, asker="trial settings",
                                                    advice="keep pool settings out of the search space"),
                              shared_dir=cfg.run_dir / "shared", held_out=tuple(cfg.held_out))

        def on_report(step: int, value: float) -> None:
            if run is not None:
                run.log_metrics({"intermediate_value": value}, step=step)

        reporter = GenerationReporter(trial, i * STEP_STRIDE, prune=not s.multi, on_report=on_report)
        tag = f"{ob.bench.name}-s{seed}/" if prefix else ""

        def on_candidate(c: Candidate) -> None:
            if run is not None:
                run.log_candidate(Candidate(tag + c.id, c.prompt, tag + c.parent_id if c.parent_id else None,
                                            c.generation, c.train_score, c.val_score, dict(c.meta or {})))
            reporter.candidate(c)

        # the one cell runner (harness/cell.py), scoring the best prompt on val: a trial never loads test
        out = run_cell(opt, ob.bench, seed, llms=self.llms, budget=Budget(**cfg.budget_per_cell.model_dump()),
                       initial_prompt=cfg.system_prompt, final=partial(ob.split, "val", seed), make_context=context,
                       score_initial=False,
                       callbacks=Callbacks(on_candidate, reporter.generation_end, reporter.should_stop))
        if reporter.pruned:  # the method stopped at its next check, as on a budget cap
            raise optuna.TrialPruned(reporter.pruned)
        reporter.finish()
        res, scored, u = out.result, out.test, out.ledger.snapshot()
        return {"benchmark": ob.bench.name, "seed": seed, "val_accuracy": scored.accuracy,
                "n_val": out.n_final, "best_id": res.best.id, "best_prompt": res.best.prompt,
                "n_candidates": len(res.candidates), "stopped": (res.extra or {}).get("stopped"),
                "generation_best": {str(g): v for g, v in reporter.values.items()},
                "spent": u.used(), "paid": {"requests": u.requests, "tokens": u.tokens, "usd": u.usd}}
