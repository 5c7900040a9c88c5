"""Shared stages: work several cells use (SePO's pre-trained p~*, MetaSPO's meta-trained system prompt).

A method offers one through `shared_stage(task, prompt_llm, seed=, context=)`; the runner asks every cell
before any request, builds each distinct key once (different keys in parallel) on a budget of its own
(`stage_budget` in the config), reports its cost once, and only then runs the cells that use it. A cell
whose stage did not finish fails with StageMissing instead of paying for the stage from its own budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.llm.client import LLMClient
from harness.llm.usage import Budget
from harness.optimizer import Candidate, CandidateSink, OptimizationTask


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


@dataclass
class Stage:
    """A shared stage of this run and the cells waiting for it."""

    spec: SharedStage
    cells: list = field(default_factory=list)  # harness.grid.Cell
    methods: set[str] = field(default_factory=set)
    targets: set[str] = field(default_factory=set)
    outcome: dict[str, Any] | None = None
    error: str | None = None


def plan_stages(cells: list, spec_of: Callable[[Any], SharedStage | None]) -> dict[str, Stage]:
    """Ask every cell for the stage it shares (`spec_of(cell)`, before any request); group cells by key."""
    from harness.grid import entry_key

    stages: dict[str, Stage] = {}
    for c in cells:
        spec = spec_of(c)
        if spec is None:
            continue
        st = stages.setdefault(spec.key, Stage(spec))
        st.methods.add(c.method)
        st.targets.add(entry_key(c.bench))
        st.cells.append(c)
    return stages


def build_stage(st: Stage, *, llms, budget: Budget, folder: Path,
                task_opener: Callable[[LLMClient], Callable[[str, int], OptimizationTask]],
                tracker=None, simulated: bool = False, say: Callable[[str], None] = print) -> None:
    """Build one shared stage on a ledger of its own (`budget`), resumed from its checkpoint in `folder`;
    its cost reported once (its own MLflow run when `tracker`). A failure is kept on `st.error`."""
    from harness.cell import resumable_ledger, save_usage

    spec = st.spec
    if spec.done():
        return
    folder.mkdir(parents=True, exist_ok=True)
    ledger, restored = resumable_ledger(llms.ledger, budget, folder)
    task_llm, prompt_llm = llms.task.with_ledger(ledger), llms.prompt.with_ledger(ledger)
    run = None
    if tracker is not None:
        run = tracker.start_stage(spec.key, spec.kind, methods=sorted(st.methods), targets=sorted(st.targets),
                                  params={"describe": spec.describe, "pool": spec.pool,
                                          "stage_budget": asdict(budget)}, simulated=simulated)

    def on_candidate(cand: Candidate) -> None:
        save_usage(folder, ledger)
        if run is not None:
            run.log_candidate(cand)

    env = StageEnv(task_llm, prompt_llm, task_opener(task_llm), on_candidate)
    say(f"== stage {spec.kind} {spec.key[:12]}: {spec.describe}; serves {len(st.cells)} cells "
        f"({', '.join(sorted(st.methods))})")
    t0 = time.monotonic()
    try:
        st.outcome = spec.build(env)
    except Exception as exc:
        st.error = f"{type(exc).__name__}: {exc}"
        if run is not None:
            run.fail(st.error)
        say(f"== FAILED: stage {spec.key[:12]}: {st.error}")
        return
    save_usage(folder, ledger)
    u = ledger.total
    wall = round(time.monotonic() - t0, 1)
    stopped = st.outcome.get("stopped")
    if run is not None:
        run.finish(metrics={"requests": u.requests, "tokens": u.tokens, "usd": u.usd,
                            "evaluations": u.evaluations, "wall_s": wall},
                   texts={"prompt": st.outcome.get("text") or ""},
                   result={"stopped": stopped, "info": st.outcome.get("info"), "restored": restored},
                   stopped=stopped)
    say(f"== stage done {spec.key[:12]} ({wall:.0f} s): {u.evaluations} evaluations, {u.requests} "
        f"requests, {u.tokens} tokens, ${u.usd:.4f}, once for {len(st.cells)} cells"
        + (f"; STOPPED on budget ({stopped}), best so far frozen" if stopped else ""))
