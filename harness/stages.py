"""Shared stages: work several cells use (SePO's pre-trained p~*, MetaSPO's meta-trained system prompt).

A method offers one through `shared_stage(task, prompt_llm, seed=, context=)`; the runner asks every cell
before any request, builds each distinct key once (different keys in parallel) on a budget of its own
(`stage_budget` in the config), reports its cost once, and only then runs the cells that use it. A cell
whose stage did not finish fails with StageMissing instead of paying for the stage from its own budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.config import ConfigError
from harness.llm.client import LLMClient
from harness.optimizer import CandidateSink, OptimizationTask


class StageMissing(ConfigError):
    """A cell needs a shared stage that was not built (it failed, or the run was interrupted)."""


@dataclass
class StageEnv:
    """What a stage is built with: clients on the stage's own ledger and a task opener bound to them."""

    task_llm: LLMClient
    prompt_llm: LLMClient
    open_task: Callable[[str, int], OptimizationTask]
    on_candidate: CandidateSink | None = None


@dataclass
class SharedStage:
    key: str  # the artifact's key hash: cells with the same key share one build
    kind: str  # harness.schema.STAGE_PRETRAIN (SePO's p~*) or STAGE_META_TRAIN (MetaSPO)
    build: Callable[[StageEnv], dict[str, Any]]  # -> {"text", "stopped", "info", "candidates"}
    done: Callable[[], bool]  # already built (a finished artifact on disk)
    describe: str = ""
    pool: list[str] = field(default_factory=list)
