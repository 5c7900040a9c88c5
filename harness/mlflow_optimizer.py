"""Every method of the harness as an MLflow prompt optimizer (MLflow 3.x `BasePromptOptimizer`):

    result = mlflow.genai.optimize_prompts(predict_fn=..., train_data=rows, prompt_uris=[prompt.uri],
                                           scorers=[...], optimizer=SePOPromptOptimizer(budget=24))

`HarnessPromptOptimizer(method)` runs a registered method (harness.api.run_method: the grid's registry and
optimizer code) with:

- scoring: MLflow's `eval_fn` (the user's predict_fn with the candidate template patched in, then the scorers)
  behind the harness Evaluator interface (`EvalFnEvaluator`): each row scored is one evaluation on the ledger
  (the grid's budget unit), its score is the record's score and its rationales the feedback the prompt agent
  reads. predict_fn's own model calls are the user's and are not on the ledger;
- the target: the registered prompt's template, `{{variables}}` kept intact (harness.template_guard: a
  rewrite that renames one is retried, one that drops one is refused; neither is ever returned);
- the prompt agent: any OpenAI-compatible endpoint (an EndpointConfig or its dict) or the embedded local
  model (None, or a local model name), with the harness cache, retries and ledger;
- `budget`: example evaluations (an int) or a Budget; for SePO, p~* comes from `prompt_agent_path` (an
  earlier grid run's artifact) or is pre-trained on the user's own train rows (`pretrain="own"`);
- data: train_data is split once (seeded) into train and validation (`val_fraction`); the returned prompt is
  the method's best (chosen on validation where the method does so). `initial_eval_score` /
  `final_eval_score` are the seed's and the result's mean score on all of train_data, scored after the run
  outside the budget (as the grid scores test outside it; here the data is the optimization data);
- tracking: with `enable_tracking`, every candidate goes to the active MLflow run as the grid logs a cell's
  (harness.tracking.CellRun: candidates/<id>.json with parent, generation, scores, cost, and step metrics),
  then the consolidated candidates.json, the method's settings as params and its spend as metrics.

Several target prompts are optimized one after another (coordinate ascent), each with an equal share of what
is left of the budget and the others fixed at their latest text; candidate ids then carry the prompt's name.
This module imports mlflow (it subclasses MLflow's optimizer); logging still goes through harness.tracking.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from mlflow.genai.optimize.optimizers import BasePromptOptimizer
from mlflow.genai.optimize.types import EvaluationResultRecord, PromptOptimizerOutput

from harness import schema
from harness import template_guard as tg
from harness.api import LLMSpec, Result, UserTask, as_budget, endpoint, open_clients, run_method
from harness.config import ConfigError, EndpointConfig
from harness.evaluator import EvalResult, Record
from harness.llm.client import LLMClient
from harness.llm.usage import Budget, Ledger
from harness.optimizer import Candidate, OptimizationTask

EvalFn = Callable[[dict[str, str], list[dict[str, Any]]], list[EvaluationResultRecord]]


@dataclass
class PredictFn:
    """The task role when the task agent is the user's predict_fn (run by eval_fn): no requests of its own,
    its evaluations counted on `ledger`."""

    ledger: Ledger
    role: str = "task"
    model: str = "mlflow:predict_fn"
    endpoint: EndpointConfig = field(default_factory=lambda: EndpointConfig(base_url="mlflow://predict_fn",
                                                                            model="predict_fn"))

    def with_ledger(self, ledger: Ledger) -> PredictFn:
        return replace(self, ledger=ledger)


def to_record(example_id: str, r: EvaluationResultRecord) -> Record:
    score = float(r.score) if r.score is not None else 0.0
    why = "; ".join(f"{k}: {v}" for k, v in (r.rationales or {}).items() if v) or f"score {score:g}"
    return Record(example_id, str(r.outputs), score, score >= 1.0, why, 1, 0, 0, False, extracted=None,
                  reason="correct" if score >= 1.0 else "scored")


class EvalFnEvaluator(tg.GuardedEvaluator):
    """MLflow's eval_fn as the harness evaluator of one target prompt (the others held at `fixed`)."""

    _lock = threading.Lock()  # eval_fn patches PromptVersion process-wide: one call at a time

    def __init__(self, bench: UserTask, llm: PredictFn, eval_fn: EvalFn, name: str, fixed: Mapping[str, str],
                 *, seed: int, required: frozenset[str]) -> None:
        super().__init__(bench, llm, seed=seed, required=required)
        self.eval_fn, self.target, self.fixed = eval_fn, name, dict(fixed)

    async def score_intact(self, system_prompt: str, examples: list, label: str) -> EvalResult:
        self.calls += 1
        self.llm.ledger.start_evaluations(self.llm.role, len(examples))
        prompts = {**self.fixed, self.target: system_prompt}

        def run() -> list[EvaluationResultRecord]:
            with self._lock:
                return self.eval_fn(prompts, [e.meta["row"] for e in examples])

        out = await asyncio.to_thread(run)
        return EvalResult([to_record(e.id, r) for e, r in zip(examples, out, strict=True)])


def split_rows(rows: list[dict[str, Any]], val_fraction: float, seed: int) -> tuple[list, list]:
    """(train, val): a seeded shuffle, val = round(n * val_fraction) rows (none when fewer than 4 rows)."""
    order = list(range(len(rows)))
    random.Random(f"mlflow-split:{seed}").shuffle(order)
    n_val = round(len(rows) * val_fraction) if len(rows) >= 4 else 0
    return [rows[i] for i in order[n_val:]], [rows[i] for i in sorted(order[:n_val])]


class HarnessPromptOptimizer(BasePromptOptimizer):
    """A registered method of this project as an MLflow prompt optimizer; see the module docstring."""

    def __init__(self, method: str = "sepo", *, prompt_llm: LLMSpec = None, budget: int | Budget | None = None,
                 settings: Mapping[str, Any] | None = None, seed: int = 0, val_fraction: float = 0.25,
                 pretrain: Literal["own", "registry"] = "own", prompt_agent_path: str | None = None,
                 description: str = "", cache: str | None = None, final_eval: bool = True,
                 template_retries: int = 2, checkpoint_dir: str | Path | None = None) -> None:
        from harness.methods import make_optimizer

        self.method, self.prompt_llm, self.budget, self.seed = method, prompt_llm, as_budget(budget), seed
        self.settings = dict(settings or {})
        if prompt_agent_path:
            self.settings["prompt_agent_path"] = str(prompt_agent_path)
        make_optimizer(method, self.settings)  # bad names and settings fail here, before any work
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}.")
        self.val_fraction, self.pretrain, self.description, self.cache = val_fraction, pretrain, description, cache
        self.final_eval, self.template_retries, self.checkpoint_dir = final_eval, template_retries, checkpoint_dir
        self.results: dict[str, Result] = {}  # per target prompt, after optimize()

    def optimize(self, eval_fn: EvalFn, train_data: list[dict[str, Any]], target_prompts: dict[str, str],
                 enable_tracking: bool = True) -> PromptOptimizerOutput:
        if not train_data or eval_fn is None:
            raise ConfigError(f"{type(self).__name__} needs train_data and scorers (it scores candidates on "
                              "them); pass both to mlflow.genai.optimize_prompts.")
        train, val = split_rows(list(train_data), self.val_fraction, self.seed)
        log = _RunLog.active(self) if enable_tracking else None
        current = dict(target_prompts)
        spec = self.prompt_llm if isinstance(self.prompt_llm, LLMClient) else endpoint(self.prompt_llm, "prompt")
        with open_clients(spec, spec, cache=self.cache, budget=self.budget) as (_, agent, led):  # one model
            for i, name in enumerate(target_prompts):
                left = None if led.budget.max_evaluations is None else max(
                    1, (led.budget.max_evaluations - led.total.evaluations) // (len(target_prompts) - i))
                ledger = led.child(Budget(max_evaluations=left))
                required = tg.variables(current[name])
                bench = UserTask(train, val, name=name, description=(self.description or (
                    f"Improve the prompt {name!r}: the task agent's outputs on these inputs are scored by the "
                    "user's scorers (rationales in the feedback).")) + (tg.instruction(required) if required else ""))
                ev = EvalFnEvaluator(bench, PredictFn(ledger), eval_fn, name, current, seed=self.seed,
                                     required=required)
                task = OptimizationTask(bench.name, bench, bench.load("train", self.seed),
                                        bench.load("val", self.seed), ev, current[name])
                sink = log.sink(name if len(target_prompts) > 1 else None) if log else None
                res = run_method(self.method, task, agent.with_ledger(ledger), ledger, settings=self.settings,
                                 seed=self.seed, pretrain=self.pretrain, on_candidate=sink,
                                 checkpoint_dir=Path(self.checkpoint_dir) / name if self.checkpoint_dir else None,
                                 template_retries=self.template_retries)
                self.results[name] = res
                current[name] = res.best_prompt
            usage = led.summary()
        out = PromptOptimizerOutput(optimized_prompts=current)
        if self.final_eval:
            out.initial_eval_score, out.initial_eval_score_per_scorer = _mean(eval_fn(dict(target_prompts),
                                                                                      list(train_data)))
            out.final_eval_score, out.final_eval_score_per_scorer = (
                (out.initial_eval_score, out.initial_eval_score_per_scorer) if current == dict(target_prompts)
                else _mean(eval_fn(current, list(train_data))))
        if log is not None:
            log.finish(usage, self.results)
        return out


class SePOPromptOptimizer(HarnessPromptOptimizer):
    """SePO as an MLflow prompt optimizer (`method`: "sepo" or a SePO preset, e.g. "sepo-no-self-improve")."""

    def __init__(self, method: str = "sepo", **kwargs: Any) -> None:
        super().__init__(method, **kwargs)


def _mean(records: list[EvaluationResultRecord]) -> tuple[float | None, dict[str, float]]:
    scores = [r.score for r in records if r.score is not None]
    per: dict[str, list[float]] = {}
    for r in records:
        for k, v in (r.individual_scores or {}).items():
            per.setdefault(k, []).append(float(v))
    return (sum(scores) / len(scores) if scores else None), {k: sum(v) / len(v) for k, v in per.items()}


class _RunLog:
    """The active MLflow run, written the way the grid writes a cell's (harness.tracking.CellRun)."""

    def __init__(self, run_id: str, uri: str, owner: HarnessPromptOptimizer) -> None:
        from harness.tracking import CellRun, Tracker

        self.tracker = Tracker(uri, "mlflow-optimize")
        self.cell = CellRun(self.tracker, run_id, f"mlflow-optimize-{run_id}", resumed=False)
        self.tracker._log_batch(run_id, params={"harness.method": owner.method, "harness.seed": owner.seed,
                                                "harness.val_fraction": owner.val_fraction,
                                                **{f"harness.settings.{k}": v for k, v in owner.settings.items()},
                                                **{f"harness.budget.{k}": v for k, v in vars(owner.budget).items()
                                                   if v is not None}},
                                tags={schema.KIND: schema.KIND_MLFLOW_OPTIMIZE, schema.METHOD: owner.method})

    @classmethod
    def active(cls, owner: HarnessPromptOptimizer) -> _RunLog | None:
        import mlflow

        run = mlflow.active_run()
        return cls(run.info.run_id, mlflow.get_tracking_uri(), owner) if run is not None else None

    def sink(self, prefix: str | None) -> Callable[[Candidate], None]:
        def log(c: Candidate) -> None:
            if prefix:
                c = replace(c, id=f"{prefix}/{c.id}", parent_id=f"{prefix}/{c.parent_id}" if c.parent_id else None,
                            meta={**c.meta, "prompt_name": prefix})
            self.cell.log_candidate(c)

        return log

    def finish(self, usage: dict[str, dict[str, float]], results: Mapping[str, Result]) -> None:
        cands = self.cell.candidates()
        cols = ["id", "parent_id", "generation", "order", "stage", "admitted", "train_score", "val_score",
                "prompt", "example_ids", "val_example_ids", "cost", "meta"]
        t, run_id = self.tracker, self.cell.run_id
        t._log_json(run_id, {"columns": cols, "data": [[d.get(c) for c in cols] for d in cands]}, "candidates.json")
        total = usage["total"]
        t._log_batch(run_id, metrics={"evaluations": total["evaluations"], "requests": total["requests"],
                                      "tokens": total["tokens"], "usd": total["usd"], "n_candidates": len(cands)})
        t._log_json(run_id, {name: {"best_id": r.best.id, "best_prompt": r.best_prompt, "stopped": r.stopped,
                                    "refused": r.refused, "lineage": [c.id for c in r.lineage()]}
                             for name, r in results.items()}, "harness_result.json")
