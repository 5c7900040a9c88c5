"""MLflow's own prompt optimizers as grid methods: `mlflow-gepa` (GepaPromptOptimizer) and `mlflow-metaprompt`
(MetaPromptOptimizer), run through the same budget and evaluator as every other method, so the report can
put MLflow's GEPA beside this project's (`gepa`) and SePO beside both.

- Scoring: MLflow's optimizers take an `eval_fn(candidate_prompts, rows)`; here it is the cell's harness
  Evaluator on the rows' examples (its records' scores, the scorer's feedback as the rationale), so every
  example scored is one evaluation on the cell's ledger, capped by `budget_per_cell`.
- The reflection model: MLflow calls it through litellm with a model string. It is pointed (litellm
  `api_base`, passed in MLflow's own `gepa_kwargs.reflection_lm_kwargs` / `lm_kwargs`) at a
  harness.llm.bridge.Bridge, an OpenAI-compatible endpoint on 127.0.0.1 that forwards each request to the
  cell's prompt client: the same endpoint (or embedded model), cache, retries, prices and ledger as every
  other method's prompt agent. Nothing else of the optimizers is changed.
- Candidates: GEPA's callbacks report each pool member (val score) and each rejected proposal with its
  parent; the metaprompt's two evaluations are the seed and its single rewrite.
- A budget stop (an evaluation or a reflection call the budget forbids) ends the run with its best so far,
  `extra["stopped"] = "budget"`. MLflow's tracking is off (the runner tracks the cell). No checkpoint of their
  own: a resumed cell re-runs, and the response cache answers every request already paid for.

mlflow-gepa's settings mirror `gepa`'s where MLflow exposes them; `valset: val` hands GEPA the first
`val_size` validation examples as `gepa` does (MLflow's default, `train`, tracks the Pareto front on the
train rows). Best: GEPA's (the highest validation mean), or MLflow's metaprompt rewrite (always returned).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.benchmarks.base import Example
from harness.llm.bridge import Bridge
from harness.llm.client import LLMClient
from harness.llm.usage import BudgetExceeded, Ledger
from harness.optimizer import Candidate, OptimizationTask, OptimizeResult, RunContext

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm would fetch a cost map online
COMPONENT = "system_prompt"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MLflowGEPASettings(_Settings):
    max_metric_calls: int = Field(500, ge=1, description="GEPA's budget: examples scored (validation included)")
    valset: Literal["val", "train"] = Field("val", description="val: the first val_size validation examples "
                                            "(as `gepa`); train: MLflow's default, the train rows")
    val_size: int | None = Field(16, ge=1, description="validation examples GEPA tracks (None: all)")
    reflection_minibatch_size: int = Field(3, ge=1, description="examples reflected on per proposal")
    temperature: float | None = Field(0.7, ge=0.0, le=2.0, description="reflection model temperature")
    agent_max_tokens: int | None = Field(1500, gt=0, description="reply cap of reflection calls")


class MLflowMetaPromptSettings(_Settings):
    train_size: int = Field(16, ge=1, description="train examples evaluated and shown in the meta-prompt")
    temperature: float | None = Field(1.0, ge=0.0, le=2.0, description="reflection model temperature")
    agent_max_tokens: int | None = Field(1500, gt=0, description="reply cap of the reflection call")
    guidelines: str = Field("", description="extra guidelines for the rewrite (the task description is always "
                            "given)")


# ---- what both share ------------------------------------------------------------------------------------


def _rows(examples: list[Example]) -> list[dict[str, Any]]:
    return [{"inputs": {"question": e.question}, "expectations": {"expected_response": str(e.answer)}, "id": e.id}
            for e in examples]


class _Spend:
    """What the cell's ledgers recorded since a mark (each distinct ledger once)."""

    KEYS = ("requests", "tokens", "usd", "evaluations")

    def __init__(self, *ledgers: Ledger) -> None:
        self.ledgers = list({id(x): x for x in ledgers}.values())

    def mark(self) -> dict[str, float]:
        return {k: sum(getattr(led.total, k) for led in self.ledgers) for k in self.KEYS}

    def since(self, mark: dict[str, float]) -> dict[str, float]:
        now = self.mark()
        return {k: round(now[k] - mark[k], 8) if k == "usd" else int(now[k] - mark[k]) for k in self.KEYS}


class _Run:
    """One peer run: the eval_fn over the harness evaluator, the bridge, candidates, and the budget flag."""

    def __init__(self, task: OptimizationTask, prompt_llm: LLMClient, sink: Callable[[Candidate], None] | None,
                 label: str) -> None:
        self.task, self.sink, self.label = task, sink, label
        self.by_id = {e.id: e for e in [*task.train, *task.val]}
        self.spend = _Spend(task.evaluator.llm.ledger, prompt_llm.ledger)
        self.start = self.spend.mark()
        self.bridge = Bridge(prompt_llm)
        self.candidates: list[Candidate] = []
        self.budget_hit: str | None = None

    @property
    def stopped(self) -> str | None:
        return "budget" if (self.budget_hit or self.bridge.budget_hit) else None

    def eval_fn(self, prompts: dict[str, str], rows: list[dict[str, Any]]) -> list[Any]:
        from mlflow.genai.optimize.types import EvaluationResultRecord

        examples = [self.by_id[r["id"]] for r in rows]
        try:
            res = self.task.evaluator.evaluate(prompts[COMPONENT], examples, label=self.label)
        except BudgetExceeded as exc:
            self.budget_hit = str(exc)
            raise
        return [EvaluationResultRecord(inputs=r["inputs"], outputs=rec.response, expectations=r["expectations"],
                                       score=rec.score, trace=None, rationales={"feedback": rec.feedback})
                for r, rec in zip(rows, res.records, strict=True)]

    def add(self, cand: Candidate) -> Candidate:
        self.candidates.append(cand)
        if self.sink is not None:
            self.sink(cand)
        return cand

    def extra(self, **more: Any) -> dict[str, Any]:
        return {"stopped": self.stopped, "spent": self.spend.since(self.start), "bridge_requests":
                self.bridge.requests, **more}


def _sink(callbacks: Any, on_candidate: Callable[[Candidate], None] | None) -> Callable[[Candidate], None] | None:
    return on_candidate or getattr(callbacks, "on_candidate", None)


class _Peer:
    """A grid method over one of MLflow's optimizers (`OPTIMIZER`, in mlflow.genai.optimize.optimizers):
    settings, then per run the optimizer class and a _Run labelled with the method's name, handed to `_optimize`."""

    name: str
    Settings: type[_Settings]
    OPTIMIZER: str

    def __init__(self, settings: _Settings | dict[str, Any] | None = None, **overrides: Any) -> None:
        self.settings = self.Settings.model_validate({**(dict(settings or {}) if not isinstance(
            settings, BaseModel) else settings.model_dump()), **overrides})

    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int, callbacks: Any = None,
                 on_candidate: Callable[[Candidate], None] | None = None, checkpoint_dir: Path | None = None,
                 context: RunContext | None = None) -> OptimizeResult:
        optimizer = getattr(importlib.import_module("mlflow.genai.optimize.optimizers"), self.OPTIMIZER)
        run = _Run(task, prompt_llm, _sink(callbacks, on_candidate), self.name)
        return self._optimize(task, run, optimizer, seed=seed, callbacks=callbacks)

    def _optimize(self, task: OptimizationTask, run: _Run, optimizer: Any, *, seed: int,
                  callbacks: Any) -> OptimizeResult:
        raise NotImplementedError


# ---- mlflow-gepa -------------------------------------------------------------------------------------------


class _GEPAEvents:
    """GEPA's callbacks -> harness candidates (ids gepa-<pool index>, as `gepa` names them)."""

    def __init__(self, run: _Run, train_ids: list[str], val_ids: list[str], callbacks: Any) -> None:
        self.run, self.train_ids, self.val_ids, self.callbacks = run, train_ids, val_ids, callbacks
        self.iteration, self.pending, self.mark = 0, {}, run.spend.mark()

    def on_iteration_start(self, event: dict[str, Any]) -> None:
        self.iteration, self.pending, self.mark = event["iteration"], {}, self.run.spend.mark()

    def on_iteration_end(self, event: dict[str, Any]) -> None:
        if hasattr(self.callbacks, "generation_end"):
            self.callbacks.generation_end(event["iteration"])

    def on_candidate_selected(self, event: dict[str, Any]) -> None:
        self.pending["parent"] = event["candidate_idx"]

    def on_minibatch_sampled(self, event: dict[str, Any]) -> None:
        self.pending["ids"] = [self.train_ids[i] for i in event["minibatch_ids"]]

    def on_proposal_end(self, event: dict[str, Any]) -> None:
        self.pending["text"] = event["new_instructions"].get(COMPONENT)
        self.pending["reply"] = event["raw_lm_outputs"].get(COMPONENT)

    def on_evaluation_end(self, event: dict[str, Any]) -> None:
        self.pending["child" if event["candidate_idx"] is None else "parent_scores"] = list(event["scores"])

    def _proposal(self, cid: str, admitted: bool, **more: Any) -> Candidate:
        p, scores = self.pending, self.pending.get("child") or []
        parent = p.get("parent")
        return Candidate(cid, p.get("text") or "", f"gepa-{parent}" if parent is not None else None, self.iteration,
                         sum(scores) / len(scores) if scores else None,
                         meta={"stage": "pool" if admitted else "rejected", "admitted": admitted,
                               "example_ids": p.get("ids", []), "agent_reply": p.get("reply"),
                               "parent_minibatch_scores": p.get("parent_scores"),
                               "cost": self.run.spend.since(self.mark), **more})

    def on_candidate_rejected(self, event: dict[str, Any]) -> None:
        self.run.add(self._proposal(f"gepa-it{self.iteration}-rejected", False, reason=event.get("reason")))

    def on_valset_evaluated(self, event: dict[str, Any]) -> None:
        idx, ids = event["candidate_idx"], [self.val_ids[i] for i in event["scores_by_val_id"]]
        if idx == 0:
            cand = Candidate("gepa-0", event["candidate"][COMPONENT], None, 0, None, event["average_score"],
                             {"stage": "pool", "admitted": True, "cost": self.run.spend.since(self.mark)})
        else:
            cand = self._proposal(f"gepa-{idx}", True)
            cand.prompt, cand.val_score = event["candidate"][COMPONENT], event["average_score"]
            if event.get("parent_ids"):
                cand.parent_id = f"gepa-{event['parent_ids'][0]}"
        cand.meta["val_example_ids"] = ids
        self.run.add(cand)


class MLflowGEPA(_Peer):
    """MLflow's GepaPromptOptimizer as a grid method; see the module docstring."""

    name = "mlflow-gepa"
    Settings = MLflowGEPASettings
    OPTIMIZER = "GepaPromptOptimizer"

    def _optimize(self, task: OptimizationTask, run: _Run, optimizer: Any, *, seed: int,
                  callbacks: Any) -> OptimizeResult:
        s = self.settings
        train = _rows(task.train)
        val = _rows(task.val[: s.val_size] if s.val_size else task.val) if s.valset == "val" and task.val else train
        events = _GEPAEvents(run, [r["id"] for r in train], [r["id"] for r in val], callbacks)

        def stop(_state: Any) -> bool:
            asked = getattr(callbacks, "stop_reason", lambda: None)()
            return bool(run.stopped or asked)

        returned = None
        with run.bridge:
            lm = {**run.bridge.litellm_kwargs(), "num_retries": 0, "temperature": s.temperature,
                  "max_tokens": s.agent_max_tokens}
            opt = optimizer(reflection_model=f"openai:/{run.bridge.model}",
                            max_metric_calls=s.max_metric_calls,
                            gepa_kwargs={"reflection_lm_kwargs": lm, "valset": val, "seed": seed,
                                         "reflection_minibatch_size": s.reflection_minibatch_size,
                                         "callbacks": [events], "stop_callbacks": [stop],
                                         "raise_on_exception": True, "logger": _Quiet()})
            try:
                returned = opt.optimize(run.eval_fn, train, {COMPONENT: task.initial_prompt},
                                        enable_tracking=False).optimized_prompts[COMPONENT]
            except Exception:
                if run.stopped is None:
                    raise
        pool = [c for c in run.candidates if c.meta["stage"] == "pool" and c.val_score is not None]
        best = next((c for c in pool if c.prompt == returned), None) or (
            max(pool, key=lambda c: (c.val_score, -int(c.id.split("-")[1]))) if pool else None)
        if best is None:  # the budget ended the run before the seed was scored
            best = run.add(Candidate("gepa-0", task.initial_prompt, None, 0, meta={
                "stage": "pool", "admitted": True, "skipped": "the budget ended the run before it was scored"}))
        return OptimizeResult(best, run.candidates, run.extra(valset=s.valset))


class _Quiet:
    """GEPA's logger: kept, not printed (the runner prints candidates)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


# ---- mlflow-metaprompt ---------------------------------------------------------------------------------------


class MLflowMetaPrompt(_Peer):
    """MLflow's MetaPromptOptimizer (one reflection pass, few-shot mode) as a grid method."""

    name = "mlflow-metaprompt"
    Settings = MLflowMetaPromptSettings
    OPTIMIZER = "MetaPromptOptimizer"

    def _optimize(self, task: OptimizationTask, run: _Run, optimizer: Any, *, seed: int,
                  callbacks: Any) -> OptimizeResult:
        s = self.settings
        rows = _rows(task.train[: s.train_size])
        scored: list[tuple[str, float]] = []
        mark = run.spend.mark()

        def eval_fn(prompts: dict[str, str], batch: list[dict[str, Any]]) -> list[Any]:
            nonlocal mark
            out = run.eval_fn(prompts, batch)
            n = len(scored)
            text, score = prompts[COMPONENT], sum(r.score for r in out) / len(out)
            scored.append((text, score))
            run.add(Candidate(f"mp-{n}", text, None if n == 0 else "mp-0", n, score, meta={
                "stage": "seed" if n == 0 else "rewrite", "admitted": True, "example_ids": [r["id"] for r in batch],
                "cost": run.spend.since(mark)}))
            mark = run.spend.mark()
            return out

        returned = task.initial_prompt
        guidelines = f"The task: {task.description} {s.guidelines}".strip()
        with run.bridge:
            lm = {**run.bridge.litellm_kwargs(), "temperature": s.temperature, "max_tokens": s.agent_max_tokens}
            opt = optimizer(reflection_model=f"openai:/{run.bridge.model}", lm_kwargs=lm, guidelines=guidelines)
            try:
                returned = opt.optimize(eval_fn, rows, {COMPONENT: task.initial_prompt},
                                        enable_tracking=False).optimized_prompts[COMPONENT]
            except BudgetExceeded:
                pass
        best = next((c for c in reversed(run.candidates) if c.prompt == returned), None)
        if best is None:  # a budget stop before the rewrite was scored, or before anything was
            best = run.add(Candidate(f"mp-{len(run.candidates)}", returned, "mp-0" if run.candidates else None,
                                     len(run.candidates), meta={"stage": "rewrite" if run.candidates else "seed",
                                                                "admitted": True, "skipped": "not scored (budget)"}))
        return OptimizeResult(best, run.candidates, run.extra(rewrite_returned=returned != task.initial_prompt))
