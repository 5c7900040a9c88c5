"""The optimizer interface shared by SePO and every baseline.

The runner hands an optimizer an OptimizationTask, which holds train and validation data
only: the test split is loaded by the runner after optimization and never reaches here.
Every candidate an optimizer scores is reported with its lineage, so reports and tracking
treat all methods alike and budgets (candidate evaluations, LLM calls) are comparable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.benchmarks.base import Benchmark, Example
from harness.evaluator import Evaluator
from harness.llm.client import LLMClient


@dataclass
class Candidate:
    """One scored prompt. `meta` keys shared by every method (all optional):
    stage ("pretrain", "finetune", "search", ...), admitted (bool), example_ids (what train_score was
    judged on), val_example_ids, agent_reply (the raw proposer reply), cost ({"requests", "tokens", "usd"}
    spent producing and scoring it), skipped (why a proposal was not scored)."""

    id: str
    prompt: str
    parent_id: str | None
    generation: int
    train_score: float | None = None  # mean score on the minibatch it was judged on
    val_score: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizeResult:
    best: Candidate
    candidates: list[Candidate]
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific (e.g. an evolved prompt-agent prompt)


@dataclass
class OptimizationTask:
    """What an optimizer may see: a benchmark's train and validation data and an evaluator."""

    name: str
    benchmark: Benchmark
    train: list[Example]
    val: list[Example]
    evaluator: Evaluator
    initial_prompt: str = ""

    @property
    def description(self) -> str:
        return self.benchmark.description


CandidateSink = Callable[[Candidate], None]


@dataclass
class RunContext:
    """What the runner offers an optimizer besides its target task.

    - open_task(name, seed): another benchmark's train/val task (for pre-training pools), opened by the
      runner with the config's options and sandbox before any request (see Optimizer.benchmarks_needed);
    - shared_dir: an experiment-level directory for artifacts reused across cells (e.g. SePO's p~*);
    - check_disjoint_from_test(benchmark, ids): raises ConfigError when any of those example ids is in the
      target's test split under this cell's seed (the test ids themselves are never handed out);
    - held_out: benchmark names the experiment keeps out of every pre-training pool;
    - shared_stages_built: the runner built every shared stage before the cells (harness/stages.py), so a
      missing stage artifact is an error, not work for the cell.
    """

    open_task: Callable[[str, int], OptimizationTask] | None = None
    shared_dir: Path | None = None
    check_disjoint_from_test: Callable[[str, Iterable[str]], None] | None = None
    held_out: tuple[str, ...] = ()
    shared_stages_built: bool = False


class Optimizer(Protocol):
    """name: the registry name. Optional: `benchmarks_needed(target, held_out=()) -> list[str]` names
    other benchmarks the runner must open (and check) before any request, none of them in `held_out`."""

    name: str

    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                 on_candidate: CandidateSink | None = None, checkpoint_dir: Path | None = None,
                 context: RunContext | None = None) -> OptimizeResult: ...
