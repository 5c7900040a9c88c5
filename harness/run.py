"""One cell of an experiment: optimize a prompt on train/val, then score the best one on test.

The optimizer receives an OptimizationTask built from the train and validation splits only;
the test split is loaded after `optimize` returns, so no optimizer can ever see it. Test scoring
may use its own client (`test_llm`, on a ledger of its own), so it runs even when the optimizer
spent its whole budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.benchmarks.base import Benchmark, Example
from harness.evaluator import EvalResult, Evaluator
from harness.llm.client import LLMClient
from harness.optimizer import CandidateSink, OptimizationTask, Optimizer, OptimizeResult, RunContext


@dataclass
class CellResult:
    method: str
    benchmark: str
    seed: int
    result: OptimizeResult
    test: EvalResult

    @property
    def test_accuracy(self) -> float:
        return self.test.accuracy


def load_test_split(benchmark: Benchmark, seed: int, limit: int | None = None) -> list[Example]:
    """The test split (its first `limit` examples when set), for final scoring only."""
    test = benchmark.load("test", seed)
    return test[:limit] if limit else test


def make_task(benchmark: Benchmark, seed: int, evaluator: Evaluator, initial_prompt: str = "") -> OptimizationTask:
    """The optimizer's view of a benchmark: train and validation data, never test."""
    return OptimizationTask(name=benchmark.name, benchmark=benchmark, train=benchmark.load("train", seed),
                            val=benchmark.load("val", seed), evaluator=evaluator, initial_prompt=initial_prompt)


def run_cell(optimizer: Optimizer, benchmark: Benchmark, seed: int, task_llm: LLMClient, prompt_llm: LLMClient,
             *, initial_prompt: str = "", n_test: int | None = None, checkpoint_dir: Path | None = None,
             on_candidate: CandidateSink | None = None, context: RunContext | None = None,
             test_llm: LLMClient | None = None, show_progress: bool = True) -> CellResult:
    evaluator = Evaluator(benchmark, task_llm, seed=seed)
    task = make_task(benchmark, seed, evaluator, initial_prompt)
    kwargs = {"context": context} if context is not None else {}
    result = optimizer.optimize(task, prompt_llm, seed=seed, on_candidate=on_candidate,
                                checkpoint_dir=checkpoint_dir, **kwargs)
    test = load_test_split(benchmark, seed, n_test)
    final = Evaluator(benchmark, test_llm or task_llm, seed=seed, show_progress=show_progress)
    return CellResult(optimizer.name, benchmark.name, seed, result,
                      final.evaluate(result.best.prompt, test, label=f"{benchmark.name} test"))
