"""The two SePO stages on top of `evolve`: fine-tuning a task prompt and pre-training p~.

Minibatches: each generation draws afresh (seeded by seed, stage, task and generation, so pre-training and
fine-tuning draw independently), leaving out the examples the feedback of that generation showed.

Fine-tuning: the candidates are task prompts; a candidate's score is its accuracy on its generation's
draw; the prompt agent runs a FROZEN p~.

Pre-training: the candidates are prompt-agent prompts p~'. A child p~' is written by the parent p~
rewriting its own prompt (`PromptAgent.propose_self`, system prompt = the parent). Its score is

    S~(p~') = mean over pool tasks t of acc_t(PromptAgent(p~').propose(t, p_t0, feedback_t))

i.e. one improvement step per task: the agent running p~' reads task t's description, t's initial prompt
p_t0 and balanced feedback on p_t0 (a draw F_t of t's train split), writes one task prompt, which is scored
on a second draw M_t disjoint from the examples that feedback showed (and from those shown to p~' itself).
A task for which p~' writes no usable prompt (truncated or untagged twice) scores 0. Accuracy rather than
improvement keeps S~ in [0, 1], where DGM's sigmoid(lam * (S - 0.5)) is meant to work. Siblings (and the
paired re-score of their parent) use the same draws and the same per-task proposal seeds (common random
numbers). The feedback a p~' passes on to its own children covers every pool task: the task, the prompt
p~' wrote for it with its score, and that prompt's failing and passing examples (1:1).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from statistics import fmean

from harness.benchmarks.base import Example
from harness.config import ConfigError
from harness.evaluator import EvalResult
from harness.llm.client import LLMClient
from harness.optimizer import GenerationSink, OptimizationTask, StopCheck
from sepo.agent import PromptAgent, Proposal
from sepo.archive import Archive, Entry
from sepo.evolve import Draw, EntrySink, EvolveResult, EvolveSettings, Meter, Scored, ScoreFn, derive_seed, evolve
from sepo.feedback import FeedbackItem, balance, items_from_records, truncate

SEP = "::"  # pre-training example ids are "<task>::<example id>"


def draw(examples: Sequence[Example], size: int, seed: int, *parts: object,
         exclude: Iterable[str] = ()) -> list[Example]:
    """A deterministic sample of `size` examples without the excluded ids.

    Small splits (AIME's train split holds 10 examples) cannot keep a scoring draw of min(size, half the
    split) apart from the feedback examples: then the draw is topped up with a seeded sample of the excluded
    ones, so those examples are both shown and scored (overlap, recorded by the ids a score was judged on)."""
    skip = set(exclude)
    pool = [e for e in examples if e.id not in skip]
    rng = random.Random(derive_seed(seed, "minibatch", *parts))
    need = min(size, max(1, len(examples) // 2))
    if len(pool) < need:
        shown = [e for e in examples if e.id in skip]
        return pool + rng.sample(shown, min(need - len(pool), len(shown)))
    if len(pool) <= size:
        return pool
    return rng.sample(pool, size)


def fit_feedback(task: OptimizationTask, kids: int, minibatch: int, per_side: int,
                 once_per_side: int = 0) -> tuple[int, int]:
    """Failures/successes shown per side, shrunk (largest first) until the examples one generation may show
    (2 * per_side for each of its `kids` parents, plus 2 * once_per_side shown once) leave min(minibatch, half
    the train split) for the scoring draw; a requested side never drops below 1 (on a split too small for
    that, `draw` overlaps). ConfigError (before any request) only for a task with fewer than 2 examples."""
    n = len(task.train)
    if n < 2 and (per_side or once_per_side):
        raise ConfigError(f"{task.name}'s train split has {n} example(s); SePO needs at least 2 (one shown as "
                          "feedback, one scored); use a larger train split.")
    keep = max(1, min(minibatch, n // 2))
    sides = [per_side, once_per_side]
    floor = [min(1, per_side), min(1, once_per_side)]

    def shown() -> int:
        return 2 * sides[0] * kids + 2 * sides[1]

    while shown() > n - keep and sides != floor:
        sides[0 if sides[0] - floor[0] >= sides[1] - floor[1] else 1] -= 1
    return sides[0], sides[1]


def task_score_fn(task: OptimizationTask, settings: EvolveSettings, seed: int) -> ScoreFn:
    def score(prompt: str, d: Draw) -> Scored:
        mb = draw(task.train, settings.minibatch, seed, "finetune", task.name, d.gen, exclude=d.exclude)
        res = task.evaluator.evaluate(prompt, mb, label=f"sepo {task.name}")
        items = items_from_records(mb, res.records, excerpt_chars=settings.excerpt_chars)
        return Scored(res.accuracy, balance(items, settings.feedback_per_side), [e.id for e in mb])

    return score


def finetune(task: OptimizationTask, agent: PromptAgent, settings: EvolveSettings, *, seed: int,
             checkpoint: Path | None = None, on_candidate: EntrySink | None = None,
             run_key: dict | None = None, meter: Meter | None = None, on_generation_end: GenerationSink | None = None,
             should_stop: StopCheck | None = None) -> EvolveResult:
    """Evolve the task prompt from task.initial_prompt with a frozen prompt agent."""

    def propose(parent: Entry, archive: Archive, step_seed: int) -> Proposal:
        return agent.propose(task.description, parent.text, archive.summary(parent.id, settings.archive_top_n),
                             parent.feedback, parent_score=parent.score, seed=step_seed)

    key = {"task": task.name, "prompt_agent": agent.system_prompt, "temperature": agent.temperature,
           "max_tokens": agent.max_tokens, "lenient": agent.lenient, **(run_key or {})}
    return evolve(task.initial_prompt, task_score_fn(task, settings, seed), propose, settings, seed=seed,
                  checkpoint=checkpoint, on_candidate=on_candidate, run_key=key, meter=meter, stage="finetune",
                  on_generation_end=on_generation_end, should_stop=should_stop)


def agent_score_fn(pool: Sequence[OptimizationTask], prompt_llm: LLMClient, settings: EvolveSettings, *,
                   seed: int, temperature: float | None, max_tokens: int | None, lenient: bool = False,
                   task_feedback_per_side: int = 3) -> ScoreFn:
    """S~(p~'): see the module docstring."""

    baselines: dict[tuple[str, Draw], tuple[list[Example], EvalResult]] = {}  # p_t0 on F_t, per task and draw

    def score(agent_prompt: str, d: Draw) -> Scored:
        agent = PromptAgent(prompt_llm, agent_prompt, temperature=temperature, max_tokens=max_tokens,
                            lenient=lenient)
        accs, items, ids, per_task, skipped = [], [], [], {}, {}
        for t in pool:
            prefix = t.name + SEP
            seen = {i.removeprefix(prefix) for i in d.exclude if i.startswith(prefix)}
            if (t.name, d) not in baselines:
                fb_mb = draw(t.train, settings.minibatch, seed, "pretrain-feedback", t.name, d.gen, exclude=seen)
                baselines[t.name, d] = fb_mb, t.evaluator.evaluate(t.initial_prompt, fb_mb,
                                                                   label=f"sepo pretrain {t.name} (initial)")
            fb_mb, base = baselines[t.name, d]
            shown = balance(items_from_records(fb_mb, base.records, excerpt_chars=settings.excerpt_chars),
                            task_feedback_per_side)
            mb = draw(t.train, settings.minibatch, seed, "pretrain-score", t.name, d.gen,
                      exclude=seen | {i.example_id for i in shown})
            prop = agent.propose(t.description, t.initial_prompt, "", shown, parent_score=base.accuracy,
                                 seed=derive_seed(seed, "pretrain-task", t.name, d.gen))
            ids += [prefix + e.id for e in mb]
            if prop.text is None:  # no usable prompt for this task: it scores 0
                acc, examples = 0.0, []
                skipped[t.name] = prop.skipped
                note = f"you wrote no usable task prompt ({prop.skipped}); this task scored 0"
            else:
                res = t.evaluator.evaluate(prop.text, mb, label=f"sepo pretrain {t.name}")
                acc = res.accuracy
                examples = [FeedbackItem(prefix + i.example_id, f"[{t.name}] {i.question}", i.response, i.score,
                                         i.correct, i.feedback)
                            for i in balance(items_from_records(mb, res.records,
                                                                excerpt_chars=settings.excerpt_chars),
                                             settings.feedback_per_side)]
                note = (f"The task prompt you wrote scored {acc:.3f} on {len(mb)} examples; the initial prompt "
                        f"scored {base.accuracy:.3f} on {len(fb_mb)} other examples. Graded examples of your "
                        "prompt follow.")
            accs.append(acc)
            per_task[t.name] = acc
            items.append(FeedbackItem(t.name, truncate(t.description, settings.excerpt_chars),
                                      truncate(prop.text or prop.reply, settings.excerpt_chars * 2), acc,
                                      acc > base.accuracy, note, kind="task"))
            items += examples
        meta = {"task_scores": per_task} | ({"task_skipped": skipped} if skipped else {})
        return Scored(fmean(accs) if accs else 0.0, items, ids, meta)

    return score


def pretrain(initial_agent_prompt: str, pool: Sequence[OptimizationTask], prompt_llm: LLMClient,
             settings: EvolveSettings, *, seed: int, temperature: float | None = 0.7,
             max_tokens: int | None = 1500, lenient: bool = False, task_feedback_per_side: int = 3,
             checkpoint: Path | None = None, on_candidate: EntrySink | None = None,
             run_key: dict | None = None, meter: Meter | None = None, on_generation_end: GenerationSink | None = None,
             should_stop: StopCheck | None = None) -> EvolveResult:
    """Evolve p~ itself on a pool of tasks; the result's best entry is p~*."""
    if not pool:
        raise ConfigError("SePO pre-training needs at least one task in its pool.")

    def propose(parent: Entry, archive: Archive, step_seed: int) -> Proposal:
        agent = PromptAgent(prompt_llm, parent.text, temperature=temperature, max_tokens=max_tokens,
                            lenient=lenient)
        return agent.propose_self(archive.summary(parent.id, settings.archive_top_n), parent.feedback,
                                  parent_score=parent.score, seed=step_seed)

    score = agent_score_fn(pool, prompt_llm, settings, seed=seed, temperature=temperature, max_tokens=max_tokens,
                           lenient=lenient, task_feedback_per_side=task_feedback_per_side)
    key = {"pool": [t.name for t in pool], "temperature": temperature, "max_tokens": max_tokens,
           "lenient": lenient, "task_feedback_per_side": task_feedback_per_side, **(run_key or {})}
    return evolve(initial_agent_prompt, score, propose, settings, seed=seed, checkpoint=checkpoint,
                  on_candidate=on_candidate, id_prefix="pt-", run_key=key, meter=meter, stage="pretrain",
                  on_generation_end=on_generation_end, should_stop=should_stop)
