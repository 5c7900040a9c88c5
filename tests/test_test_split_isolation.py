"""The test split never reaches an optimizer: the cell runner loads it only after optimize() returns."""

from __future__ import annotations

from harness.benchmarks import get_benchmark
from harness.cell import run_cell
from harness.config import EndpointConfig
from harness.llm.client import LLMClient
from harness.llm.session import LLMs
from harness.llm.usage import Ledger
from harness.optimizer import Candidate, OptimizeResult
from tests.loopback import LoopbackServer


class Snoop:
    """An optimizer that tries every way it has to reach data, and remembers what it saw."""

    name = "snoop"

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.seen: set[str] = set()

    def optimize(self, task, prompt_llm, *, seed, callbacks=None, on_candidate=None, checkpoint_dir=None,
                 context=None):
        self.log.append("optimize")
        for split in (task.train, task.val):
            self.seen |= {e.id for e in split}
            task.evaluator.evaluate("snoop", split[:3])
        self.seen |= {r.example_id for r in task.evaluator.evaluate("snoop", task.train[:2]).records}
        best = Candidate("c0", "best prompt", None, 0)
        return OptimizeResult(best, [best])


def test_optimizer_sees_train_and_val_only():
    bench = get_benchmark("gpqa")
    log: list[str] = []
    original_load = bench.load

    def load(split, seed):
        log.append(split)
        return original_load(split, seed)

    bench.load = load  # type: ignore[method-assign]
    with LoopbackServer(reply=lambda body: "Answer: A") as srv:
        llm = LLMClient(EndpointConfig(base_url=srv.url, model="m"), role="task")
        snoop = Snoop(log)
        cell = run_cell(snoop, bench, 0, llms=LLMs(llm, llm, Ledger(), None), final=lambda: bench.load("test", 0)[:5],
                        score_initial=False)
    assert log == ["train", "val", "optimize", "test"]
    test_ids = {e.id for e in original_load("test", 0)}
    assert snoop.seen and not snoop.seen & test_ids
    assert {r.example_id for r in cell.test.records} <= test_ids and len(cell.test.records) == 5
    # the optimizer's 3 evaluation calls sent 8 requests; the final test evaluation sent 5 more
    assert len(srv.requests) == 8 + 5
