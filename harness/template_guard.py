"""Prompt templates with `{{variables}}` as the optimization target, and the guard that keeps them intact.

When the text being optimized is a template (an MLflow registered prompt, or a seed prompt with
`{{question}}` in it), a rewrite that drops or renames a variable is useless: the task agent would never see
the example's input. Two checks keep such a rewrite from ever being returned:

- `GuardedLLM` (the prompt agent's client): a reply that names template variables but not exactly the
  template's (one renamed, one missing) is refused and the request retried, with the problem said, up to
  `retries` times. A reply that names none is passed on (a critique or an analysis names none either).
- `GuardedEvaluator` (the evaluator): a candidate that lacks a variable is refused before any example is
  scored: every record scores 0 with the reason as feedback (the prompt agent reads it), nothing is spent
  on the budget, and `refused` remembers it, so callers never return it (`is_intact`).

Variables are MLflow's: `{{ name }}` with optional spaces (mlflow.entities.model_registry.PromptVersion).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from harness.evaluator import EvalResult, Evaluator, Record
from harness.llm.client import ChatResult, LLMClient

VARIABLE = re.compile(r"\{\{\s*([^{}\s]+?)\s*\}\}")


def variables(text: str) -> frozenset[str]:
    """The `{{variables}}` of a template."""
    return frozenset(VARIABLE.findall(text or ""))


def render(template: str, values: Mapping[str, Any]) -> str:
    """The template with each `{{name}}` replaced by str(values[name]) (unknown names kept as written)."""
    return VARIABLE.sub(lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def _names(names: Iterable[str]) -> str:
    return ", ".join("{{" + n + "}}" for n in sorted(names))


def problem(required: frozenset[str], text: str) -> str | None:
    """Why `text` cannot replace a template with these variables (None: it can)."""
    found = variables(text)
    missing, extra = required - found, found - required
    if not missing and not extra:
        return None
    parts = ([f"it lost the template variable(s) {_names(missing)}"] if missing else []) + (
        [f"it has variable(s) the template does not fill, {_names(extra)}"] if extra else [])
    return " and ".join(parts)


def is_intact(required: frozenset[str], text: str) -> bool:
    return problem(required, text) is None


def instruction(required: frozenset[str]) -> str:
    """What a prompt agent is told about the template (appended to the task description)."""
    return (f" The prompt being optimized is a template: it must contain each of {_names(required)} exactly once "
            "or more, written exactly so (double braces), where the example's input is filled in; a rewrite "
            "that drops or renames one is refused.")


class GuardedEvaluator(Evaluator):
    """An Evaluator that refuses candidates whose template variables are not intact (see the module docstring).
    Subclasses change how an intact candidate is scored by overriding `score_intact`."""

    def __init__(self, *args: Any, required: frozenset[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.required = frozenset(required)
        self.refused: dict[str, str] = {}  # candidate text -> why

    async def evaluate_async(self, system_prompt: str, examples: list, label: str = "evaluating") -> EvalResult:
        why = problem(self.required, system_prompt) if self.required else None
        if why is None:
            return await self.score_intact(system_prompt, examples, label)
        self.refused[system_prompt] = why
        feedback = f"Refused without running: {why}. Keep every template variable exactly as written."
        return EvalResult([Record(e.id, "", 0.0, False, feedback, 0, 0, 0, True, reason="template variable lost")
                           for e in examples])

    async def score_intact(self, system_prompt: str, examples: list, label: str) -> EvalResult:
        return await super().evaluate_async(system_prompt, examples, label)


class GuardedLLM(LLMClient):
    """The prompt agent's client (same endpoint, connections, cache and ledger) with rewrites that lose or
    rename template variables retried; see the module docstring."""

    def __init__(self, inner: LLMClient, required: frozenset[str], retries: int = 2) -> None:  # shares inner's state
        self.__dict__.update(inner.__dict__)
        self.required, self.retries = frozenset(required), retries
        self.refused_replies = 0

    async def chat(self, messages: list[dict[str, str]], **kwargs: Any) -> ChatResult:
        result = await super().chat(messages, **kwargs)
        for _ in range(self.retries):
            found = variables(result.text)
            if not found or not self.required or found == self.required:
                return result
            self.refused_replies += 1
            why = problem(self.required, result.text)
            messages = [*messages, {"role": "assistant", "content": result.text},
                        {"role": "user", "content": f"Your rewrite was refused: {why}. Write it again in the same "
                         f"format, keeping the template variables {_names(self.required)} exactly as written."}]
            result = await super().chat(messages, **kwargs)
        return result
