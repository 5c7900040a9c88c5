"""The two SePO stages on top of `evolve`: fine-tuning a task prompt and pre-training p~.

Fine-tuning: the candidates are task prompts; a candidate's score is its accuracy on a train
minibatch; the prompt agent runs a FROZEN p~.

Pre-training: the candidates are prompt-agent prompts p~'. A child p~' is written by the parent
p~ rewriting its own prompt (`PromptAgent.propose_self`, system prompt = the parent). Its score is

    S~(p~') = mean over pool tasks t of acc_t(PromptAgent(p~').propose(t, p_t0, feedback_t0))

i.e. one improvement step per task: the agent running p~' reads task t's description, t's initial
prompt p_t0 and balanced feedback on p_t0 (on t's train minibatch), writes one task prompt, which is
scored on the same minibatch. Accuracy rather than improvement keeps S~ in [0, 1], where DGM's
sigmoid(lam * (S - 0.5)) is meant to work; on a fixed minibatch the two rank candidates identically
(acc(p_t0) is a constant). The proposal seed depends on (seed, task) only, so candidates are compared
under common random numbers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean

from harness.benchmarks.base import Example
from harness.evaluator import EvalResult
from harness.llm.client import LLMClient
from harness.optimizer import OptimizationTask
from sepo.agent import PromptAgent
from sepo.archive import Archive, Entry
from sepo.evolve import EntrySink, EvolveResult, EvolveSettings, ScoreFn, derive_seed, evolve
from sepo.feedback import FeedbackItem, balance, items_from_records, truncate


def minibatch(examples: Sequence[Example], size: int, seed: int, *parts: object) -> list[Example]:
    """A deterministic sample of `size` examples (all of them if there are fewer)."""
    if len(examples) <= size:
        return list(examples)
    return random.Random(derive_seed(seed, "minibatch", *parts)).sample(list(examples), size)


def task_score_fn(task: OptimizationTask, settings: EvolveSettings, seed: int) -> ScoreFn:
    def score(prompt: str, key: int) -> tuple[float, list[FeedbackItem]]:
        mb = minibatch(task.train, settings.minibatch, seed, task.name, key)
        res = task.evaluator.evaluate(prompt, mb, label=f"sepo {task.name}")
        return res.accuracy, items_from_records(mb, res.records, excerpt_chars=settings.excerpt_chars)

    return score


def finetune(task: OptimizationTask, agent: PromptAgent, settings: EvolveSettings, *, seed: int,
             checkpoint: Path | None = None, on_candidate: EntrySink | None = None) -> EvolveResult:
    """Evolve the task prompt from task.initial_prompt with a frozen prompt agent."""

    def propose(parent: Entry, archive: Archive, step_seed: int) -> str:
        return agent.propose(task.description, parent.text, archive.summary(parent.id, settings.archive_top_n),
                             parent.feedback, parent_score=parent.score, seed=step_seed)

    key = {"task": task.name, "prompt_agent": agent.system_prompt, "temperature": agent.temperature,
           "max_tokens": agent.max_tokens}
    return evolve(task.initial_prompt, task_score_fn(task, settings, seed), propose, settings, seed=seed,
                  checkpoint=checkpoint, on_candidate=on_candidate, run_key=key)


def agent_score_fn(pool: Sequence[OptimizationTask], prompt_llm: LLMClient, settings: EvolveSettings, *,
                   seed: int, temperature: float | None, max_tokens: int | None) -> ScoreFn:
    """S~(p~'): see the module docstring."""

    baselines: dict[tuple[str, int], EvalResult] = {}  # the initial task prompts' results, per minibatch

    def score(agent_prompt: str, key: int) -> tuple[float, list[FeedbackItem]]:
        agent = PromptAgent(prompt_llm, agent_prompt, temperature=temperature, max_tokens=max_tokens)
        accs, items = [], []
        for t in pool:
            mb = minibatch(t.train, settings.minibatch, seed, t.name, key)
            if (t.name, key) not in baselines:
                baselines[t.name, key] = t.evaluator.evaluate(t.initial_prompt, mb,
                                                              label=f"sepo pretrain {t.name} (initial)")
            base = baselines[t.name, key]
            fb = balance(items_from_records(mb, base.records, excerpt_chars=settings.excerpt_chars),
                         settings.feedback_per_side)
            child = agent.propose(t.description, t.initial_prompt, "", fb, parent_score=base.accuracy,
                                  seed=derive_seed(seed, "pretrain-task", t.name))
            res = t.evaluator.evaluate(child, mb, label=f"sepo pretrain {t.name}")
            accs.append(res.accuracy)
            items.append(FeedbackItem(
                t.name, truncate(f"[{t.name}] {t.description}", settings.excerpt_chars),
                truncate(child, settings.excerpt_chars * 2), res.accuracy, res.accuracy > base.accuracy,
                f"the task prompt you wrote scored {res.accuracy:.3f} vs {base.accuracy:.3f} for the "
                f"initial prompt, on {len(mb)} examples"))
        return (fmean(accs) if accs else 0.0), items

    return score


def pretrain(initial_agent_prompt: str, pool: Sequence[OptimizationTask], prompt_llm: LLMClient,
             settings: EvolveSettings, *, seed: int, temperature: float | None = 0.7,
             max_tokens: int | None = 1500, checkpoint: Path | None = None,
             on_candidate: EntrySink | None = None) -> EvolveResult:
    """Evolve p~ itself on a pool of tasks; the result's best entry is p~*."""
    if not pool:
        raise ValueError("SePO pre-training needs at least one task in its pool.")

    def propose(parent: Entry, archive: Archive, step_seed: int) -> str:
        agent = PromptAgent(prompt_llm, parent.text, temperature=temperature, max_tokens=max_tokens)
        return agent.propose_self(archive.summary(parent.id, settings.archive_top_n), parent.feedback,
                                  parent_score=parent.score, seed=step_seed)

    score = agent_score_fn(pool, prompt_llm, settings, seed=seed, temperature=temperature, max_tokens=max_tokens)
    key = {"pool": [t.name for t in pool], "temperature": temperature, "max_tokens": max_tokens}
    return evolve(initial_agent_prompt, score, propose, settings, seed=seed, checkpoint=checkpoint,
                  on_candidate=on_candidate, id_prefix="pt-", run_key=key)
