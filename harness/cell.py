"""One cell (method x benchmark x seed): optimize on train/val, then score the best and the initial prompt on
test, with its ledgers and checkpoint folder; a typed outcome out. The one cell runner: grid cells
(harness/experiment.py), `eval` (no optimizer: the prompt scored as is) and tuning trials (scored on val).

The optimizer receives an OptimizationTask built from the train and validation splits only; the final split
is loaded after `optimize` returns, so no optimizer can see it.

Budgets: the optimizer runs on a child ledger capped by `budget_per_cell` (the same for every method); test
scoring runs on a ledger of its own, so it always runs. A resumed cell is charged for the work it restores:
the cell ledger's totals are saved in its checkpoint folder after every candidate and charged again when the
cell resumes (work restored from a method's journal is not paid again, but it is counted).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from harness.benchmarks.base import Benchmark, Example
from harness.evaluator import EvalResult, Evaluator
from harness.files import write_atomic
from harness.llm.session import LLMs
from harness.llm.usage import Budget, Ledger, Usage
from harness.optimizer import Callbacks, Candidate, OptimizationTask, Optimizer, OptimizeResult, RunContext

USAGE_FILE = "usage.json"  # the ledger's totals, beside a cell's (or a stage's) checkpoints


@dataclass
class CellOutcome:
    result: OptimizeResult
    test: EvalResult
    initial: EvalResult
    usage: dict[str, dict[str, float]]  # the optimizer's (cell ledger) summary
    test_usage: dict[str, dict[str, float]]
    wall_s: float
    restored: dict[str, float]  # what the ledger was charged on resume for work done before
    ledger: Ledger | None = None  # the optimizer's ledger (snapshot() for every reply it used)
    n_final: int = 0  # examples scored at the end

    @property
    def test_accuracy(self) -> float:
        return self.test.accuracy


def saved_usage(folder: Path) -> Usage | None:
    p = folder / USAGE_FILE
    if not p.is_file():
        return None
    data = json.loads(p.read_text(encoding="utf-8"))
    return Usage(**{f.name: data[f.name] for f in fields(Usage) if f.name in data})


def save_usage(folder: Path, ledger: Ledger) -> None:
    write_atomic(folder / USAGE_FILE, json.dumps(asdict(ledger.total)))


def resumable_ledger(parent: Ledger, budget: Budget | None, folder: Path) -> tuple[Ledger, dict[str, float]]:
    """A child ledger for work checkpointed in `folder`, charged with what that work spent before."""
    led = parent.child(budget)
    old = saved_usage(folder)
    if old is None:
        return led, {}
    led.charge("restored", old)
    return led, {"evaluations": old.evaluations, "requests": old.requests, "tokens": old.tokens, "usd": old.usd}


def make_task(benchmark: Benchmark, seed: int, evaluator: Evaluator, initial_prompt: str = "") -> OptimizationTask:
    """The optimizer's view of a benchmark: train and validation data, never test."""
    return OptimizationTask(name=benchmark.name, benchmark=benchmark, train=benchmark.load("train", seed),
                            val=benchmark.load("val", seed), evaluator=evaluator, initial_prompt=initial_prompt)


def run_cell(opt: Optimizer | None, bench: Benchmark, seed: int, *, llms: LLMs,
             final: Callable[[], list[Example]], budget: Budget | None = None, initial_prompt: str = "",
             make_context: Callable[[Any], RunContext] | None = None, callbacks: Callbacks | None = None,
             checkpoint_dir: Path | None = None, score_initial: bool = True,
             show_progress: bool = False) -> CellOutcome:
    """Run one cell: `opt` on bench's train/val under `budget`, then the best prompt (and, with score_initial,
    the initial one) scored on `final()` (the test split for grid cells, val for tuning trials), loaded only
    after optimize returns and scored on a ledger of its own. Without an optimizer (`eval`) the initial
    prompt is scored as is. `llms` gives the run's task/prompt clients and ledger; `make_context(task_llm)`
    the RunContext, bound to the cell's task client so pool tasks spend its budget."""
    t0 = time.monotonic()
    if checkpoint_dir is not None:
        cell_ledger, restored = resumable_ledger(llms.ledger, budget, checkpoint_dir)
    else:
        cell_ledger, restored = llms.ledger.child(budget), {}
    final_ledger = llms.ledger.child()
    final_llm = llms.task.with_ledger(final_ledger)
    cb = callbacks or Callbacks()

    def candidate(c: Candidate) -> None:
        if checkpoint_dir is not None:
            save_usage(checkpoint_dir, cell_ledger)
        cb.candidate(c)

    if opt is None:
        start = Candidate("initial", initial_prompt, None, 0)
        result, score_initial = OptimizeResult(start, [start]), False
    else:
        task_llm = llms.task.with_ledger(cell_ledger)
        prompt_llm = llms.prompt.with_ledger(cell_ledger) if llms.prompt is not None else None
        task = make_task(bench, seed, Evaluator(bench, task_llm, seed=seed), initial_prompt)
        result = opt.optimize(task, prompt_llm, seed=seed, checkpoint_dir=checkpoint_dir,
                              context=make_context(task_llm) if make_context else None,
                              callbacks=Callbacks(candidate, cb.on_generation_end, cb.should_stop))
        if checkpoint_dir is not None:
            save_usage(checkpoint_dir, cell_ledger)
    examples = final()
    label = f"{bench.name} seed {seed} ({len(examples)} examples)" if opt is None else f"{bench.name} " + (
        "test" if score_initial else "val")
    best = Evaluator(bench, final_llm, seed=seed, show_progress=show_progress).evaluate(
        result.best.prompt, examples, label=label)
    initial = (Evaluator(bench, final_llm, seed=seed).evaluate(initial_prompt, examples, label="test: initial prompt")
               if score_initial else EvalResult())
    return CellOutcome(result, best, initial, cell_ledger.summary(), final_ledger.summary(),
                       round(time.monotonic() - t0, 1), restored, cell_ledger, len(examples))
