"""GEPA (gepa-ai/gepa, PyPI `gepa`): reflective prompt evolution with a Pareto front over per-example scores.

The `gepa` package runs the search (`gepa.optimize`); this module gives it:

- `HarnessAdapter`, a `gepa.GEPAAdapter` over the harness: `evaluate` scores the candidate's system prompt
  with the task's evaluator (so the budget counts every example, validation included) and returns the
  evaluator's per-example scores, its replies as outputs and its `Record`s as trajectories, unchanged;
  `make_reflective_dataset` turns those into GEPA's {Inputs, Generated Outputs, Feedback} records with the
  scorer's feedback;
- `ReflectionLM`, GEPA's reflection model on the harness prompt role (`LLMClient`: cache, cost, budget);
- seeded selectors: a Pareto candidate selector and an epoch-shuffled batch sampler whose randomness is a
  function of (seed, iteration) rather than of a process-level generator, so a run resumed from GEPA's own
  checkpoint (`run_dir`, saved at the start of every iteration) makes the requests an uninterrupted run makes.

Budget: `max_metric_calls` (GEPA's unit: examples scored), and the harness budget; `BudgetExceeded` in an
evaluation propagates out of GEPA; in a reflection call (which GEPA catches and retries) it raises a flag
that stops GEPA before its next iteration. Either way the run ends with the best candidate so far.
Best candidate = GEPA's: the highest mean score on the validation set (GEPA's `valset`: the first `val_size`,
16 by default, validation examples, since every accepted candidate is scored on all of them; the train split
when there are none), first found wins ties. Candidates reported:
every pool member (stage "pool", val_score = its validation mean, train_score = its minibatch score where it
was proposed) and every rejected proposal (stage "rejected", admitted False).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from baselines.common import Reporter, Settings, Spend, base_extra, head, parse_settings, truncate
from harness.aio import run_sync
from harness.benchmarks.base import Example
from harness.evaluator import Record
from harness.files import write_atomic
from harness.llm.client import LLMClient
from harness.llm.usage import BudgetExceeded
from harness.optimizer import Callbacks, Candidate, CandidateSink, OptimizationTask, OptimizeResult, RunContext
from harness.seeds import derive_seed, rng

COMPONENT = "system_prompt"


class GEPASettings(Settings):
    max_metric_calls: int = Field(500, ge=1, description="GEPA's budget: examples scored (validation included)")
    reflection_minibatch_size: int = Field(3, ge=1, description="examples reflected on per proposal (GEPA: 3)")
    candidate_selection: Literal["pareto", "current_best"] = Field("pareto", description="parent selection")
    val_size: int | None = Field(16, ge=1, description="validation examples GEPA tracks (the first n; None: all)")
    skip_perfect_score: bool = Field(True, description="skip reflection when the minibatch is all correct")
    use_merge: bool = Field(False, description="GEPA's merge proposer")
    temperature: float | None = Field(0.7, ge=0.0, le=2.0, description="reflection model temperature")
    agent_max_tokens: int | None = Field(1500, gt=0, description="reply cap of reflection calls")
    excerpt_chars: int = Field(1500, ge=100, description="truncation of questions/replies in the reflection")


class BudgetFlag:
    """Set when a harness budget cap was hit inside GEPA; GEPA's stop condition reads it."""

    def __init__(self) -> None:
        self.hit: BudgetExceeded | None = None

    def __call__(self, state: Any) -> bool:  # gepa's StopperProtocol
        return self.hit is not None


class ReflectionLM:
    """GEPA's reflection model on the harness prompt role; a call's seed depends on the iteration."""

    def __init__(self, llm: LLMClient, flag: BudgetFlag, *, temperature: float | None, max_tokens: int | None,
                 seed: int) -> None:
        self.llm, self.flag, self.temperature, self.max_tokens, self.seed = llm, flag, temperature, max_tokens, seed
        self.iteration = 0
        self.calls = 0
        self.replies: list[str] = []

    @property
    def total_cost(self) -> float:  # gepa reads these for its reflection-cost stopper
        return self.llm.ledger.role(self.llm.role).usd

    total_tokens_in = property(lambda self: self.llm.ledger.role(self.llm.role).prompt_tokens)
    total_tokens_out = property(lambda self: self.llm.ledger.role(self.llm.role).completion_tokens)

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        self.calls += 1
        try:
            res = run_sync(self.llm.chat(messages, temperature=self.temperature, max_tokens=self.max_tokens,
                                         seed=derive_seed(self.seed, "gepa-reflect", self.iteration)))
        except BudgetExceeded as exc:
            self.flag.hit = exc
            raise
        self.replies.append(res.text)
        return res.text


class HarnessAdapter:
    """A GEPAAdapter whose evaluation is the harness evaluator's (see the module docstring)."""

    propose_new_texts = None

    def __init__(self, task: OptimizationTask, flag: BudgetFlag | None = None, *, excerpt_chars: int = 1500,
                 label: str = "gepa") -> None:
        self.task, self.flag, self.excerpt_chars, self.label = task, flag or BudgetFlag(), excerpt_chars, label
        self.calls = 0

    def evaluate(self, batch: list[Example], candidate: dict[str, str], capture_traces: bool = False):
        from gepa import EvaluationBatch

        if self.flag.hit is not None:  # the budget is spent: no further work
            raise BudgetExceeded(str(self.flag.hit))
        self.calls += 1
        try:
            res = self.task.evaluator.evaluate(candidate[COMPONENT], list(batch), label=self.label)
        except BudgetExceeded as exc:
            self.flag.hit = exc
            raise
        return EvaluationBatch(outputs=[r.response for r in res.records], scores=[r.score for r in res.records],
                               trajectories=list(res.records) if capture_traces else None)

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: Any,
                                components_to_update: list[str]) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        questions = {e.id: e.question for e in [*self.task.train, *self.task.val]}
        items = []
        for rec in eval_batch.trajectories or []:
            assert isinstance(rec, Record)
            verdict = "Correct" if rec.correct else "Incorrect"
            items.append({"Inputs": truncate(questions.get(rec.example_id, rec.example_id), self.excerpt_chars),
                          "Generated Outputs": truncate(rec.response, self.excerpt_chars),
                          "Feedback": f"{verdict} (score {rec.score:.2f}). {rec.feedback}"})
        return {c: items for c in components_to_update}


def _selectors(seed: int, minibatch_size: int, kind: str):
    """GEPA strategy objects whose randomness depends on (seed, iteration) only."""
    from gepa.strategies.candidate_selector import CurrentBestCandidateSelector, ParetoCandidateSelector

    class SeededPareto(ParetoCandidateSelector):
        def select_candidate_idx(self, state: Any) -> int:
            self.rng = rng(seed, "gepa-select", state.i)
            return super().select_candidate_idx(state)

    class SeededBatches:
        """Epoch-shuffled minibatches (GEPA's scheme, padded with the least used ids) as a pure function of
        (seed, iteration), so a resumed run draws what an uninterrupted one draws."""

        def __init__(self) -> None:
            self.minibatch_size = minibatch_size

        def next_minibatch_ids(self, loader: Any, state: Any) -> list[Any]:
            ids = list(loader.all_ids())
            if not ids:
                raise ValueError("Cannot sample a minibatch from an empty loader.")
            n = self.minibatch_size
            padded = math.ceil(len(ids) / n) * n
            base = max(state.i, 0) * n  # GEPA's own scheme: iteration i takes chunk i of the padded order
            epoch, offset = divmod(base, padded)
            order = list(ids)
            rng(seed, "gepa-epoch", epoch).shuffle(order)
            order += order[: padded - len(order)]
            return order[offset: offset + n]

    selector = SeededPareto(rng=None) if kind == "pareto" else CurrentBestCandidateSelector()
    return selector, SeededBatches()


class _Tracker:
    """GEPA callbacks -> harness candidates (with lineage, scores, replies and cost)."""

    def __init__(self, reporter: Reporter, reflection: ReflectionLM, spend: Spend, log: Path | None,
                 restored: list[dict[str, Any]]) -> None:
        self.reporter, self.reflection, self.spend, self.log = reporter, reflection, spend, log
        self.saved: list[dict[str, Any]] = list(restored)
        self.known = {d["id"] for d in restored}
        for d in restored:
            reporter.add(Candidate(**d), restored=True)
        self.iteration = 0
        self.pending: dict[str, Any] = {}
        self.mark = spend.mark()

    def _emit(self, cand: Candidate) -> None:
        if cand.id in self.known:
            return
        self.known.add(cand.id)
        self.reporter.add(cand)
        self.saved.append(vars(cand))
        if self.log is not None:
            write_atomic(self.log, json.dumps(self.saved, default=str))

    def on_iteration_start(self, event: Mapping[str, Any]) -> None:
        self.iteration = event["iteration"]
        self.reflection.iteration = self.iteration
        self.pending = {}
        self.mark = self.spend.mark()

    def on_iteration_end(self, event: Mapping[str, Any]) -> None:
        self.reporter.generation_end(event["iteration"])

    def on_candidate_selected(self, event: Mapping[str, Any]) -> None:
        self.pending["parent"] = event["candidate_idx"]

    def on_minibatch_sampled(self, event: Mapping[str, Any]) -> None:
        self.pending["minibatch_ids"] = list(event["minibatch_ids"])

    def on_proposal_end(self, event: Mapping[str, Any]) -> None:
        self.pending["text"] = event["new_instructions"].get(COMPONENT)
        self.pending["reply"] = event["raw_lm_outputs"].get(COMPONENT)

    def on_evaluation_end(self, event: Mapping[str, Any]) -> None:
        if event["candidate_idx"] is None:  # the new candidate on the parent's minibatch
            self.pending["child_scores"] = list(event["scores"])
        else:
            self.pending["parent_scores"] = list(event["scores"])

    def _proposal(self, cid: str, admitted: bool, **more: Any) -> Candidate:
        p = self.pending
        scores = p.get("child_scores") or []
        parent = p.get("parent")
        return Candidate(cid, p.get("text") or "", f"gepa-{parent}" if parent is not None else None, self.iteration,
                         sum(scores) / len(scores) if scores else None, meta={
                             "stage": "pool" if admitted else "rejected", "admitted": admitted,
                             "example_ids": p.get("minibatch_ids", []), "agent_reply": p.get("reply"),
                             "parent_minibatch_scores": p.get("parent_scores"), "cost": self.spend.cost(self.mark),
                             **more})

    def on_candidate_rejected(self, event: Mapping[str, Any]) -> None:
        self._emit(self._proposal(f"gepa-it{self.iteration}-rejected", False, reason=event["reason"]))

    def on_valset_evaluated(self, event: Mapping[str, Any]) -> None:
        idx = event["candidate_idx"]
        ids = list(event["scores_by_val_id"])
        if idx == 0:
            cand = Candidate("gepa-0", event["candidate"][COMPONENT], None, 0, None, event["average_score"],
                             meta={"stage": "pool", "admitted": True, "val_example_ids": ids,
                                   "cost": self.spend.cost(self.mark)})
            self._emit(cand)
            self.reporter.generation_end(0)
            return
        cand = self._proposal(f"gepa-{idx}", True)
        cand.prompt = event["candidate"][COMPONENT]
        cand.parent_id = f"gepa-{event['parent_ids'][0]}" if event["parent_ids"] else cand.parent_id
        cand.val_score = event["average_score"]
        cand.meta["val_example_ids"] = ids
        self._emit(cand)


class GEPA:
    name = "gepa"
    Settings = GEPASettings

    @staticmethod
    def preload() -> None:
        """Import gepa before cells run in threads (harness.experiment.warm_imports)."""
        import gepa  # noqa: F401

    def __init__(self, settings: GEPASettings | dict[str, Any] | None = None, **overrides: Any) -> None:
        self.settings = parse_settings(GEPASettings, settings, overrides)
        self.reflection: ReflectionLM | None = None
        self.adapter: HarnessAdapter | None = None

    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                 callbacks: Callbacks | None = None, on_candidate: CandidateSink | None = None,
                 checkpoint_dir: Path | None = None, context: RunContext | None = None) -> OptimizeResult:
        import gepa

        s = self.settings
        spend = Spend(task.evaluator.llm, prompt_llm)
        flag = BudgetFlag()
        self.adapter = HarnessAdapter(task, flag, excerpt_chars=s.excerpt_chars)
        self.reflection = ReflectionLM(prompt_llm, flag, temperature=s.temperature, max_tokens=s.agent_max_tokens,
                                       seed=seed)
        tmp = None
        if checkpoint_dir is not None:
            run_dir = Path(checkpoint_dir) / "gepa"
            run_dir.mkdir(parents=True, exist_ok=True)
            key = {"seed": seed, "task": task.name, "initial": task.initial_prompt, "settings": s.model_dump()}
            fp = run_dir / "harness-run.json"
            if fp.is_file() and json.loads(fp.read_text()) != json.loads(json.dumps(key)):
                raise ValueError(f"The checkpoint {run_dir} belongs to a different run (seed, task, prompt or "
                                 "settings differ); delete it or use another checkpoint directory.")
            fp.write_text(json.dumps(key))
            log = run_dir / "harness-candidates.json"
        else:
            tmp = tempfile.TemporaryDirectory(prefix="gepa-")
            run_dir, log = Path(tmp.name), None
        restored = json.loads(log.read_text()) if log is not None and log.is_file() else []
        reporter = Reporter(on_candidate, callbacks)
        tracker = _Tracker(reporter, self.reflection, spend, log, restored)
        asked: list[str] = []

        def stop_asked(state: Any) -> bool:  # the caller's should_stop, checked where GEPA checks its budget
            reason = reporter.callbacks.stop_reason()
            if reason and not asked:
                asked.append(reason)
            return bool(reason)

        selector, sampler = _selectors(seed, s.reflection_minibatch_size, s.candidate_selection)
        valset = head(task.val, s.val_size) or list(task.train)
        stopped = None
        try:
            gepa.optimize(seed_candidate={COMPONENT: task.initial_prompt}, trainset=list(task.train), valset=valset,
                          adapter=self.adapter, reflection_lm=self.reflection, candidate_selection_strategy=selector,
                          batch_sampler=sampler, reflection_minibatch_size=None,
                          skip_perfect_score=s.skip_perfect_score, use_merge=s.use_merge,
                          max_metric_calls=s.max_metric_calls, stop_callbacks=[flag, stop_asked], logger=_QuietLogger(),
                          run_dir=str(run_dir), callbacks=[tracker], seed=seed, raise_on_exception=True,
                          display_progress_bar=False)
        except BudgetExceeded:
            stopped = "budget"
        finally:
            if tmp is not None:
                tmp.cleanup()
        if flag.hit is not None:
            stopped = "budget"
        elif asked:
            stopped = asked[0]
        pool = [c for c in reporter.candidates if c.meta.get("stage") == "pool" and c.val_score is not None]
        if pool:
            best = max(pool, key=lambda c: (c.val_score, -int(c.id.split("-")[1])))
        else:  # the budget ended the run before the seed was scored
            best = reporter.add(Candidate("gepa-0", task.initial_prompt, None, 0, meta={
                "stage": "pool", "admitted": True, "skipped": "the budget ended the run before it was scored"}))
        extra = base_extra(spend, stopped, reflection_calls=self.reflection.calls, adapter_calls=self.adapter.calls)
        return OptimizeResult(best, reporter.candidates, extra)


class _QuietLogger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)
