"""A scripted world for the Python API and MLflow adapter tests (no tests here), behind a LoopbackServer.
Scripted replies are fixtures, never results.

Task model ("task"): answers "[cat] item i" with "ANSWER Ai" iff the line "Use KW-CAT." is in its messages.
Prompt agent ("prompt"): adds the keywords of the categories its request shows, in the format each method
asks for (SePO's <prompt>, GEPA's ``` block, MLflow's metaprompt JSON). `Agent.mode` bends its rewrites of a
template: "drop" loses {{question}} (and adds every keyword, so the rewrite would score best), "rename" writes
{{query}} until a retry says the rewrite was refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

CATS = ["alpha", "beta", "gamma", "delta"]
ITEM = re.compile(r"\[(\w+)\] item (\d+)")
SEED = "You answer short questions."


def kw(cat: str) -> str:
    return f"Use KW-{cat.upper()}."


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"question": f"[{CATS[i % len(CATS)]}] item {i}", "answer": f"A{i}"} for i in range(start, start + n)]


def score_fn(row: dict[str, Any], reply: str) -> tuple[float, str]:
    ok = reply.strip() == f"ANSWER {row['answer']}"
    return (1.0, "correct") if ok else (0.0, f"expected ANSWER {row['answer']}; the prompt lacks this category's rule")


def task_reply(body: dict[str, Any]) -> str:
    text = "\n".join(m["content"] for m in body["messages"])
    m = ITEM.search(body["messages"][-1]["content"])
    if m is None:
        return "ANSWER none"
    return f"ANSWER A{m.group(2)}" if kw(m.group(1)) in text else "ANSWER unknown"


def add_keywords(prompt: str, cats: list[str]) -> str:
    lines = prompt.rstrip().split("\n")
    tail = [ln for ln in lines if "{{" in ln]  # template variables stay last
    head = [ln for ln in lines if "{{" not in ln] + [kw(c) for c in cats if kw(c) not in prompt]
    return "\n".join(head + tail)


class Agent:
    def __init__(self, mode: str = "") -> None:
        self.mode = mode
        self.retried = 0

    def bend(self, text: str, request: str) -> str:
        if self.mode == "drop":
            return add_keywords(text, CATS).replace("{{question}}", "").strip()
        if self.mode == "rename":
            if "was refused" in request:
                self.retried += 1
                return text
            return text.replace("{{question}}", "{{query}}")
        return text

    def __call__(self, body: dict[str, Any]) -> str:
        if body["model"] == "task":
            return task_reply(body)
        msgs = body["messages"]
        user = next(m["content"] for m in msgs if m["role"] == "user")
        last = msgs[-1]["content"]
        cats = list(dict.fromkeys(m.group(1) for m in ITEM.finditer(user)))
        if "<parent_prompt>" in user:  # SePO
            parent = user.split("<parent_prompt>\n", 1)[1].split("\n</parent_prompt>", 1)[0]
            if "# Rewrite your own system prompt" in user:
                return f"<agent_prompt>{parent}\nRULE</agent_prompt>"
            return "<prompt>" + self.bend(add_keywords(parent, cats), last) + "</prompt>"
        if "CURRENT PROMPTS" in user:  # MLflow's MetaPromptOptimizer
            names = re.findall(r"Prompt name: (\S+)", user) or ["system_prompt"]
            cur = user.split("Template:", 1)[1].split("\n\n", 1)[0].strip() if "Template:" in user else SEED
            return json.dumps({n: self.bend(add_keywords(cur, cats), last) for n in names})
        if "```" in user:  # GEPA's reflection template
            cur = user.split("```", 2)[1].strip()
            return "```\n" + self.bend(add_keywords(cur, cats), last) + "\n```"
        return "No suggestion."
