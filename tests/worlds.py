"""Scripted worlds for the SePO and baseline tests (no tests here): synthetic keyword tasks, a keyword-driven
task model, and a deterministic prompt agent that answers SePO's requests and each baseline's, behind a
LoopbackServer. Scripted replies are fixtures, never results.

Task model: answers item i of category c correctly iff the line "Use KW-C." appears in its system prompt or
in the user message.

SePO's prompt agent (requests with <parent_prompt>): for task prompts, adds 1 + (number of "RULE-" lines in
its own system prompt) keywords, preferring the categories of failures in the feedback; one proposal in four
(seed % 4 == 0) instead drops a keyword (a worse child). For its own prompt (self-rewrite), appends a line
"RULE-<seed>".

The baselines' proposers add the keywords of the categories they see failing:

- TextGrad: the backward engine names "Use KW-C." for the categories in its context; TGD adds the named
  keywords to the variable;
- MetaSPO: analyses list the failing categories; a user-prompt rewrite adds the first one's keyword (and keeps
  {question}), a system rewrite all of them, except that one whose seed is divisible by 3 drops every keyword
  instead (a worse proposal);
- E-SPL: a critique adds a principle "Use KW-C." for the critiqued problem; the batch update keeps the
  candidates; crossover adds the keywords of the questions set B won;
- GEPA: the reflection adds the keywords of the failing inputs to the instruction in its ``` block.

Tasks: SePO's (SynthBench, PoolA, PoolB, Shuffled, HeldOut) and the baselines' (WorldBench, BLPoolA,
BLPoolB). Clients: `clients` (SePO's: prompt replies capped at 256 tokens) and `baseline_clients` (400).

Run as `python -m tests.worlds URL CACHE CHECKPOINT OUT` it is the worker of SePO's kill-and-resume test.
"""

from __future__ import annotations

import json
import random
import re
import sys
from dataclasses import replace
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
ITEM = re.compile(r"\[(\w+)\] item (\d+)")


def kw(cat: str) -> str:
    return f"Use KW-{cat.upper()}."


# ---- tasks -------------------------------------------------------------------------------------------

class SynthBench(Benchmark):
    """Item i of category cats[i % len(cats)]; its answer is "ANSWER A<i>". A subclass names its task `label`
    (in its description) and its categories `cats` as class keywords."""

    name = "sepo-synth"
    description = "TARGET: answer each item with its code."
    cats: ClassVar[list[str]] = ["alpha", "beta", "gamma", "delta"]
    n: ClassVar[dict[str, int]] = {"train": 24, "val": 8, "test": 8}

    def __init_subclass__(cls, label: str = "", cats: list[str] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if label:
            cls.description = f"{label}: answer each item with its code."
        if cats is not None:
            cls.cats = cats

    def load(self, split: str, seed: int) -> list[Example]:
        return [Example(f"{self.name}-{split}-{i}", f"[{self.cats[i % len(self.cats)]}] item {i}", f"A{i}")
                for i in range(self.n[split])]

    def score(self, example: Example, response: str) -> Score:
        ok = response.strip() == f"ANSWER {example.answer}"
        return Score(1.0 if ok else 0.0, ok, "correct" if ok else f"expected ANSWER {example.answer}")


class PoolA(SynthBench, label="POOL-A", cats=["eta", "theta", "iota"]):
    name = "sepo-pool-a"


class PoolB(SynthBench, label="POOL-B", cats=["kappa", "lam", "eta"]):
    name = "sepo-pool-b"


class Shuffled(SynthBench, label="SHUFFLED", cats=["alpha", "eta"]):
    """Splits reshuffled per seed (like AIME and GPQA): train of one seed overlaps test of another."""

    name = "sepo-shuffled"

    def load(self, split: str, seed: int) -> list[Example]:
        ids = list(range(60))
        random.Random(seed).shuffle(ids)
        part = {"train": ids[:24], "val": ids[24:32], "test": ids[32:]}[split]
        return [Example(f"{self.name}-{i}", f"[{self.cats[i % 2]}] item {i}", f"A{i}") for i in part]


class HeldOut(SynthBench, label="HELDOUT", cats=["beta", "iota", "kappa"]):
    name = "sepo-held-out"


class WorldBench(SynthBench):
    """The baselines' target: its scores also carry the extracted answer and a reason."""

    name = "bl-target"

    def score(self, example: Example, response: str) -> Score:
        s = super().score(example, response)
        return replace(s, extracted=response.strip(), reason="correct" if s.correct else "wrong answer")


class BLPoolA(WorldBench, label="POOL-A", cats=["eta", "theta", "alpha"]):
    name = "bl-pool-a"


class BLPoolB(WorldBench, label="POOL-B", cats=["iota", "kappa", "beta"]):
    name = "bl-pool-b"


# ---- the task model ----------------------------------------------------------------------------------

def task_reply(body: dict[str, Any]) -> str:
    msgs = body["messages"]
    text = "\n".join(m["content"] for m in msgs)
    m = ITEM.search(msgs[-1]["content"])
    assert m, msgs[-1]["content"]
    return f"ANSWER A{m.group(2)}" if kw(m.group(1)) in text else "ANSWER unknown"


# ---- the prompt agent --------------------------------------------------------------------------------

def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def request_text(body: dict[str, Any]) -> str:
    """The prompt agent's request (the first user message; a retry appends the reply and a reason)."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def sepo_reply(body: dict[str, Any]) -> str:
    system, user = body["messages"][0]["content"], request_text(body)
    seed = int(body.get("seed") or 0)
    parent = _between(user, "<parent_prompt>\n", "\n</parent_prompt>")
    parent = "" if parent.startswith("(empty:") else parent
    if "# Rewrite your own system prompt" in user:
        return f"I will add a rule.\n<agent_prompt>{parent}\nRULE-{seed % 1000}</agent_prompt>"
    present = [c for c in ALL_CATS if kw(c) in parent]
    if seed % 4 == 0 and present:
        return "Simplify.\n<prompt>" + parent.replace("\n" + kw(present[seed % len(present)]), "") + "</prompt>"
    failing_cats = re.findall(r"FAILURE.*?\nQuestion:\n\[(\w+)\]", user)
    missing = [c for c in ALL_CATS if c not in present]
    pref = [c for c in missing if c in failing_cats] or missing
    n_add = 1 + system.count("RULE-")
    add = [pref[(seed + j) % len(pref)] for j in range(min(n_add, len(pref)))] if pref else []
    lines = [parent] + [kw(c) for c in dict.fromkeys(add)]
    return "Analysis: add keywords.\n<prompt>" + "\n".join(lines) + "</prompt>"


def missing_keywords(text: str) -> list[str]:
    """Categories of the items in `text`, in order of appearance."""
    return list(dict.fromkeys(m.group(1) for m in ITEM.finditer(text)))


def add_keywords(prompt: str, cats: list[str]) -> str:
    lines = [prompt.strip()] if prompt.strip() else []
    lines += [kw(c) for c in cats if kw(c) not in prompt]
    return "\n".join(lines)


def failing(text: str) -> list[str]:
    """Categories of items whose shown response was wrong (anything but a correct ANSWER line)."""
    cats = []
    for m in re.finditer(r"\[(\w+)\] item (\d+)(.{0,400}?)ANSWER (\S+)", text, re.DOTALL):
        if m.group(4) != f"A{m.group(2)}":
            cats.append(m.group(1))
    return list(dict.fromkeys(cats)) or missing_keywords(text)


def baseline_reply(body: dict[str, Any]) -> str:
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


def prompt_reply(body: dict[str, Any]) -> str:
    """SePO's requests carry <parent_prompt>; everything else is a baseline's."""
    return sepo_reply(body) if "<parent_prompt>" in request_text(body) else baseline_reply(body)


def reply(body: dict[str, Any]) -> str:
    return task_reply(body) if body["model"] == "task" else prompt_reply(body)


# ---- clients and tasks -------------------------------------------------------------------------------

def clients(url: str, cache_path: str | Path, *, budget: Budget | None = None, ledger: Ledger | None = None,
            task_concurrency: int = 4, prompt_max_tokens: int = 256) -> tuple[LLMClient, LLMClient, Ledger]:
    ledger = ledger or Ledger(budget or Budget())
    cache = ResponseCache(cache_path)
    task = LLMClient(EndpointConfig(base_url=url, model="task", backoff_base_s=0.01, max_tokens=16,
                                    max_concurrency=task_concurrency), role="task", ledger=ledger, cache=cache)
    prompt = LLMClient(EndpointConfig(base_url=url, model="prompt", backoff_base_s=0.01,
                                      max_tokens=prompt_max_tokens), role="prompt", ledger=ledger, cache=cache)
    return task, prompt, ledger


def baseline_clients(url: str, cache_path: str | Path, *, budget: Budget | None = None,
                     ledger: Ledger | None = None) -> tuple[LLMClient, LLMClient, Ledger]:
    return clients(url, cache_path, budget=budget, ledger=ledger, prompt_max_tokens=400)


def make_task(bench_cls: type[SynthBench], task_llm: LLMClient, seed: int = 0,
              initial: str = INITIAL) -> OptimizationTask:
    b = bench_cls()
    return OptimizationTask(b.name, b, b.load("train", seed), b.load("val", seed), Evaluator(b, task_llm), initial)


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


def write_echo_task(path: Path, n: int, tag: str = "") -> Path:
    """A custom task file (JSONL) of n questions "Repeat the number i?" answered by i; `tag` prefixes them
    (several tasks in one grid)."""
    prefix = f"[{tag}] " if tag else ""
    path.write_text("".join(json.dumps({"question": f"{prefix}Repeat the number {i}?", "answer": str(i)}) + "\n"
                            for i in range(1, n + 1)))
    return path
