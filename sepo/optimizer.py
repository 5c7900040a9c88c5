"""SePO as an Optimizer: pre-train the prompt agent's own prompt p~ (once), then fine-tune a task prompt.

SePO-Generalist pre-trains on a multi-task pool, SePO-Specialist on one related task. Ablations:
`self_improve=False` skips pre-training (p~ stays the hand-written one), `archive=False` makes both
stages linear searches. The evolved p~* is a plain text file, reusable for any target task, including
one held out of pre-training.

Best candidate: when the task has validation examples, the top `val_top_n` archive candidates by
minibatch score, plus the initial prompt, are scored on (up to `val_size`) validation examples and the
best there wins (ties: higher train score, then earlier). A 16-example minibatch is a noisy judge, and
the initial prompt as a contender means SePO never returns a prompt worse on val than where it started.
Without val examples, the best minibatch score wins.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.config import ConfigError
from harness.evaluator import Evaluator
from harness.llm.client import LLMClient
from harness.llm.usage import BudgetExceeded
from harness.optimizer import Candidate, CandidateSink, OptimizationTask, OptimizeResult, RunContext
from sepo.agent import PromptAgent, initial_prompt_agent
from sepo.archive import Entry
from sepo.evolve import EntrySink, EvolveResult, EvolveSettings
from sepo.stages import finetune, pretrain


class SePOSettings(EvolveSettings):
    """Fine-tuning search settings (inherited) plus the pre-training and prompt-agent settings."""

    variant: Literal["generalist", "specialist"] = "generalist"
    pretrain_pool: list[str] = Field(
        default_factory=list, description="benchmark names to pre-train on. Generalist: empty = every "
        "registered benchmark except the target. Specialist: one name; empty = the target's own train split")
    self_improve: bool = Field(True, description="False: no pre-training, p~ stays the hand-written one")
    pretrain_generations: int | None = Field(None, ge=0, description="G for pre-training (None: same as G)")
    pretrain_children: int | None = Field(None, ge=1, description="K for pre-training (None: same as K)")
    pretrain_minibatch: int | None = Field(None, ge=1, description="per-task minibatch in pre-training")
    temperature: float | None = Field(0.7, ge=0.0, le=2.0, description="prompt agent sampling temperature")
    agent_max_tokens: int | None = Field(1500, gt=0, description="reply cap for the prompt agent")
    prompt_agent_path: str | None = Field(
        None, description="p~* file: loaded if it exists, else written after a complete pre-training")
    val_top_n: int = Field(3, ge=0, description="candidates re-scored on val to pick the best (0: none)")
    val_size: int | None = Field(None, ge=1, description="cap on val examples used for that choice")

    def pretrain_settings(self) -> EvolveSettings:
        base = self.finetune_settings()
        upd = {"generations": self.pretrain_generations, "children": self.pretrain_children,
               "minibatch": self.pretrain_minibatch}
        return base.model_copy(update={k: v for k, v in upd.items() if v is not None})

    def finetune_settings(self) -> EvolveSettings:
        return EvolveSettings.model_validate(self.model_dump(include=set(EvolveSettings.model_fields)))


def to_candidate(e: Entry, stage: str, val_score: float | None = None) -> Candidate:
    return Candidate(e.id, e.text, e.parent_id, e.generation, e.score, val_score,
                     {"stage": stage, "admitted": e.admitted, "children": e.children, **e.meta})


def save_prompt_agent(text: str, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write p~* (and, if given, provenance such as the pool and seed to a .json beside it)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    if meta is not None:
        p.with_suffix(".json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return p


def load_prompt_agent(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"No prompt-agent prompt at {p}; run SePO pre-training first or fix the path.")
    return p.read_text(encoding="utf-8")


class SePO:
    name = "sepo"

    def __init__(self, settings: SePOSettings | dict[str, Any] | None = None, *,
                 pool_tasks: Sequence[OptimizationTask] | None = None, **overrides: Any) -> None:
        if settings is None or isinstance(settings, dict):
            settings = SePOSettings.model_validate({**(settings or {}), **overrides})
        elif overrides:
            settings = SePOSettings.model_validate({**settings.model_dump(), **overrides})
        self.settings = settings
        self.pool_tasks = list(pool_tasks) if pool_tasks is not None else None  # else built from names
        self.prompt_agent: str | None = None
        self.pretrain_result: EvolveResult | None = None
        if settings.prompt_agent_path and Path(settings.prompt_agent_path).is_file():
            self.prompt_agent = load_prompt_agent(settings.prompt_agent_path)

    # p~* persistence
    def save_prompt_agent(self, path: str | Path) -> Path:
        if self.prompt_agent is None:
            raise ValueError("No prompt-agent prompt yet: pre-train or load one first.")
        meta = {"pool": [t.name for t in self.pool_tasks or []], "variant": self.settings.variant}
        return save_prompt_agent(self.prompt_agent, path, meta)

    def load_prompt_agent(self, path: str | Path) -> str:
        self.prompt_agent = load_prompt_agent(path)
        return self.prompt_agent

    def agent(self, prompt_llm: LLMClient, system_prompt: str) -> PromptAgent:
        return PromptAgent(prompt_llm, system_prompt, temperature=self.settings.temperature,
                           max_tokens=self.settings.agent_max_tokens)

    def pretrain(self, pool_tasks: Sequence[OptimizationTask], prompt_llm: LLMClient, *, seed: int,
                 checkpoint: Path | None = None, on_candidate: EntrySink | None = None) -> str:
        """Evolve p~ on the pool; sets and returns p~* (the best-scoring p~' by S~)."""
        s = self.settings
        self.pool_tasks = list(pool_tasks)
        res = pretrain(initial_prompt_agent(), self.pool_tasks, prompt_llm, s.pretrain_settings(), seed=seed,
                       temperature=s.temperature, max_tokens=s.agent_max_tokens, checkpoint=checkpoint,
                       on_candidate=on_candidate)
        self.pretrain_result = res
        self.prompt_agent = res.best.text
        if s.prompt_agent_path and res.stopped is None:
            self.save_prompt_agent(s.prompt_agent_path)
        return self.prompt_agent

    def build_pool(self, task: OptimizationTask, seed: int) -> list[OptimizationTask]:
        """Pool tasks from benchmark names, on the target's task LLM and sandbox (benchmarks needing
        other options should be passed ready-made as `pool_tasks`)."""
        s = self.settings
        names = list(s.pretrain_pool)
        if s.variant == "specialist" and len(names) > 1:
            raise ConfigError("SePO-Specialist pre-trains on one related task: give pretrain_pool one name.")
        if s.variant == "specialist" and not names:
            return [task]
        from harness.benchmarks import get_benchmark, registry  # lazy: imports every benchmark module

        if not names:  # "custom" needs a file of its own: it joins a pool only by name
            names = sorted(n for n in registry() if n not in (task.benchmark.name, "custom"))
        # Pool tasks that run code share the target's sandbox, or start a Docker one of their own.
        sandbox = getattr(task.benchmark, "sandbox", None) or "docker"
        pool = []
        for n in names:
            if n == task.benchmark.name:
                pool.append(task)
                continue
            bench = get_benchmark(n, task.benchmark.data_dir, sandbox=sandbox)
            ev = Evaluator(bench, task.evaluator.llm, seed=task.evaluator.seed)
            pool.append(OptimizationTask(n, bench, bench.load("train", seed), [], ev, task.initial_prompt))
        return pool

    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                 on_candidate: CandidateSink | None = None, checkpoint_dir: Path | None = None,
                 context: RunContext | None = None) -> OptimizeResult:
        s = self.settings
        ck = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if self.prompt_agent is None:
            if not s.self_improve:
                self.prompt_agent = initial_prompt_agent()
            else:
                pool = self.pool_tasks if self.pool_tasks is not None else self.build_pool(task, seed)
                self.pretrain(pool, prompt_llm, seed=seed, checkpoint=ck / "sepo-pretrain.json" if ck else None)
                if ck is not None and self.pretrain_result and self.pretrain_result.stopped is None:
                    self.save_prompt_agent(ck / "prompt_agent.md")
        agent_prompt = self.prompt_agent
        sink = (lambda e: on_candidate(to_candidate(e, "finetune"))) if on_candidate else None
        res = finetune(task, self.agent(prompt_llm, agent_prompt), s.finetune_settings(), seed=seed,
                       checkpoint=ck / "sepo-finetune.json" if ck else None, on_candidate=sink)
        best, val_scores, stopped = self.choose_best(task, res)
        cands = [to_candidate(e, "finetune", val_scores.get(e.id)) for e in res.archive.entries]
        pre = self.pretrain_result
        extra = {"prompt_agent": agent_prompt, "stopped": stopped,
                 "pretrain_candidates": [to_candidate(e, "pretrain") for e in pre.archive.entries] if pre else [],
                 "pretrain_stopped": pre.stopped if pre else None}
        return OptimizeResult(next(c for c in cands if c.id == best.id), cands, extra)

    def choose_best(self, task: OptimizationTask, res: EvolveResult) -> tuple[Entry, dict[str, float], str | None]:
        """See the module docstring; a budget stop during the val pass keeps what was scored."""
        s, arch = self.settings, res.archive
        if not task.val or s.val_top_n == 0 or res.stopped:
            return arch.best(), {}, res.stopped
        root = arch.entries[0]
        contenders = arch.ranked()[: s.val_top_n]
        contenders += [root] if root not in contenders else []
        val = task.val[: s.val_size] if s.val_size else task.val
        scores: dict[str, float] = {}
        stopped = None
        for e in contenders:
            try:
                scores[e.id] = task.evaluator.evaluate(e.text, val, label="sepo val").accuracy
            except BudgetExceeded:
                stopped = "budget"
                break
        if not scores:
            return arch.best(), {}, stopped
        order = {e.id: i for i, e in enumerate(arch.entries)}
        best_id = max(scores, key=lambda i: (scores[i], arch[i].score or 0.0, -order[i]))
        return arch[best_id], scores, stopped
