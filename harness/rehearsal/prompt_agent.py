"""The simulated prompt agent: recognises which method's request it got and answers in that method's format.

Recognised by content (each method's own templates; tests/test_rehearsal_world.py checks each reply parses
with the method's own parser):

    sepo-task / sepo-self    <parent_prompt> in the request; "# Rewrite your own system prompt" -> <agent_prompt>
    textgrad-gradient        textgrad's backward engine ("gradient (feedback) engine" in its system prompt)
    textgrad-update          TGD (<IMPROVED_VARIABLE> in its system prompt; the prompt is in <VARIABLE>)
    metaspo-*                analyses (<Analysis>), user-prompt rewrites (<improved_instruction_prompt>, keeps
                             {question}) and system-prompt rewrites (<improved_system_prompt>)
    espl-critique / -update / -crossover   JSON edit operations in a ```json block
    gepa-reflection          the new instruction in a ``` block
    mlflow-metaprompt        MLflow's MetaPromptOptimizer: a JSON object, prompt name -> improved template
                             (MLflow's GepaPromptOptimizer sends GEPA's reflection: gepa-reflection)

Anything else is "unknown": a generic rewrite in <prompt> tags, counted. Rewrites come from edits.edit.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from typing import Any

from harness.rehearsal import edits, features
from harness.rehearsal.task_agent import Reply, tokens

GENERIC = ("You are a careful expert. Reason step by step, verify your result, and state the final answer "
           "exactly in the format the question asks for.")
THINKING_MEDIAN = 500  # hidden reasoning tokens of a prompt-agent reply (log-normal, sigma 0.5)


def between(text: str, start: str, end: str) -> str | None:
    i = text.find(start)
    if i < 0:
        return None
    j = text.find(end, i + len(start))
    return text[i + len(start): j if j >= 0 else len(text)]


def _texts(body: dict[str, Any]) -> tuple[str, str]:
    """(system prompt, first user message): a retry appends turns after the request."""
    msgs = body.get("messages") or []
    system = "\n".join(str(m.get("content") or "") for m in msgs if m.get("role") == "system")
    user = next((str(m.get("content") or "") for m in msgs if m.get("role") == "user"), "")
    return system, user


class PromptAgent:
    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.lock = threading.Lock()

    def reply(self, body: dict[str, Any]) -> Reply:
        system, user = _texts(body)
        seen = sum(1 for m in body.get("messages") or [] if m.get("role") == "assistant")
        r = features.unit("prompt-agent", system, user, body.get("seed"), seen)
        kind, text = self.answer(system, user, r)
        with self.lock:
            self.kinds[kind] += 1
        prompt_tokens = tokens("".join(str(m.get("content") or "") for m in body.get("messages") or []))
        from statistics import NormalDist

        z = NormalDist().inv_cdf(min(0.999, max(0.001, features.unit("thinking", r))))
        completion = tokens(text) + int(THINKING_MEDIAN * 2.718281828 ** (0.5 * z))
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        if cap and completion > cap:  # cut off: the closing tag is lost
            return Reply(text[: len(text) // 2], prompt_tokens, int(cap), "length")
        return Reply(text, prompt_tokens, completion, "stop")

    def answer(self, system: str, user: str, r: float) -> tuple[str, str]:
        """(kind, reply text)."""
        bench = edits.guess_bench(user)
        if "gradient (feedback) engine" in system:
            return "textgrad-gradient", critique(user, bench)
        if "<IMPROVED_VARIABLE>" in system:
            var = (between(user, "<VARIABLE>", "</VARIABLE>") or "").strip()
            new, why = edits.edit(var, bench, r)
            text = f"The feedback suggests this change: {why}.\n<IMPROVED_VARIABLE>{new}</IMPROVED_VARIABLE>"
            return "textgrad-update", text
        if system.startswith("You improve the user prompt") or system.startswith("You improve a language model's"):
            return metaspo(system, user, bench, r)
        if "<parent_prompt>" in user:
            parent = (between(user, "<parent_prompt>\n", "\n</parent_prompt>") or "").strip()
            parent = "" if parent.startswith("(empty:") else parent
            if "# Rewrite your own system prompt" in user:
                return "sepo-self", self_rewrite(parent, r)
            new, why = edits.edit(parent, bench, r, edits.skill_of(system))
            return "sepo-task", f"Analysis: the feedback points to one change ({why}).\n<prompt>\n{new}\n</prompt>"
        if "<attempts>" in user and "<principles>" in user:
            return "espl-critique", ops_reply([principle(user, bench, r)])
        if "<suggested_updates>" in user:
            return "espl-update", "The suggestions are already consistent.\n```json\n[]\n```"
        if "Principle Set A" in user:
            return "espl-crossover", ops_reply([principle(user, bench, r, evidence=True)] if r > 0.2 else [])
        if "Prompt name: " in user and "\nTemplate: " in user:
            return "mlflow-metaprompt", metaprompt(user, bench, r)
        if "```" in user and "instruction" in user.lower():
            cur = between(user, "to perform a task for me:\n```\n", "\n```\n") or user.split("```", 2)[1]
            new, why = edits.edit(cur, bench, r)
            return "gepa-reflection", f"Looking at the feedback ({why}):\n```\n{new}\n```"
        return "unknown", f"Analysis: a generic rewrite.\n<prompt>\n{GENERIC}\n</prompt>"


def critique(user: str, bench: str) -> str:
    have = features.profile(user, bench).features
    missing = [f for f in edits.ORDER if f not in have] or ["verify"]
    return (f"The system prompt lacks guidance on '{missing[0]}'. Adding one sentence such as "
            f"\"{edits.snippet(missing[0], bench)}\" would make the responses more reliable.")


def self_rewrite(parent: str, r: float) -> str:
    have = edits.skill_of(parent)
    missing = [f for f in edits.META_RULES if f not in have]
    if r < 0.25 and have:
        new = parent.replace("\n" + edits.META_RULES[have[-1]], "")
        why = "removed a rule"
    elif missing:
        new = parent.rstrip() + "\n" + edits.META_RULES[missing[int(r * 97) % len(missing)]]
        why = "added a rule"
    else:
        new, why = parent, "kept"
    return f"My prompt works; one change ({why}).\n<agent_prompt>\n{new}\n</agent_prompt>"


def metaspo(system: str, user: str, bench: str, r: float) -> tuple[str, str]:
    if "<Analysis>" in user:
        return "metaspo-analysis", f"<Analysis>{critique(user, bench)}</Analysis>"
    if system.startswith("You improve the user prompt"):
        cur = (between(user, "## Current user prompt\n", "\n\n## Wrong responses") or "{question}")
        new, _ = edits.edit(cur.replace("{question}", "").strip(), bench, r)
        return "metaspo-user", f"<improved_instruction_prompt>{new}\n{{question}}</improved_instruction_prompt>"
    cur = (between(user, "## Current system prompt\n", "\n\n## Analysis") or "").strip()
    new, _ = edits.edit(cur, bench, r)
    return "metaspo-system", f"<improved_system_prompt>{new}</improved_system_prompt>"


def principle(user: str, bench: str, r: float, evidence: bool = False) -> dict[str, str]:
    new, why = edits.edit(between(user, "<principles>", "</principles>") or "", bench, r)
    added = new.rsplit("\n", 1)[-1] if why.startswith("added") else edits.PADDING.strip()
    op = {"operation": "add", "principle": added}
    return {**op, "evidence": "the set that won these questions"} if evidence else op


def ops_reply(ops: list[dict[str, str]]) -> str:
    return "Reasoning about the attempts.\n```json\n" + json.dumps(ops, indent=1) + "\n```"


TEMPLATE = re.compile(r"Prompt name: (.+?)\nTemplate: (.*?)(?=\n\nPrompt name: |\n\n[A-Z][A-Z ]+[:\n]|\Z)", re.DOTALL)


def metaprompt(user: str, bench: str, r: float) -> str:
    """MLflow's MetaPromptOptimizer: a JSON object, prompt name -> improved template ({{variables}} kept)."""
    out = {}
    for name, template in TEMPLATE.findall(user):
        new, _ = edits.edit(template.strip(), bench, r)
        keep = set(re.findall(r"\{\{\s*\w+\s*\}\}", template)) <= set(re.findall(r"\{\{\s*\w+\s*\}\}", new))
        out[name.strip()] = new if keep else template.strip()
    return json.dumps(out)
