"""MetaSPO (Choi, Baek, Hwang, NeurIPS 2025; procedure of the Dozi01/MetaSPO repository): a bilevel search for
a system prompt that generalizes across tasks.

State: one shared system prompt and, per meta-training task, a beam of user prompts (templates with a
`{question}` slot; the initial one is `{question}`, i.e. the benchmark's question as it is). A node is
(system prompt, user prompt) on one task, scored on that task's fixed train sample (`train_size` examples).
Each of `iterations` (3) rounds runs:

- inner loop (user prompts): for every task, `user_candidates` (3) times, the best node's wrong examples
  (a sample of `wrong_examples`, 3) are analysed by the optimizer model (one call, <Analysis>) and the user
  prompt rewritten (a second call, <improved_instruction_prompt>); each new node is scored; the beam keeps the
  top `user_top_k` (3) per task;
- outer loop (system prompt): `system_candidates` (9) proposals, each from wrong examples pooled across tasks
  (`pooled_wrong_per_task`, 2, from each task's best node, shuffled): analysis, then a rewrite
  (<improved_system_prompt>); a proposal is scored with every task's current user prompts and accepted when
  its mean score over all task x user-prompt nodes beats the current system prompt's mean (proposals are
  judged in turn against the best so far, as in the repository).

Optimizer model at temperature 1.0 (the repository's default); the task model keeps its endpoint's settings.
Prompts to the optimizer are written for this project after the repository's templates.

Meta-test: the target task is unseen in meta-training (it is left out of the default pool, like the
experiment's held-out benchmarks). The result for the target is the meta-learned system prompt, used as is with
the target's questions (the repository's "unseen generalization" meta-test; its test-time-adaptation variant
tunes user prompts, which a system-prompt harness does not use at test time). The pool is
`meta_train_pool`, or every registered benchmark but the target, `custom` and the held-out ones, opened by the
runner (`benchmarks_needed`) through `context.open_task`. Without a RunContext (context=None), MetaSPO
meta-trains on the target's own train split as its only task (then the target is not unseen: say so when
reporting such runs).

Candidates: inner nodes are reported with stage "inner" (prompt = the user prompt, meta system_prompt/task),
system prompts with stage "outer" (train_score = the mean over nodes, meta admitted = accepted).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean
from typing import Any

from pydantic import Field

from baselines.common import (
    Journal,
    Reporter,
    Settings,
    Spend,
    base_extra,
    chat,
    derive_seed,
    evaluate,
    extract_tag,
    minibatch,
    parse_settings,
    rng,
)
from harness.files import locked, write_atomic
from harness.llm.client import LLMClient
from harness.llm.usage import BudgetExceeded
from harness.optimizer import (
    Callbacks,
    Candidate,
    CandidateSink,
    OptimizationTask,
    OptimizeResult,
    RunContext,
    StopRequested,
    callbacks_of,
    check_stop,
)
from harness.schema import STAGE_META_TRAIN
from harness.stages import SharedStage, StageEnv, StageMissing

DEFAULT_SYSTEM = "You are a helpful assistant."  # the repository's default initial system prompt
QUESTION = "{question}"

USER_ANALYST = ("You improve the user prompt that a language model receives for one task. Find the shortcomings "
                "of the current user prompt that explain the wrong responses below.")
USER_ANALYSIS = """The model answers with this system prompt and user prompt.

## System prompt
{system}

## User prompt ({{question}} marks where each question goes)
{user}

## Responses this prompt gets wrong
{examples}

Discuss only the user prompt: what about it led to these wrong responses, and how should it change?
Wrap your analysis in <Analysis></Analysis> tags."""
USER_WRITER = ("You improve the user prompt that a language model receives for one task. Write a better user "
               "prompt that fixes the problems found in the analysis.")
USER_REWRITE = """## System prompt
{system}

## Current user prompt
{user}

## Wrong responses
{examples}

## Analysis of the current user prompt
{analysis}

Write an improved user prompt that addresses the problems above. It must contain {{question}} exactly once,
where the actual question will be placed. Wrap it in <improved_instruction_prompt></improved_instruction_prompt>
tags."""
SYSTEM_ANALYST = ("You improve a language model's system prompt for many different tasks. Analyse why the current "
                  "system prompt leads to the wrong responses below.")
SYSTEM_ANALYSIS = """## Current system prompt
{system}

## Wrong responses (from several tasks)
{examples}

Discuss only the system prompt: what about it led to these errors, and how should it change so that it helps
across tasks? Wrap your analysis in <Analysis></Analysis> tags."""
SYSTEM_WRITER = ("You improve a language model's system prompt. Write a better system prompt that generalizes "
                 "across various tasks.")
SYSTEM_REWRITE = """## Current system prompt
{system}

## Analysis of the current system prompt
{analysis}

Based on this, write an improved system prompt. Wrap it in <improved_system_prompt></improved_system_prompt>
tags."""
EXAMPLE = """<Example>
System prompt:
{system}

User prompt:
{user}

Response:
{response}

Grader: {feedback}

Reference answer:
{answer}
</Example>"""


RESULT = "result.json"  # a finished meta-training in its shared-stage folder


class MetaSPOSettings(Settings):
    meta_train_pool: list[str] = Field(default_factory=list, description="benchmarks to meta-train on (empty: "
                                       "every registered one but custom); the target and the experiment's held-out "
                                       "benchmarks are always left out, so the target is unseen")
    iterations: int = Field(3, ge=0, description="bilevel rounds (repository default 3)")
    system_candidates: int = Field(9, ge=0, description="outer-loop system prompt proposals per round")
    user_candidates: int = Field(3, ge=0, description="inner-loop user prompt proposals per task per round")
    user_top_k: int = Field(3, ge=1, description="user prompts kept per task")
    train_size: int = Field(16, ge=1, description="examples per task a node is scored on (repository: 50; 16 "
                            "matches the minibatch of the other methods)")
    wrong_examples: int = Field(3, ge=1, description="wrong examples shown in a user-prompt update")
    pooled_wrong_per_task: int = Field(2, ge=1, description="wrong examples per task in a system-prompt update")
    temperature: float | None = Field(1.0, ge=0.0, le=2.0, description="optimizer model temperature")
    agent_max_tokens: int | None = Field(1500, gt=0, description="reply cap of optimizer calls")
    initial_system_prompt: str | None = Field(None, description="None: the task's initial prompt, or "
                                              f"{DEFAULT_SYSTEM!r} when that is empty")
    excerpt_chars: int = Field(600, ge=50, description="truncation of questions/responses shown")
    meta_seed: int | None = Field(0, description="seed of the meta-training pool's splits and samples (a shared "
                                  "stage: one meta-training per target and meta_seed); None = the cell's seed")


@dataclass
class Node:
    id: str
    task: int
    system: str
    user: str
    parent_id: str | None
    score: float = 0.0
    wrong: list[dict[str, Any]] = field(default_factory=list)
    origin: str = ""  # the reported candidate that wrote this user prompt (a node re-scored under a new system
    # prompt keeps its origin)

    def __post_init__(self) -> None:
        self.origin = self.origin or self.id


class MetaSPO:
    name = "metaspo"
    Settings = MetaSPOSettings

    def __init__(self, settings: MetaSPOSettings | dict[str, Any] | None = None, *,
                 pool_tasks: list[OptimizationTask] | None = None, **overrides: Any) -> None:
        self.settings = parse_settings(MetaSPOSettings, settings, overrides)
        self.pool_tasks = pool_tasks  # ready-made meta-training tasks (tests); else opened by name

    def benchmarks_needed(self, target: str, held_out: Sequence[str] = ()) -> list[str]:
        skip = {target, *held_out}
        if self.settings.meta_train_pool:
            return [n for n in self.settings.meta_train_pool if n not in skip]
        from harness.benchmarks import registry  # lazy: imports every benchmark module

        return sorted(n for n in registry() if n not in skip | {"custom"})

    def _pool(self, task: OptimizationTask, seed: int, context: RunContext | None) -> tuple[list, str]:
        if self.pool_tasks is not None:
            return list(self.pool_tasks), "given"
        if context is None or context.open_task is None:
            return [task], "target-train (no RunContext)"
        names = self.benchmarks_needed(task.benchmark.name, context.held_out)
        if not names:
            return [task], "target-train (empty pool)"
        pool = [context.open_task(n, seed) for n in names]
        return pool, "meta-train pool"

    # ---- meta-training as a shared stage (harness/stages.py) ----------------------------------------
    def _stage_plan(self, task: OptimizationTask, prompt_llm: LLMClient, seed: int,
                    context: RunContext) -> dict[str, Any] | None:
        """The meta-training this cell shares with the cells of the same key (target's pool, meta seed,
        settings, models), or None when it cannot be shared (no runner context or shared folder)."""
        if self.pool_tasks is not None or context.open_task is None or context.shared_dir is None:
            return None
        names = self.benchmarks_needed(task.benchmark.name, context.held_out)
        if not names:
            return None
        mseed = seed if self.settings.meta_seed is None else self.settings.meta_seed
        pool = [context.open_task(n, mseed) for n in names]
        key = {"pool": [{"name": t.name, "train": [e.id for e in t.train]} for t in pool], "seed": mseed,
               "settings": self.settings.model_dump(exclude={"meta_seed"}), "system0": self._system0(task),
               "prompt_model": [prompt_llm.model, prompt_llm.endpoint.temperature],
               "task_model": [t.evaluator.llm.model for t in pool][:1]}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
        return {"key": digest, "names": names, "seed": mseed, "dir": Path(context.shared_dir) / "metaspo" /
                digest[:16], "system0": self._system0(task)}

    def shared_stage(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                     context: RunContext) -> SharedStage | None:
        plan = self._stage_plan(task, prompt_llm, seed, context)
        if plan is None:
            return None
        d: Path = plan["dir"]

        def build(env: StageEnv) -> dict[str, Any]:
            with locked(d):
                if (d / RESULT).is_file():
                    return json.loads((d / RESULT).read_text(encoding="utf-8"))
                pool = [env.open_task(n, plan["seed"]) for n in plan["names"]]
                res = self._meta_train(pool, "meta-train pool", plan["system0"], env.prompt_llm, plan["seed"],
                                       Callbacks(on_candidate=env.on_candidate), d / "metaspo.jsonl", context)
                out = {"text": res.best.prompt, "stopped": res.extra.get("stopped"), "key": plan["key"],
                       "best": vars(res.best), "candidates": [vars(c) for c in res.candidates],
                       "extra": res.extra}
                write_atomic(d / RESULT, json.dumps(out, default=str))
                return out

        return SharedStage(key=plan["key"], kind=STAGE_META_TRAIN, build=build, done=(d / RESULT).is_file,
                           describe=f"MetaSPO meta-training on {', '.join(plan['names'])} (seed {plan['seed']})",
                           pool=plan["names"])

    def _system0(self, task: OptimizationTask) -> str:
        s = self.settings
        return s.initial_system_prompt if s.initial_system_prompt is not None else (task.initial_prompt or
                                                                                      DEFAULT_SYSTEM)

    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                 callbacks: Callbacks | None = None, on_candidate: CandidateSink | None = None,
                 checkpoint_dir: Path | None = None, context: RunContext | None = None) -> OptimizeResult:
        """The meta-learned system prompt for `task`: the shared stage's when the runner built it (the
        cell then spends nothing), else meta-trained here on the cell's budget."""
        cb = callbacks_of(callbacks, on_candidate)
        plan = self._stage_plan(task, prompt_llm, seed, context) if context is not None else None
        if plan is not None and (plan["dir"] / RESULT).is_file():
            done = json.loads((plan["dir"] / RESULT).read_text(encoding="utf-8"))
            cands = [Candidate(**c) for c in done["candidates"]]
            for c in cands:
                cb.candidate(c)
            best = next(c for c in cands if c.id == done["best"]["id"])
            return OptimizeResult(best, cands, {**done["extra"], "stopped": None, "stage_stopped": done["stopped"],
                                                "stage_key": done["key"], "spent": {}})
        if plan is not None and context.shared_stages_built:
            raise StageMissing(f"MetaSPO's meta-training {plan['key'][:12]} was not built by its shared stage (it "
                               "failed or was interrupted); rerun to retry the stage.")
        pool, pool_kind = self._pool(task, seed, context)
        return self._meta_train(pool, pool_kind, self._system0(task), prompt_llm, seed, cb,
                                Path(checkpoint_dir) / "metaspo.jsonl" if checkpoint_dir else None, context,
                                target=task.name)

    def _meta_train(self, pool: list[OptimizationTask], pool_kind: str, system0: str, prompt_llm: LLMClient,
                    seed: int, cb: Callbacks, journal_path: Path | None,
                    context: RunContext | None, target: str = "") -> OptimizeResult:
        s = self.settings
        samples = [minibatch(t.train, s.train_size, seed, "metaspo", t.name) for t in pool]
        if context is not None and context.check_disjoint_from_test is not None:
            for t, smp in zip(pool, samples, strict=True):
                context.check_disjoint_from_test(t.benchmark.name, [e.id for e in smp])
        spend = Spend(prompt_llm, *(t.evaluator.llm for t in pool))
        journal = Journal(journal_path, {"method": "metaspo", "seed": seed, "target": target,
                                         "pool": [t.name for t in pool], "system0": system0,
                                         "settings": s.model_dump()})
        reporter = Reporter(cb.on_candidate)

        def ask(key: str, system: str, user: str) -> str:
            return journal.step(key, lambda: chat(prompt_llm, user, system=system, temperature=s.temperature,
                                                  max_tokens=s.agent_max_tokens, seed=derive_seed(seed, key)))

        def score(node: Node) -> Node:
            t = pool[node.task]
            examples = [replace(e, question=node.user.replace(QUESTION, e.question)) for e in samples[node.task]]
            by_id = {e.id: e for e in samples[node.task]}
            res = journal.step(f"eval:{node.id}", lambda: evaluate(t, node.system, examples,
                                                                    f"metaspo {t.name}", s.excerpt_chars))
            node.score = res["score"]
            node.wrong = [{**r, "question": by_id[r["id"]].question[: s.excerpt_chars],
                           "answer": str(by_id[r["id"]].answer)[: s.excerpt_chars]}
                          for r in res["records"] if not r["correct"]]
            return node

        def examples_text(node: Node, k: int, key: str) -> str:
            wrong = node.wrong if len(node.wrong) <= k else rng(seed, key).sample(node.wrong, k)
            return "\n".join(EXAMPLE.format(system=node.system, user=node.user.replace(QUESTION, w["question"]),
                                            response=w["response"], feedback=w["feedback"], answer=w["answer"])
                             for w in wrong) or "(none: every sampled response was correct)"

        def report(c: Candidate, key: str) -> None:
            reporter.add(c, restored=key in journal.restored)

        def node_candidate(n: Node, gen: int, admitted: bool, mark: dict) -> Candidate:
            return Candidate(n.id, n.user, n.parent_id, gen, n.score, meta={
                "stage": "inner", "admitted": admitted, "task": pool[n.task].name, "system_prompt": n.system,
                "example_ids": [e.id for e in samples[n.task]], "cost": spend.cost(mark)})

        stopped = None
        current = Candidate("sys-0", system0, None, 0, meta={"stage": "outer", "admitted": True})
        beams: list[list[Node]] = []
        mark = spend.mark()
        try:
            beams = [[score(Node(f"t{i}-u0", i, system0, QUESTION, None))] for i in range(len(pool))]
            current.train_score = fmean(n.score for b in beams for n in b)
            current.meta.update(cost=spend.cost(mark), node_scores={n.id: n.score for b in beams for n in b})
            for b in beams:
                report(node_candidate(b[0], 0, True, mark), f"eval:{b[0].id}")
            report(current, "eval:t0-u0")
            for it in range(1, s.iterations + 1):
                check_stop(cb)
                # inner loop: user prompts per task, from the best node's wrong examples
                for ti, beam in enumerate(beams):
                    best = beam[0]
                    new_nodes = []
                    for c in range(s.user_candidates):
                        mark = spend.mark()
                        key = f"it{it}-t{ti}-u{c}"
                        ex = examples_text(best, s.wrong_examples, key)
                        analysis = ask(f"{key}:analysis", USER_ANALYST, USER_ANALYSIS.format(
                            system=best.system, user=best.user, examples=ex))
                        reply = ask(f"{key}:rewrite", USER_WRITER, USER_REWRITE.format(
                            system=best.system, user=best.user, examples=ex,
                            analysis=extract_tag(analysis, "Analysis") or analysis))
                        user = extract_tag(reply, "improved_instruction_prompt") or best.user
                        if QUESTION not in user:
                            user = user.rstrip() + "\n\n" + QUESTION
                        node = score(Node(key, ti, best.system, user, best.origin))
                        new_nodes.append((node, node_candidate(node, it, False, mark), reply))
                    beam.extend(n for n, _, _ in new_nodes)
                    beam.sort(key=lambda n: n.score, reverse=True)  # stable: earlier nodes win ties
                    del beam[s.user_top_k:]
                    kept = {n.id for n in beam}
                    for n, cand, reply in new_nodes:
                        cand.meta.update(admitted=n.id in kept, agent_reply=reply)
                        report(cand, f"eval:{n.id}")
                # outer loop: system prompts from wrong examples pooled across tasks, accepted on the mean
                parent_beams = [list(b) for b in beams]
                parent = current
                best_mean = fmean(n.score for b in beams for n in b)  # the current system with today's beams
                for c in range(s.system_candidates):
                    check_stop(cb)
                    mark = spend.mark()
                    key = f"it{it}-s{c}"
                    blocks = [examples_text(b[0], s.pooled_wrong_per_task, f"{key}-t{ti}")
                              for ti, b in enumerate(parent_beams)]
                    rng(seed, key, "shuffle").shuffle(blocks)
                    analysis = ask(f"{key}:analysis", SYSTEM_ANALYST, SYSTEM_ANALYSIS.format(
                        system=parent.prompt, examples="\n".join(blocks)))
                    reply = ask(f"{key}:rewrite", SYSTEM_WRITER, SYSTEM_REWRITE.format(
                        system=parent.prompt, analysis=extract_tag(analysis, "Analysis") or analysis))
                    system = extract_tag(reply, "improved_system_prompt") or parent.prompt
                    new_beams = [[score(Node(f"{key}-t{ti}-{n.id}", ti, system, n.user, n.id, origin=n.origin))
                                  for n in b] for ti, b in enumerate(parent_beams)]
                    meta_score = fmean(n.score for b in new_beams for n in b)
                    accepted = meta_score > best_mean
                    cand = Candidate(key, system, parent.id, it, meta_score, meta={
                        "stage": "outer", "admitted": accepted, "agent_reply": reply, "compared_with": current.id,
                        "compared_score": best_mean,
                        "node_scores": {n.id: n.score for b in new_beams for n in b}, "cost": spend.cost(mark)})
                    report(cand, f"{key}:rewrite")
                    if accepted:
                        current, best_mean = cand, meta_score
                        beams = [sorted(b, key=lambda n: n.score, reverse=True) for b in new_beams]
                cb.generation_end(it)
        except BudgetExceeded:
            stopped = "budget"
        except StopRequested as exc:
            stopped = exc.reason
        if current.id not in reporter.by_id:
            reporter.add(current)
        extra = base_extra(spend, stopped, meta_train_tasks=[t.name for t in pool], pool_kind=pool_kind,
                           pretrain_pool=[t.benchmark.name for t in pool],  # the runner's target_in_pool check
                           user_prompts={pool[ti].name: [n.user for n in b] for ti, b in enumerate(beams)})
        return OptimizeResult(current, reporter.candidates, extra)
