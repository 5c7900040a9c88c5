"""The evaluator over the loopback server: scores, pass@k, concurrency, cache reuse."""

from __future__ import annotations

from harness.benchmarks.base import Benchmark, Example, Score
from harness.config import EndpointConfig
from harness.evaluator import Evaluator
from harness.llm.cache import ResponseCache
from harness.llm.client import LLMClient
from tests.loopback import LoopbackServer


class Parity(Benchmark):
    """Answer 'even' or 'odd'; a made-up task whose scoring is trivially checkable."""

    description = "Say whether the number is even or odd."

    def __init__(self, attempts: int = 1) -> None:
        super().__init__()
        self.attempts = attempts  # type: ignore[misc]

    def load(self, split, seed):
        return [Example(str(i), f"number {i}", "even" if i % 2 == 0 else "odd") for i in range(8)]

    def score(self, example, response):
        ok = response.strip() == example.answer
        return Score(float(ok), ok, "correct" if ok else f"expected {example.answer}, got {response!r}")


def parity_model(body):
    """Right only when told to be careful; with sampling on (pass@k retries) always right."""
    n = int(body["messages"][-1]["content"].split()[-1])
    careful = "careful" in body["messages"][0]["content"] or body["temperature"] > 0
    return ("even" if n % 2 == 0 else "odd") if careful else "even"


def test_scores_follow_the_system_prompt(tmp_path):
    with LoopbackServer(reply=parity_model, latency_s=0.02) as srv:
        llm = LLMClient(EndpointConfig(base_url=srv.url, model="m", max_concurrency=4), role="task",
                        cache=ResponseCache(tmp_path / "c.sqlite"))
        ev = Evaluator(Parity(), llm)
        ex = Parity().load("train", 0)
        sloppy, careful = ev.evaluate("be quick", ex), ev.evaluate("be careful", ex)
        assert sloppy.accuracy == 0.5 and careful.accuracy == 1.0
        assert {r.feedback for r in sloppy.records if not r.correct} == {"expected odd, got 'even'"}
        assert srv.max_in_flight == 4  # a batch runs concurrently
        n = len(srv.requests)
        again = ev.evaluate("be careful", ex)  # evaluated before: not paid again
        assert len(srv.requests) == n and all(r.cached for r in again.records)
        assert ev.calls == 3


def test_pass_at_k_retries_only_wrong_examples():
    with LoopbackServer(reply=parity_model) as srv:
        llm = LLMClient(EndpointConfig(base_url=srv.url, model="m"), role="task")
        res = Evaluator(Parity(attempts=3), llm).evaluate("be quick", Parity().load("train", 0))
        assert res.accuracy == 1.0
        assert [r.attempts for r in res.records] == [1, 2] * 4
        assert len(srv.requests) == 12  # 8 first attempts + 4 retries of the odd ones


def test_a_reply_cut_off_at_the_cap_is_flagged_in_feedback():
    with LoopbackServer(reply=lambda body: "let me think " * 50 + "even") as srv:
        llm = LLMClient(EndpointConfig(base_url=srv.url, model="m", max_tokens=20), role="task")
        res = Evaluator(Parity(), llm).evaluate("be quick", Parity().load("train", 0)[:2])
        assert all(r.truncated and "cut off at the token cap" in r.feedback for r in res.records)
        assert not any(r.correct for r in res.records)
        llm = LLMClient(EndpointConfig(base_url=srv.url, model="m", max_tokens=500), role="task")
        res = Evaluator(Parity(), llm).evaluate("be quick", Parity().load("train", 0)[:1])
        assert not res.records[0].truncated and "cut off" not in res.records[0].feedback
