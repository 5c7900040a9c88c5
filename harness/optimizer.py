"""The optimizer interface shared by SePO and every baseline.

The runner hands an optimizer an OptimizationTask, which holds train and validation data
only: the test split is loaded by the runner after optimization and never reaches here.
Every candidate an optimizer scores is reported with its lineage, so reports and tracking
treat all methods alike and budgets (candidate evaluations, LLM calls) are comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.benchmarks.base import Benchmark, Example
from harness.evaluator import Evaluator
from harness.llm.client import LLMClient


@dataclass
class Candidate:
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


class Optimizer(Protocol):
    name: str

    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                 on_candidate: CandidateSink | None = None,
                 checkpoint_dir: Path | None = None) -> OptimizeResult: ...
