"""E-SPL evolution (Zhang, Chen, Stadie, arXiv 2602.14697; procedure of the LunjunZhang/E-SPL repository), the
prompt half ("evolution only") of evolutionary system prompt learning.

A program is a set of principles (id -> text) rendered after the task's initial prompt. Each step:

1. Selection: M = `programs_per_step` (3) programs from the most recent K = `recent_window` (5) of the pool,
   sampled without replacement by a softmax over the optimistic TrueSkill score mu + lambda * sigma
   (`explore_lambda` 2, the repository's "explore" rating), temperature = max(max score, 1); the most recent
   program is always among them (the repository's include_last).
2. Rollouts: each selected program answers the step's batch (`batch_size` problems; epoch-shuffled, seeded).
   The harness evaluator makes one reply per problem (N = 1 rollout; the task model is greedy by default).
3. Ranking: programs sorted by batch accuracy (pass@1); scores within `tie_tolerance` (0.01) of the previous
   one tie; TrueSkill (`trueskill` package; mu0 25, sigma0 25/3, beta 25/6, tau 25/300, draw probability
   0.10, the paper's parameters) updates their ratings from that ranking.
4. Crossover (probability `crossover_prob`): a per-problem win matrix records which program alone scored best
   on each problem; the best program (set A) and every other program that won a problem are shown with the
   problems each won, and the proposer returns add/modify/remove edits to set A. The child's rating is the
   precision-weighted mean of its parents' with sigma^2 = 1/sum(precision) + `crossover_sigma`^2.
5. Mutation: the best program's failed problems (up to `critique_problems`) are critiqued one by one (its
   trajectory, the grader's verdict, the reference, and a successful attempt by another selected program on
   that problem when one exists): each critique returns at most `max_update_operations` add/modify edits; a
   batch update then consolidates the candidate set (modify/merge) into the child's principles, a reflective
   diff of edits on the best prompt. The child inherits mu with sigma^2 + `mutation_sigma`^2.
6. Children join the pool; the pool is capped at `max_pool_size` (FIFO, oldest out).

With one rollout per problem the repository's "mixed outcome" filter (problems with some right and some wrong
rollouts) would leave nothing to learn from, so the failed problems of the best program are critiqued.
The returned prompt (`final_choice`): "rating" = highest conservative rating mu - lambda*sigma among programs
rated at least once (default); "latest" = the newest program (the repository's test-time choice, made for a
model whose weights change alongside); "val" = the `val_top_n` highest-rated scored on validation, best wins.

The RL half (weight updates of the task model from the same rollouts, with advantages per program) needs GPU
training and is out of scope here. It plugs in at `ESPL(rl_update=...)`: a callable receiving the step number
and, per selected program, its prompt and graded rollouts, called after each step's rollouts are ranked;
whatever it trains would then serve the next step's rollouts through the task endpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from baselines.common import (
    Journal,
    Reporter,
    Settings,
    Spend,
    base_extra,
    chat,
    evaluate,
    head,
    parse_operations,
    parse_settings,
    truncate,
)
from harness.llm.client import LLMClient
from harness.llm.usage import BudgetExceeded
from harness.optimizer import Callbacks, Candidate, CandidateSink, OptimizationTask, OptimizeResult, RunContext
from harness.seeds import derive_seed, rng

RLHook = Callable[[int, list[dict[str, Any]]], None]
PRINCIPLES_HEADER = "When solving problems, first read and apply these principles:"

CRITIQUE = """An agent is given a set of principles (below) and tried to solve a problem. Review the attempt(s) and
extract generalizable principles.

1. Trajectory analysis: for successful steps, the key correct decisions; for errors, where and why the
   reasoning went wrong; were existing principles missed, or did they not give enough guidance?
2. Update the principles with at most {max_operations} operations, "modify" (improve an existing principle, by
   its ID) or "add" (a new principle). Each principle starts with a few words of general background, focuses on
   strategic thinking patterns rather than specific calculations, and names the decision points it helps with.

Reason step by step, then finish with the operations as JSON:
```json
[
  {{"operation": "modify", "principle": "the modified principle", "modified_from": "G3"}},
  {{"operation": "add", "principle": "the added principle"}}
]
```

<problem>
{problem}
</problem>

<attempts>
{attempts}
</attempts>

<reference>
{answer}
</reference>

<principles>
{principles}
</principles>"""

BATCH_UPDATE = """An agent is given a set of principles and has tried to solve problems with them. Individual
suggestions to improve the principles were made; review them and produce a final revision plan.

Each final principle must: be a clear, generalizable lesson of at most 32 words; begin with a few words of
general background; focus on strategic thinking patterns, not specific calculations; emphasize decision points;
not repeat ideas found in other principles.

<existing_principles>
{principles}
</existing_principles>

<suggested_updates>
{updates}
</suggested_updates>

Reason about each suggestion, then finish with the revision plan as JSON, using "modify" (improve a principle,
by its ID) and "merge" (combine similar principles, at least two IDs):
```json
[
  {{"operation": "modify", "principle": "the modified principle", "modified_from": "C1"}},
  {{"operation": "merge", "principle": "the merged principle", "merged_from": ["C1", "G3"]}}
]
```"""

CROSSOVER_START = """You are given several sets of principles that were evolved independently to guide an agent.
Principle Set A is the one to improve by learning from the strengths of the others.

"""
CROSSOVER_ANALYSIS = """Each principle set above alone did best on at least one question. Improve Principle Set A
from this evidence:

1. For each question, explain why the best-performing set succeeded (a relevant principle? a counterproductive one
   elsewhere? chance?), citing principle IDs (e.g. A.G3, B.G7) and question IDs (e.g. Q.0).
2. Decide what in Set A to preserve and what to change; leave principles that are merely irrelevant to these
   questions alone.
3. Propose evidence-grounded edits, inspired by the successful principles of other sets.

Finish with the operations as JSON ("add", "modify" by ID, "remove" by ID); an empty list is fine:
```json
[
  {"operation": "add", "evidence": "...", "principle": "the new principle"},
  {"operation": "modify", "modified_from": "A.G2", "evidence": "...", "principle": "the modified principle"},
  {"operation": "remove", "remove_id": "A.G5", "evidence": "..."}
]
```"""


class ESPLSettings(Settings):
    steps: int = Field(10, ge=0, description="evolution steps")
    batch_size: int = Field(16, ge=1, description="problems per step")
    programs_per_step: int = Field(3, ge=1, description="M: programs sampled per step")
    recent_window: int = Field(5, ge=1, description="K: sample from the most recent K programs")
    selection: Literal["softmax", "uniform"] = Field("softmax", description="softmax over mu + lambda*sigma")
    explore_lambda: float = Field(2.0, ge=0.0, description="lambda of the optimistic score mu + lambda*sigma")
    include_last: bool = Field(True, description="always sample the most recent program")
    mu0: float = 25.0
    sigma0: float = 25.0 / 3
    beta: float = 25.0 / 6
    tau: float = 25.0 / 300
    draw_probability: float = Field(0.10, ge=0.0, lt=1.0)
    tie_tolerance: float = Field(0.01, ge=0.0, description="scores this close tie in the ranking")
    mutation_sigma: float = Field(1.0, ge=0.0, description="sigma added (in quadrature) to a mutated child")
    crossover_sigma: float = Field(1.0, ge=0.0, description="sigma added (in quadrature) to a crossover child")
    crossover_prob: float = Field(0.2, ge=0.0, le=1.0, description="chance of a crossover attempt per step")
    max_pool_size: int = Field(100, ge=2, description="pool cap (FIFO)")
    max_update_operations: int = Field(2, ge=1, description="edits one critique may propose")
    critique_problems: int = Field(4, ge=1, description="failed problems critiqued per mutation")
    temperature: float | None = Field(0.7, ge=0.0, le=2.0, description="proposer sampling temperature")
    agent_max_tokens: int | None = Field(1500, gt=0, description="reply cap of proposer calls")
    final_choice: Literal["rating", "latest", "val"] = Field("rating", description="see the module docstring")
    val_top_n: int = Field(3, ge=1, description="programs scored on validation with final_choice='val'")
    val_size: int | None = Field(None, ge=1, description="validation examples for final_choice='val'")
    excerpt_chars: int = Field(800, ge=50, description="truncation of problems and trajectories shown")


@dataclass(eq=False)
class Program:
    id: str
    principles: dict[str, str]
    mu: float
    sigma: float
    parent_ids: list[str]
    kind: str  # root | mutation | crossover
    step: int
    scores: list[float] = field(default_factory=list)
    candidate: Candidate | None = None
    created_cost: dict[str, float] = field(default_factory=dict)  # producing it (proposer calls)
    reply: str | None = None  # the proposer reply that produced it (batch update or crossover)

    @property
    def rated(self) -> bool:
        return bool(self.scores)


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}


def _pid(raw: Any) -> str:
    """A principle id as the model wrote it ("A.G3", "[G3]", "G3.") -> "G3"."""
    return str(raw).strip().strip("[]().: ").split(".")[-1].strip("[]() ")


def render(base: str, principles: dict[str, str]) -> str:
    """The system prompt of a program: the initial prompt, then its principles."""
    if not principles:
        return base
    lines = "\n".join(f"[{k}]. {v}" for k, v in principles.items())
    return (base.rstrip() + "\n\n" if base.strip() else "") + f"{PRINCIPLES_HEADER}\n{lines}"


def renumber(principles: dict[str, str]) -> dict[str, str]:
    return {f"G{i}": p for i, p in enumerate(v for v in principles.values() if str(v).strip())}


def ranks_with_ties(sorted_scores: list[float], tolerance: float) -> list[int]:
    """Ranks for scores sorted best first: a score within `tolerance` of the previous one shares its rank."""
    ranks: list[int] = []
    for i, sc in enumerate(sorted_scores):
        ranks.append(ranks[-1] if i and sorted_scores[i - 1] - sc < tolerance else i)
    return ranks


def softmax_sample(scores: list[float], k: int, r) -> list[int]:
    """k indices without replacement, each draw by softmax(score / T) over the rest, T = max(max score, 1)."""
    temp = max(max(scores), 1.0)
    top = max(scores)
    weights = [math.exp((sc - top) / temp) for sc in scores]
    left, out = list(range(len(scores))), []
    for _ in range(min(k, len(scores))):
        total = sum(weights[i] for i in left)
        x, acc = r.random() * total, 0.0
        pick = left[-1]
        for i in left:
            acc += weights[i]
            if x < acc:
                pick = i
                break
        out.append(pick)
        left.remove(pick)
    return out


class ESPL:
    name = "espl"
    Settings = ESPLSettings

    @staticmethod
    def preload() -> None:
        """Import trueskill before cells run in threads (harness.experiment.warm_imports)."""
        import trueskill  # noqa: F401

    def __init__(self, settings: ESPLSettings | dict[str, Any] | None = None, *, rl_update: RLHook | None = None,
                 **overrides: Any) -> None:
        self.settings = parse_settings(ESPLSettings, settings, overrides)
        self.rl_update = rl_update
        self.programs: list[Program] = []  # every program of the last run (the pool is the recent tail)

    # ---- TrueSkill ---------------------------------------------------------------------------------
    def env(self):
        import trueskill

        s = self.settings
        return trueskill.TrueSkill(mu=s.mu0, sigma=s.sigma0, beta=s.beta, tau=s.tau,
                                   draw_probability=s.draw_probability)

    def explore(self, p: Program) -> float:
        return p.mu + self.settings.explore_lambda * p.sigma

    def rate(self, ranked: list[Program], ranks: list[int]) -> None:
        """Update ratings from a ranking (best first; equal ranks tie)."""
        if len(ranked) < 2:
            return
        env = self.env()
        new = env.rate([(env.create_rating(p.mu, p.sigma),) for p in ranked], ranks=ranks)
        for p, (r,) in zip(ranked, new, strict=True):
            p.mu, p.sigma = r.mu, r.sigma

    def select(self, pool: list[Program], r) -> list[Program]:
        s = self.settings
        window = pool[-s.recent_window:]
        k = s.programs_per_step
        if s.selection == "softmax":
            idx = softmax_sample([self.explore(p) for p in window], k, r)
        else:
            idx = r.sample(range(len(window)), min(k, len(window)))
        chosen = [window[i] for i in idx]
        last = window[-1]
        if s.include_last and k > 1 and last not in chosen:
            chosen[-1] = last
        while len(chosen) < k:  # a pool smaller than M: pad with the newest (as the repository does)
            chosen.append(last)
        return chosen

    # ---- the loop ----------------------------------------------------------------------------------
    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                 callbacks: Callbacks | None = None, on_candidate: CandidateSink | None = None,
                 checkpoint_dir: Path | None = None, context: RunContext | None = None) -> OptimizeResult:
        s = self.settings
        base = task.initial_prompt
        spend = Spend(task.evaluator.llm, prompt_llm)
        journal = Journal(Path(checkpoint_dir) / "espl.jsonl" if checkpoint_dir else None,
                          {"method": "espl", "seed": seed, "task": task.name, "initial": base,
                           "settings": s.model_dump()})
        reporter = Reporter(on_candidate, callbacks)
        root = Program("p0", {}, s.mu0, s.sigma0, [], "root", -1)
        self.programs = [root]
        pool = [root]
        by_id = {root.id: root}
        history: list[dict[str, Any]] = []

        def ask(key: str, prompt: str) -> str:
            return journal.step(key, lambda: chat(prompt_llm, prompt, temperature=s.temperature,
                                                  max_tokens=s.agent_max_tokens, seed=derive_seed(seed, key)))

        def add(p: Program) -> None:
            self.programs.append(p)
            by_id[p.id] = p
            pool.append(p)
            if len(pool) > s.max_pool_size:
                pool.pop(0)

        n_train = len(task.train)
        per_epoch = max(1, math.ceil(n_train / s.batch_size))
        with reporter.until_stop():
            for step in range(s.steps):
                reporter.check_stop()
                epoch, b = divmod(step, per_epoch)
                order = list(task.train)
                rng(seed, "espl-epoch", epoch).shuffle(order)
                batch = order[b * s.batch_size:(b + 1) * s.batch_size] or order[: s.batch_size]
                chosen = self.select(pool, rng(seed, "espl-select", step))
                unique: list[Program] = list(dict.fromkeys(chosen))
                results: dict[str, dict[str, Any]] = {}
                for p in unique:
                    mark = spend.mark()
                    key = f"eval:{step}:{p.id}"
                    results[p.id] = journal.step(key, lambda p=p, step=step, batch=batch: evaluate(
                        task, render(base, p.principles), batch, f"espl step {step}", s.excerpt_chars))
                    p.scores.append(results[p.id]["score"])
                    if p.candidate is None:
                        p.candidate = Candidate(p.id, render(base, p.principles), p.parent_ids[0] if p.parent_ids
                                                else None, max(p.step + 1, 0), results[p.id]["score"], meta={
                                                    "stage": "search", "admitted": True, "kind": p.kind,
                                                    "parents": list(p.parent_ids), "first_scored_step": step,
                                                    "agent_reply": p.reply,
                                                    "example_ids": results[p.id]["example_ids"],
                                                    "cost": _add(spend.cost(mark), p.created_cost)})
                        reporter.add(p.candidate, restored=key in journal.restored)
                ranked = sorted(unique, key=lambda p: results[p.id]["score"], reverse=True)  # stable
                ranks = ranks_with_ties([results[p.id]["score"] for p in ranked], s.tie_tolerance)
                before = {p.id: (p.mu, p.sigma) for p in ranked}
                self.rate(ranked, ranks)
                history.append({"step": step, "selected": [p.id for p in chosen],
                                "scores": {p.id: results[p.id]["score"] for p in ranked}, "ranks": ranks,
                                "before": before, "after": {p.id: (p.mu, p.sigma) for p in ranked}})
                if self.rl_update is not None:  # the RL half would train the task model here
                    self.rl_update(step, [{"program": p.id, "prompt": render(base, p.principles),
                                           "rollouts": results[p.id]["records"]} for p in unique])
                best = ranked[0]
                mark = spend.mark()
                # crossover (drawn first, created first, as in the repository)
                if len(ranked) >= 2 and rng(seed, "espl-crossover", step).random() < s.crossover_prob:
                    child = self._crossover(step, ranked, results, batch, ask)
                    if child is not None:
                        child.created_cost = spend.cost(mark)
                        add(child)
                    mark = spend.mark()
                child = self._mutate(step, best, unique, results, batch, ask)
                if child is not None:
                    child.created_cost = spend.cost(mark)
                    add(child)
                reporter.generation_end(step)
        best = self._final(task, base, journal, reporter)
        for p in self.programs:
            if p.candidate is None:  # created but never sampled before the run ended
                p.candidate = Candidate(p.id, render(base, p.principles), p.parent_ids[0] if p.parent_ids else None,
                                        p.step + 1, None, meta={"stage": "search", "admitted": True, "kind": p.kind,
                                                                "parents": list(p.parent_ids),
                                                                "skipped": "never sampled before the run ended",
                                                                "cost": p.created_cost})
                reporter.add(p.candidate)
            p.candidate.meta.update(mu=p.mu, sigma=p.sigma, scores=list(p.scores), in_pool=p in pool)
        extra = base_extra(spend, reporter.stopped, history=history, final_choice=s.final_choice)
        return OptimizeResult(best.candidate, reporter.candidates, extra)

    def _final(self, task: OptimizationTask, base: str, journal: Journal, reporter: Reporter) -> Program:
        s = self.settings
        rated = [p for p in self.programs if p.rated] or self.programs[:1]
        if s.final_choice == "latest":
            pick = [p for p in rated if p is self.programs[-1]] or rated[-1:]
            return pick[0]
        conservative = sorted(rated, key=lambda p: p.mu - s.explore_lambda * p.sigma, reverse=True)
        if s.final_choice == "rating" or not task.val:
            return conservative[0]
        scores: dict[str, float] = {}
        val = head(task.val, s.val_size)
        for p in conservative[: s.val_top_n]:
            try:
                res = journal.step(f"val:{p.id}", lambda p=p: evaluate(task, render(base, p.principles), val,
                                                                         "espl val"))
            except BudgetExceeded:
                break
            scores[p.id] = res["score"]
            if p.candidate is not None:
                p.candidate.val_score = res["score"]
                p.candidate.meta["val_example_ids"] = res["example_ids"]
        if not scores:
            return conservative[0]
        return max(conservative[: len(scores)], key=lambda p: scores[p.id])  # ties: the better rated

    def _crossover(self, step: int, ranked: list[Program], results: dict, batch: list, ask) -> Program | None:
        s = self.settings
        per_problem = {p.id: {r["id"]: r["score"] for r in results[p.id]["records"]} for p in ranked}
        wins: dict[str, list[tuple[int, str]]] = {p.id: [] for p in ranked}
        for qi, ex in enumerate(batch):
            sc = {pid: per_problem[pid][ex.id] for pid in per_problem}
            top = max(sc.values())
            winners = [pid for pid, v in sc.items() if abs(v - top) < s.tie_tolerance]
            if len(winners) == 1:
                wins[winners[0]].append((qi, ex.question))
        best = ranked[0]
        sets = [best] + [p for p in ranked[1:] if wins[p.id]]
        if len(sets) < 2 or not wins[best.id]:
            return None
        prompt = CROSSOVER_START
        for i, p in enumerate(sets):
            label = chr(ord("A") + i)
            lines = "\n".join(f"[{label}.{k}]: {v}" for k, v in p.principles.items()) or "(no principles yet)"
            prompt += f"Principle Set {label}:\n<principles>\n{lines}\n</principles>\n\n"
        prompt += "Below are the questions each principle set did best on.\n"
        for i, p in enumerate(sets):
            qs = "\n".join(f"Q.{qi}: {truncate(q, s.excerpt_chars)}" for qi, q in wins[p.id])
            label = chr(ord("A") + i)
            prompt += f"\nQuestions that Principle Set {label} did best on:\n<questions>\n{qs}\n</questions>\n"
        reply = ask(f"crossover:{step}", prompt + "\n" + CROSSOVER_ANALYSIS)
        ops = parse_operations(reply)
        if not ops:
            return None
        principles = dict(best.principles)
        next_id = max((int(k[1:]) for k in principles if k[1:].isdigit()), default=-1)
        for op in ops:
            kind = op["operation"]
            if kind == "add" and op.get("principle"):
                next_id += 1
                principles[f"G{next_id}"] = str(op["principle"])
            elif kind == "modify" and op.get("principle"):
                pid = _pid(op.get("modified_from", ""))
                if pid in principles:
                    principles[pid] = str(op["principle"])
            elif kind == "remove":
                principles.pop(_pid(op.get("remove_id", "")), None)
        principles = renumber(principles)
        if principles == best.principles:
            return None
        precision = [1.0 / p.sigma**2 for p in sets]
        mu = sum(p.mu / p.sigma**2 for p in sets) / sum(precision)
        sigma = math.sqrt(1.0 / sum(precision) + s.crossover_sigma**2)
        return Program(f"p{len(self.programs)}", principles, mu, sigma, [p.id for p in sets], "crossover", step,
                       reply=reply)

    def _mutate(self, step: int, best: Program, selected: list[Program], results: dict, batch: list,
                ask) -> Program | None:
        s = self.settings
        recs = {r["id"]: r for r in results[best.id]["records"]}
        failed = [ex for ex in batch if not recs[ex.id]["correct"]][: s.critique_problems]
        if not failed:
            return None
        shown = "\n".join(f"[{k}]. {v}" for k, v in best.principles.items()) or "None"
        suggestions: list[dict[str, Any]] = []
        for ci, ex in enumerate(failed):
            r = recs[ex.id]
            attempts = [f"Attempt 1 (wrong):\n{r['response']}\nGrader: {r['feedback']}"]
            for other in selected:
                o = next((x for x in results[other.id]["records"] if x["id"] == ex.id), None)
                if other is not best and o is not None and o["correct"]:
                    attempts.append(f"Attempt 2 (correct, with other principles):\n{o['response']}")
                    break
            reply = ask(f"critique:{step}:{ci}", CRITIQUE.format(
                max_operations=s.max_update_operations, problem=truncate(ex.question, s.excerpt_chars),
                attempts="\n\n".join(attempts), answer=truncate(str(ex.answer), s.excerpt_chars // 2),
                principles=shown))
            suggestions.extend(parse_operations(reply)[: s.max_update_operations])
        if not suggestions:
            return None
        candidates = dict(best.principles)
        to_modify, n_added = [], 0
        for op in suggestions:
            if "modified_from" in op:
                op["modified_from"] = _pid(op["modified_from"])
            if op["operation"] == "modify" and op.get("modified_from") in candidates and op.get("principle"):
                to_modify.append(op)
            elif op["operation"] == "add" and op.get("principle"):
                candidates[f"C{n_added}"] = str(op["principle"])
                n_added += 1
        update_reply = ask(f"update:{step}", BATCH_UPDATE.format(
            principles="\n".join(f"[{k}]. {v}" for k, v in candidates.items()) or "None",
            updates="\n".join(f"- modify {o['modified_from']}: {o['principle']}" for o in to_modify) or "None"))
        plan = parse_operations(update_reply)
        new = dict(candidates)
        for op in plan:
            if "modified_from" in op:
                op["modified_from"] = _pid(op["modified_from"])
            try:
                if op["operation"] == "modify" and op.get("modified_from") in new and op.get("principle"):
                    new[op["modified_from"]] = str(op["principle"])
                elif op["operation"] == "merge" and op.get("principle"):
                    ids = [_pid(i) for i in op.get("merged_from", [])]
                    if len(ids) >= 2 and all(i in new for i in ids):
                        for i in ids:
                            del new[i]
                        new[f"C{n_added}"] = str(op["principle"])
                        n_added += 1
            except (TypeError, KeyError):
                continue
        new = renumber(new)
        if new == best.principles:
            return None
        return Program(f"p{len(self.programs)}", new, best.mu, math.sqrt(best.sigma**2 + s.mutation_sigma**2),
                       [best.id], "mutation", step, reply=update_reply)
