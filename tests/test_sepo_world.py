"""A scripted world for the SePO tests (no tests here): synthetic tasks, a keyword-driven task model and
a deterministic prompt agent behind a LoopbackServer. Scripted replies are fixtures, never results.

Task model: answers example i of category c correctly iff its system prompt holds the line "Use KW-C.".
Prompt agent: for task prompts, adds 1 + (number of "RULE-" lines in its own system prompt) keywords,
preferring the categories of failures in the feedback; one proposal in four (seed % 4 == 0) instead drops a
keyword (a worse child). For its own prompt (self-rewrite), appends a line "RULE-<seed>".

Run as `python -m tests.test_sepo_world URL CACHE CHECKPOINT OUT` it is the worker of the kill-and-resume test.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, ClassVar

from harness.benchmarks.base import Benchmark, Example, Score
from harness.config import EndpointConfig
from harness.evaluator import Evaluator
from harness.llm.cache import ResponseCache
from harness.llm.client import LLMClient
from harness.llm.usage import Budget, Ledger
from harness.optimizer import OptimizationTask

ALL_CATS = ["alpha", "beta", "gamma", "delta", "eta", "theta", "iota", "kappa", "lam"]
INITIAL = "You answer short questions."


def kw(cat: str) -> str:
    return f"Use KW-{cat.upper()}."


class SynthBench(Benchmark):
    name = "sepo-synth"
    description = "TARGET: answer each item with its code."
    cats: ClassVar[list[str]] = ["alpha", "beta", "gamma", "delta"]
    n: ClassVar[dict[str, int]] = {"train": 24, "val": 8, "test": 8}

    def load(self, split: str, seed: int) -> list[Example]:
        return [Example(f"{self.name}-{split}-{i}", f"[{self.cats[i % len(self.cats)]}] item {i}", f"A{i}")
                for i in range(self.n[split])]

    def score(self, example: Example, response: str) -> Score:
        ok = response.strip() == f"ANSWER {example.answer}"
        return Score(1.0 if ok else 0.0, ok, "correct" if ok else f"expected ANSWER {example.answer}")


class PoolA(SynthBench):
    name = "sepo-pool-a"
    description = "POOL-A: answer each item with its code."
    cats: ClassVar[list[str]] = ["eta", "theta", "iota"]


class PoolB(SynthBench):
    name = "sepo-pool-b"
    description = "POOL-B: answer each item with its code."
    cats: ClassVar[list[str]] = ["kappa", "lam", "eta"]


class Shuffled(SynthBench):
    """Splits reshuffled per seed (like AIME and GPQA): train of one seed overlaps test of another."""

    name = "sepo-shuffled"
    description = "SHUFFLED: answer each item with its code."
    cats: ClassVar[list[str]] = ["alpha", "eta"]

    def load(self, split: str, seed: int) -> list[Example]:
        import random

        ids = list(range(60))
        random.Random(seed).shuffle(ids)
        part = {"train": ids[:24], "val": ids[24:32], "test": ids[32:]}[split]
        return [Example(f"{self.name}-{i}", f"[{self.cats[i % 2]}] item {i}", f"A{i}") for i in part]


class HeldOut(SynthBench):
    name = "sepo-held-out"
    description = "HELDOUT: answer each item with its code."
    cats: ClassVar[list[str]] = ["beta", "iota", "kappa"]


def task_reply(body: dict[str, Any]) -> str:
    msgs = body["messages"]
    system = msgs[0]["content"] if msgs[0]["role"] == "system" else ""
    m = re.match(r"\[(\w+)\] item (\d+)", msgs[-1]["content"])
    assert m, msgs[-1]["content"]
    return f"ANSWER A{m.group(2)}" if kw(m.group(1)) in system else "ANSWER unknown"


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def request_text(body: dict[str, Any]) -> str:
    """The prompt agent's request (the first user message; a retry appends the reply and a reason)."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def agent_reply(body: dict[str, Any]) -> str:
    system, user = body["messages"][0]["content"], request_text(body)
    seed = int(body.get("seed") or 0)
    parent = _between(user, "<parent_prompt>\n", "\n</parent_prompt>")
    parent = "" if parent.startswith("(empty:") else parent
    if "# Rewrite your own system prompt" in user:
        return f"I will add a rule.\n<agent_prompt>{parent}\nRULE-{seed % 1000}</agent_prompt>"
    present = [c for c in ALL_CATS if kw(c) in parent]
    if seed % 4 == 0 and present:
        return "Simplify.\n<prompt>" + parent.replace("\n" + kw(present[seed % len(present)]), "") + "</prompt>"
    failing = re.findall(r"FAILURE.*?\nQuestion:\n\[(\w+)\]", user)
    missing = [c for c in ALL_CATS if c not in present]
    pref = [c for c in missing if c in failing] or missing
    n_add = 1 + system.count("RULE-")
    add = [pref[(seed + j) % len(pref)] for j in range(min(n_add, len(pref)))] if pref else []
    lines = [parent] + [kw(c) for c in dict.fromkeys(add)]
    return "Analysis: add keywords.\n<prompt>" + "\n".join(lines) + "</prompt>"


def reply(body: dict[str, Any]) -> str:
    return task_reply(body) if body["model"] == "task" else agent_reply(body)


def clients(url: str, cache_path: str | Path, *, budget: Budget | None = None,
            task_concurrency: int = 4) -> tuple[LLMClient, LLMClient, Ledger]:
    ledger = Ledger(budget or Budget())
    cache = ResponseCache(cache_path)
    task = LLMClient(EndpointConfig(base_url=url, model="task", backoff_base_s=0.01, max_tokens=16,
                                    max_concurrency=task_concurrency), role="task", ledger=ledger, cache=cache)
    prompt = LLMClient(EndpointConfig(base_url=url, model="prompt", backoff_base_s=0.01, max_tokens=256),
                       role="prompt", ledger=ledger, cache=cache)
    return task, prompt, ledger


def make_task(bench_cls: type[SynthBench], task_llm: LLMClient, seed: int = 0) -> OptimizationTask:
    b = bench_cls()
    return OptimizationTask(b.name, b, b.load("train", seed), b.load("val", seed), Evaluator(b, task_llm),
                            INITIAL)


def archive_view(entries: list[dict[str, Any]]) -> list[tuple]:
    return [(e["id"], e["text"], e["parent_id"], e["generation"], e["score"], e["admitted"]) for e in entries]


def _worker(url: str, cache: str, checkpoint: str, out: str) -> None:
    from sepo.agent import PromptAgent, initial_prompt_agent
    from sepo.evolve import EvolveSettings
    from sepo.stages import finetune

    task_llm, prompt_llm, ledger = clients(url, cache, task_concurrency=2)
    settings = EvolveSettings(generations=5, children=2, minibatch=8)
    res = finetune(make_task(SynthBench, task_llm), PromptAgent(prompt_llm, initial_prompt_agent()), settings,
                   seed=3, checkpoint=Path(checkpoint))
    Path(out).write_text(json.dumps({"archive": [e.to_dict() for e in res.archive.entries],
                                     "new": len(res.new), "usage": ledger.summary()}))


if __name__ == "__main__":
    _worker(*sys.argv[1:5])
