"""Every baseline on the embedded local models, MBPP in the Docker sandbox, one tiny shared budget (slow).

Prints, per method, the initial and final test accuracy and what the cell spent. The numbers come from a
handful of examples and a 0.5B model: they show the machinery working end to end, not a measured effect.
"""

from __future__ import annotations

import json

import pytest

from harness.benchmarks import get_benchmark
from harness.cell import run_cell
from harness.config import CacheConfig, EndpointConfig, LLMConfig
from harness.evaluator import Evaluator
from harness.llm.session import open_llms
from harness.llm.usage import Budget
from harness.methods import make_optimizer

pytest_plugins = ["tests.sandbox_fixtures"]  # the session-wide Docker sandbox

INITIAL = "Write the Python function."
BUDGET = 16  # example evaluations per method
TINY = {
    "manual-cot": {"minibatch": 4, "val_size": 4},
    "gepa": {"max_metric_calls": 10, "val_size": 3, "reflection_minibatch_size": 2, "agent_max_tokens": 200},
    "textgrad": {"iterations": 1, "minibatch": 2, "val_size": 4, "agent_max_tokens": 200},
    "espl": {"steps": 2, "batch_size": 3, "programs_per_step": 2, "critique_problems": 1, "agent_max_tokens": 200},
    "metaspo": {"iterations": 1, "system_candidates": 1, "user_candidates": 1, "user_top_k": 1, "train_size": 3,
                "agent_max_tokens": 200},
}


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.local_model
def test_every_baseline_on_the_local_models(tmp_path, docker_sandbox):
    cfg = LLMConfig(task=EndpointConfig(local_model="qwen2.5-coder-0.5b", max_tokens=256),
                    prompt=EndpointConfig(local_model="qwen2.5-coder-0.5b", temperature=0.7, max_tokens=200),
                    cache=CacheConfig(path=str(tmp_path / "cache.sqlite")))
    bench = get_benchmark("mbpp", sandbox=docker_sandbox, n_train=20, n_val=4, n_test=4)
    rows = []
    with open_llms(cfg) as llms:
        test = bench.load("test", 0)[:4]
        initial = Evaluator(bench, llms.task, seed=0).evaluate(INITIAL, test).accuracy
        for method, settings in TINY.items():
            cell = run_cell(make_optimizer(method, settings), bench, 0, llms=llms,
                            budget=Budget(max_evaluations=BUDGET), final=lambda: test, initial_prompt=INITIAL,
                            checkpoint_dir=tmp_path / method, score_initial=False)
            led, spent = cell.ledger, cell.result.extra["spent"]
            assert led.total.evaluations <= BUDGET and spent["evaluations"] == led.total.evaluations
            assert cell.result.best.prompt and 0.0 <= cell.test_accuracy <= 1.0
            rows.append({"method": method, "initial_test": initial, "final_test": cell.test_accuracy,
                         "stopped": cell.result.extra["stopped"], "requests": spent["requests"],
                         "tokens": spent["tokens"], "usd": spent["usd"], "evaluations": spent["evaluations"]})
    print("\n" + "\n".join(json.dumps(r) for r in rows))
