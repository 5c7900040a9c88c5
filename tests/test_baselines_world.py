"""A scripted world for the baseline tests (no tests here): synthetic tasks, a keyword-driven task model and
scripted proposers for each baseline, behind a LoopbackServer. Scripted replies are fixtures, never results.

Task model: answers item i of category c correctly iff the line "Use KW-C." appears in its system prompt or
in the user message. Proposers add the keywords of the categories they see failing:

- TextGrad: the backward engine names "Use KW-C." for the categories in its context; TGD adds the named
  keywords to the variable;
- MetaSPO: analyses list the failing categories; a user-prompt rewrite adds the first one's keyword (and keeps
  {question}), a system rewrite all of them, except that one whose seed is divisible by 3 drops every keyword
  instead (a worse proposal);
- E-SPL: a critique adds a principle "Use KW-C." for the critiqued problem; the batch update keeps the
  candidates; crossover adds the keywords of the questions set B won;
- GEPA: the reflection adds the keywords of the failing inputs to the instruction in its ``` block.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from harness.benchmarks.base import Benchmark, Example, Score
from harness.config import EndpointConfig
from harness.evaluator import Evaluator
from harness.llm.cache import ResponseCache
from harness.llm.client import LLMClient
from harness.llm.usage import Budget, Ledger
from harness.optimizer import OptimizationTask

INITIAL = "You answer short questions."
ALL_CATS = ["alpha", "beta", "gamma", "delta", "eta", "theta", "iota", "kappa"]
ITEM = re.compile(r"\[(\w+)\] item (\d+)")


def kw(cat: str) -> str:
    return f"Use KW-{cat.upper()}."


class WorldBench(Benchmark):
    name = "bl-target"
    description = "TARGET: answer each item with its code."
    cats: ClassVar[list[str]] = ["alpha", "beta", "gamma", "delta"]
    n: ClassVar[dict[str, int]] = {"train": 24, "val": 8, "test": 8}

    def load(self, split: str, seed: int) -> list[Example]:
        return [Example(f"{self.name}-{split}-{i}", f"[{self.cats[i % len(self.cats)]}] item {i}", f"A{i}")
                for i in range(self.n[split])]

    def score(self, example: Example, response: str) -> Score:
        ok = response.strip() == f"ANSWER {example.answer}"
        return Score(1.0 if ok else 0.0, ok, "correct" if ok else f"expected ANSWER {example.answer}",
                     response.strip(), "correct" if ok else "wrong answer")


class PoolA(WorldBench):
    name = "bl-pool-a"
    description = "POOL-A: answer each item with its code."
    cats: ClassVar[list[str]] = ["eta", "theta", "alpha"]


class PoolB(WorldBench):
    name = "bl-pool-b"
    description = "POOL-B: answer each item with its code."
    cats: ClassVar[list[str]] = ["iota", "kappa", "beta"]


def missing_keywords(text: str) -> list[str]:
    """Categories of the items in `text`, in order of appearance."""
    return list(dict.fromkeys(m.group(1) for m in ITEM.finditer(text)))


def add_keywords(prompt: str, cats: list[str]) -> str:
    lines = [prompt.strip()] if prompt.strip() else []
    lines += [kw(c) for c in cats if kw(c) not in prompt]
    return "\n".join(lines)


def task_reply(body: dict[str, Any]) -> str:
    msgs = body["messages"]
    text = "\n".join(m["content"] for m in msgs)
    m = ITEM.search(msgs[-1]["content"])
    assert m, msgs[-1]["content"]
    return f"ANSWER A{m.group(2)}" if kw(m.group(1)) in text else "ANSWER unknown"


def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def failing(text: str) -> list[str]:
    """Categories of items whose shown response was wrong (anything but a correct ANSWER line)."""
    cats = []
    for m in re.finditer(r"\[(\w+)\] item (\d+)(.{0,400}?)ANSWER (\S+)", text, re.DOTALL):
        if m.group(4) != f"A{m.group(2)}":
            cats.append(m.group(1))
    return list(dict.fromkeys(cats)) or missing_keywords(text)


def prompt_reply(body: dict[str, Any]) -> str:
    msgs = body["messages"]
    system = msgs[0]["content"] if msgs[0]["role"] == "system" else ""
    user = msgs[-1]["content"]
    seed = int(body.get("seed") or 0)
    # TextGrad
    if "You are the gradient (feedback) engine" in system:
        return " ".join(f"Adding the line '{kw(c)}' to the system prompt would fix this."
                        for c in missing_keywords(user)) or "No feedback."
    if "<IMPROVED_VARIABLE>" in system:
        var = _between(user, "<VARIABLE>", "</VARIABLE>").strip()
        named = [c for c in ALL_CATS if kw(c) in user.split("</VARIABLE>", 1)[1]]
        return f"<IMPROVED_VARIABLE>{add_keywords(var, named)}</IMPROVED_VARIABLE>"
    # MetaSPO
    if system.startswith("You improve the user prompt") and "<Analysis>" in user:
        return f"<Analysis>missing: {', '.join(failing(user))}</Analysis>"
    if system.startswith("You improve the user prompt"):
        cur = _between(user, "## Current user prompt\n", "\n\n## Wrong responses")
        cats = re.findall(r"missing: ([\w, ]+)", user)
        names = [c.strip() for c in cats[0].split(",")][:1] if cats else []  # one keyword per rewrite
        body_text = add_keywords(cur.replace("{question}", "").strip(), names)
        return f"<improved_instruction_prompt>{body_text}\n{{question}}</improved_instruction_prompt>"
    if system.startswith("You improve a language model's system prompt for many"):
        return f"<Analysis>missing: {', '.join(failing(user))}</Analysis>"
    if system.startswith("You improve a language model's system prompt"):
        cur = _between(user, "## Current system prompt\n", "\n\n## Analysis")
        if seed % 3 == 0:
            return "<improved_system_prompt>" + INITIAL + "</improved_system_prompt>"
        cats = re.findall(r"missing: ([\w, ]+)", user)
        names = [c.strip() for c in cats[0].split(",")] if cats else []
        return "<improved_system_prompt>" + add_keywords(cur, names) + "</improved_system_prompt>"
    # E-SPL
    if "<attempts>" in user:
        cats = missing_keywords(_between(user, "<problem>", "</problem>"))
        ops = [{"operation": "add", "principle": kw(c)} for c in cats]
        return "Reasoning...\n```json\n" + json.dumps(ops) + "\n```"
    if "<suggested_updates>" in user:
        return "Nothing to merge.\n```json\n[]\n```"
    if "Principle Set A" in user:
        won = user.split("did best on:", 2)[-1]
        ops = [{"operation": "add", "principle": kw(c), "evidence": "B won"} for c in missing_keywords(won)]
        return "```json\n" + json.dumps(ops) + "\n```"
    # GEPA (its default reflection template)
    if "```" in user and "instructions" in user.lower():
        cur = user.split("```", 2)[1].strip()
        return "```\n" + add_keywords(cur, failing(user)) + "\n```"
    return "I do not know."


def reply(body: dict[str, Any]) -> str:
    return task_reply(body) if body["model"] == "task" else prompt_reply(body)


def clients(url: str, cache_path: str | Path, *, budget: Budget | None = None,
            ledger: Ledger | None = None) -> tuple[LLMClient, LLMClient, Ledger]:
    ledger = ledger or Ledger(budget or Budget())
    cache = ResponseCache(cache_path)
    task = LLMClient(EndpointConfig(base_url=url, model="task", backoff_base_s=0.01, max_tokens=16,
                                    max_concurrency=4), role="task", ledger=ledger, cache=cache)
    prompt = LLMClient(EndpointConfig(base_url=url, model="prompt", backoff_base_s=0.01, max_tokens=400),
                       role="prompt", ledger=ledger, cache=cache)
    return task, prompt, ledger


def make_task(bench_cls: type[WorldBench], task_llm: LLMClient, seed: int = 0,
              initial: str = INITIAL) -> OptimizationTask:
    b = bench_cls()
    return OptimizationTask(b.name, b, b.load("train", seed), b.load("val", seed), Evaluator(b, task_llm), initial)
