"""The evaluator: score a system prompt on examples through the LLM layer.

Requests for one batch run concurrently (bounded by the endpoint's limit) with the system
prompt first and constant, so servers reuse the prefix; the response cache means a prompt
evaluated before is not paid for again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from harness.aio import run_sync
from harness.benchmarks.base import Benchmark, Example, Score
from harness.llm.client import ChatResult, LLMClient
from harness.progress import progress_bar
from harness.seeds import derive_seed


@dataclass(frozen=True)
class Record:
    example_id: str
    response: str  # the last attempt's reply (the correct one when any is)
    score: float
    correct: bool
    feedback: str
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    truncated: bool = False  # the last reply stopped at the token cap
    extracted: Any = None  # the answer parsed from the reply (None: unparseable)
    reason: str = ""  # the scorer's short reason for the verdict


def _plain(value: Any) -> Any:
    """The extracted answer as JSON-friendly data (tuples become lists, anything else its repr)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


CUT_OFF = " (The reply was cut off at the token cap: it ran too long.)"


@dataclass
class _Acc:
    """What the attempts at one example have added up to so far."""

    text: str = ""
    score: Score | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = True
    truncated: bool = False
    scores: list[Score] = field(default_factory=list)  # every attempt's own score, in order

    def add(self, reply: ChatResult, score: Score, combined: Score | None = None) -> None:
        """One more attempt; `combined` is the verdict over all attempts (pass@k), default this one."""
        self.scores.append(score)
        self.text, self.attempts = reply.text, self.attempts + 1
        self.score = combined if combined is not None else score
        self.truncated = reply.finish_reason == "length"
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.cached = self.cached and reply.cached

    def record(self, example_id: str) -> Record:
        assert self.score is not None
        feedback = self.score.feedback + (CUT_OFF if self.truncated else "")
        return Record(example_id, self.text, self.score.value, self.score.correct, feedback,
                      self.attempts, self.prompt_tokens, self.completion_tokens, self.cached, self.truncated,
                      _plain(self.score.extracted), self.score.reason)


@dataclass
class EvalResult:
    records: list[Record] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return sum(r.score for r in self.records) / len(self.records) if self.records else 0.0

    @property
    def tokens(self) -> int:
        return sum(r.prompt_tokens + r.completion_tokens for r in self.records)


class Evaluator:
    def __init__(self, benchmark: Benchmark, llm: LLMClient, *, seed: int | None = 0,
                 max_tokens: int | None = None, show_progress: bool = False) -> None:
        self.benchmark = benchmark
        self.llm = llm
        self.seed = seed
        # The reply cap: explicit, else the one the config set for this benchmark (`reply_cap`, set by the
        # runner from the benchmark entry or llm.task.max_tokens), else the tighter of the benchmark's default
        # and the endpoint's.
        caps = [c for c in (benchmark.max_tokens, llm.endpoint.max_tokens) if c]
        self.max_tokens = max_tokens or getattr(benchmark, "reply_cap", None) or (min(caps) if caps else None)
        self.show_progress = show_progress
        self.calls = 0  # evaluate() calls, for comparable budgets across optimizers

    async def evaluate_async(self, system_prompt: str, examples: list[Example],
                             label: str = "evaluating") -> EvalResult:
        """Score every example; pass@k benchmarks retry the wrong ones, up to k rounds."""
        self.calls += 1
        self.llm.ledger.start_evaluations(self.llm.role, len(examples))
        k = max(1, self.benchmark.attempts)
        state = {i: _Acc() for i in range(len(examples))}
        pending = list(range(len(examples)))
        with progress_bar(label, total=len(examples), enabled=self.show_progress) as advance:
            for sample in range(k):
                replies = await asyncio.gather(*(self._ask(system_prompt, examples[i], sample, k) for i in pending))
                scores = await asyncio.to_thread(self.benchmark.score_many, [examples[i] for i in pending],
                                                 [r.text for r in replies])
                still = []
                for i, reply, score in zip(pending, replies, scores, strict=True):
                    combined = self.benchmark.combine_attempts(examples[i], [*state[i].scores, score])
                    state[i].add(reply, score, combined)
                    if combined.correct or sample == k - 1:
                        advance()
                    else:
                        still.append(i)
                pending = still
                if not pending:
                    break
        return EvalResult([state[i].record(ex.id) for i, ex in enumerate(examples)])

    async def _ask(self, system_prompt: str, ex: Example, sample: int, k: int) -> ChatResult:
        # Later attempts of pass@k need sampling to differ: a sampling temperature and a seed of their own (an
        # endpoint that honours `seed` would otherwise return the same reply k times); the first attempt is the
        # endpoint's default.
        temperature = None if sample == 0 else max(0.7, self.llm.endpoint.temperature)
        seed = self.seed if sample == 0 or self.seed is None else derive_seed(self.seed, "attempt", sample)
        return await self.llm.chat(self.benchmark.to_messages(system_prompt, ex), max_tokens=self.max_tokens,
                                   seed=seed, sample=sample, temperature=temperature)

    def evaluate(self, system_prompt: str, examples: list[Example], label: str = "evaluating") -> EvalResult:
        """Sync entry point (runs on the shared harness loop)."""
        return run_sync(self.evaluate_async(system_prompt, examples, label))
