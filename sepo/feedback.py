"""Feedback shown to the prompt agent: excerpts of graded examples, failures and successes 1:1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.benchmarks.base import Example
from harness.evaluator import Record


@dataclass(frozen=True)
class FeedbackItem:
    """One graded example (kind "example"), or in pre-training one pool task (kind "task": question = the
    task, response = the task prompt written for it), already truncated for display."""

    example_id: str
    question: str
    response: str
    score: float
    correct: bool
    feedback: str
    kind: str = "example"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeedbackItem:
        return cls(**d)


def truncate(text: str, limit: int) -> str:
    """Keep the head and the tail of a long text (the ending often holds the final answer)."""
    text = text.strip()
    if limit <= 0 or len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    return f"{text[:head]} [... {len(text) - limit} chars cut ...] {text[-tail:]}"


def items_from_records(examples: Sequence[Example], records: Sequence[Record], *,
                       excerpt_chars: int = 800) -> list[FeedbackItem]:
    by_id = {e.id: e for e in examples}
    return [FeedbackItem(r.example_id, truncate(by_id[r.example_id].question, excerpt_chars),
                         truncate(r.response, excerpt_chars), r.score, r.correct,
                         truncate(r.feedback, excerpt_chars // 2)) for r in records]


def balance(items: Sequence[FeedbackItem], per_side: int) -> list[FeedbackItem]:
    """Failures and successes 1:1, in their original (deterministic) order.

    With both kinds present, n = min(per_side, #failures, #successes) of each; when one kind is
    absent, up to `per_side` of the other (a 1:1 mix is impossible, and no feedback helps nobody).
    """
    fails = [i for i in items if not i.correct]
    wins = [i for i in items if i.correct]
    if fails and wins:
        n = min(per_side, len(fails), len(wins))
        return fails[:n] + wins[:n]
    return list((fails or wins)[:per_side])


def render(items: Sequence[FeedbackItem]) -> str:
    if not items:
        return "(no feedback available)"
    blocks = []
    n = 0
    for it in items:
        if it.kind == "task":
            verdict = "IMPROVED" if it.correct else "NOT IMPROVED"
            blocks.append(f"# Task {it.example_id}: {verdict} (score {it.score:.2f})\n{it.question}\n\n"
                          f"Task prompt written:\n{it.response}\n\n{it.feedback}")
            continue
        n += 1
        verdict = "SUCCESS" if it.correct else "FAILURE"
        blocks.append(f"## Example {n}: {verdict} (score {it.score:.2f})\n"
                      f"Question:\n{it.question}\n\nResponse:\n{it.response}\n\nGrader: {it.feedback}")
    return "\n\n".join(blocks)
