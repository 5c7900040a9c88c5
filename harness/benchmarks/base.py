"""The Benchmark interface: loading, messages for the task agent, and scoring.

A benchmark module defines one subclass and registers it with `@register("name")`.
Splits are deterministic per seed; optimizers only ever receive train and val.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from harness import data

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class Example:
    id: str
    question: str  # what the task agent is asked (user message), already rendered
    answer: Any  # reference answer (int, letter, grid, tests, ...)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    value: float  # 0..1
    correct: bool
    feedback: str  # what went right or wrong, shown to prompt agents
    extracted: Any = None  # the parsed answer, or None when unparseable
    reason: str = ""  # a short machine-readable why, e.g. "correct", "no answer found", "exited before tests ran"


class Benchmark:
    """Base class. Subclasses set `name`, `description`, and implement `load` and `score`; one that runs
    model-written code when it scores overrides `needs_sandbox`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""  # a task description the prompt agent reads
    attempts: ClassVar[int] = 1  # pass@k: up to k responses, correct if any is (ARC uses 3)
    max_tokens: ClassVar[int | None] = None  # a sensible reply cap for this task

    def __init__(self, data_dir: str | None = None, **options: Any) -> None:
        self.data_dir = data_dir
        self.options = options

    @classmethod
    def needs_sandbox(cls, options: dict[str, Any]) -> bool:
        """Whether scoring with these options runs code (the runner then builds a sandbox first)."""
        return False

    def load(self, split: Split, seed: int) -> list[Example]:
        raise NotImplementedError

    def to_messages(self, system_prompt: str, example: Example) -> list[dict[str, str]]:
        """System prompt first (constant across a batch, so servers reuse the prefix)."""
        msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return msgs + [{"role": "user", "content": example.question}]

    def score(self, example: Example, response: str) -> Score:
        raise NotImplementedError

    def score_many(self, examples: list[Example], responses: list[str]) -> list[Score]:
        """Score a batch; benchmarks with expensive scoring (MBPP's sandbox) override this."""
        return [self.score(e, r) for e, r in zip(examples, responses, strict=True)]

    def combine_attempts(self, example: Example, scores: list[Score]) -> Score:
        """The verdict of a pass@k example from the scores of its attempts so far, in order. Default: the
        last attempt (attempts stop at the first correct one). ARC overrides it: pass@k per test output."""
        return scores[-1]

    def close(self) -> None:
        """Release resources (sandbox containers)."""


_REGISTRY: dict[str, type[Benchmark]] = {}


class RowsBenchmark(Benchmark):
    """A benchmark over records read once, from the hub (option `source: hub`) or from the data folder:
    subclasses implement `read_rows`; `rows()` reads them on first use. Options other than the common ones
    and `option_names` are refused when it is built."""

    option_names: ClassVar[tuple[str, ...]] = ()
    _rows: list[dict[str, Any]] | None = None

    def __init__(self, data_dir: str | None = None, **options: Any) -> None:
        data.check_options(self.name, options, self.option_names)
        super().__init__(data_dir, **options)

    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            self._rows = self.read_rows(data.source_of(self.options) == "hub")
        return self._rows

    def read_rows(self, hub: bool) -> list[dict[str, Any]]:
        """The records, from the hub or (hub False) from the data folder."""
        raise NotImplementedError


def register(name: str):
    def deco(cls: type[Benchmark]) -> type[Benchmark]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registry() -> dict[str, type[Benchmark]]:
    return dict(_REGISTRY)
