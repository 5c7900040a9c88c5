"""The optimizer interface shared by SePO and every baseline.

The runner hands an optimizer an OptimizationTask, which holds train and validation data
only: the test split is loaded by the runner after optimization and never reaches here.
Every candidate an optimizer scores is reported with its lineage, so reports and tracking
treat all methods alike and budgets (candidate evaluations, LLM calls) are comparable.

Events, in the style of gepa's callbacks: a method reports each candidate (`on_candidate`) and each finished
generation (`on_generation_end`), and asks `should_stop()` where it checks its budget (before each step that
spends); a reason there ends the run as a budget stop does, with `extra["stopped"]` = the reason. The caller
passes them as one `Callbacks`; the older `on_candidate=` keyword is still accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

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
GenerationSink = Callable[["GenerationEnd"], None]
StopCheck = Callable[[], "str | None"]


@dataclass(frozen=True)
class GenerationEnd:
    """A finished generation (an iteration, a step): its number as in Candidate.generation, and the stage
    it belongs to (e.g. SePO's "pretrain" / "finetune"; "" when a method has one)."""

    generation: int
    stage: str = ""


@dataclass(frozen=True)
class Callbacks:
    """What a caller hears from an optimizer and how it stops one; every part optional."""

    on_candidate: CandidateSink | None = None
    on_generation_end: GenerationSink | None = None
    should_stop: StopCheck | None = None

    def candidate(self, cand: Candidate) -> None:
        if self.on_candidate is not None:
            self.on_candidate(cand)

    def generation_end(self, generation: int, stage: str = "") -> None:
        if self.on_generation_end is not None:
            self.on_generation_end(GenerationEnd(generation, stage))

    def stop_reason(self) -> str | None:
        return self.should_stop() if self.should_stop is not None else None


def callbacks_of(callbacks: Callbacks | None = None, on_candidate: CandidateSink | None = None) -> Callbacks:
    """One Callbacks from the `callbacks=` and the older `on_candidate=` keywords (not both)."""
    if callbacks is None:
        return Callbacks(on_candidate=on_candidate)
    if on_candidate is not None:
        raise TypeError("pass on_candidate inside callbacks=Callbacks(...), not both")
    return callbacks


class StopRequested(Exception):
    """Raised inside a method's loop when `should_stop()` gave a reason; caught where BudgetExceeded is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_stop(callbacks: Callbacks) -> None:
    """Raise StopRequested when the caller asks to stop (call it where the budget is checked)."""
    reason = callbacks.stop_reason()
    if reason:
        raise StopRequested(reason)


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
    """name: the registry name; Settings: the pydantic model of its settings (`self.settings` is one).
    Optional: `benchmarks_needed(target, held_out=()) -> list[str]` names other benchmarks the runner must
    open (and check) before any request, none of them in `held_out`."""

    name: str
    Settings: ClassVar[type]

    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                 callbacks: Callbacks | None = None, on_candidate: CandidateSink | None = None,
                 checkpoint_dir: Path | None = None, context: RunContext | None = None) -> OptimizeResult: ...
