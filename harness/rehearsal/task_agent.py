"""The simulated task agent: finds the example a request asks about and answers it from the gold.

Examples are indexed by the user message `Benchmark.to_messages` builds for them; a user message that wraps
the question in other text (MetaSPO's user prompts) is found by the question's opening, and the text around
it counts as instructions. Right with the probability features.p_correct gives the prompt; a reply is a
function of the request body: greedy replies repeat, and a sampled one (pass@k's later attempts) is drawn
per request seed, as an endpoint that honours `seed` does, so cells give the same replies in any order.
Completion lengths are drawn from a per-benchmark log-normal typical of a reasoning model (median tokens
below); a request whose max_tokens is below the draw is cut there (finish_reason "length") and its reply
holds no answer. Prompt tokens are characters / 4.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from harness.benchmarks.base import Example
from harness.rehearsal import answers, features

MEDIAN_TOKENS = {"aime": 5000, "gpqa": 2500, "arc": 3000, "mbpp": 700, "sudoku": 2500, "other": 1000}
SIGMA = 0.6
KEY_CHARS = 64


@dataclass(frozen=True)
class Item:
    bench: str  # canonical benchmark name
    example: Example
    reference: Any = None  # MBPP: the reference code


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def tokens(text: str) -> int:
    return max(1, len(text) // 4)


class TaskAgent:
    def __init__(self) -> None:
        self.by_message: dict[str, Item] = {}
        self.by_opening: dict[str, list[tuple[str, Item]]] = {}
        self.misses = 0
        self.lock = threading.Lock()

    def add(self, bench: str, example: Example, user_message: str, reference: Any = None) -> None:
        item = Item(bench, example, reference)
        self.by_message[user_message] = item
        self.by_opening.setdefault(user_message[:KEY_CHARS], []).append((user_message, item))

    def __len__(self) -> int:
        return len(self.by_message)

    def find(self, user: str) -> tuple[Item, str] | None:
        """(item, instruction text around the question) for a user message, or None."""
        if user in self.by_message:
            return self.by_message[user], ""
        starts = [0] + [i + 1 for i, ch in enumerate(user) if ch == "\n"]
        for s in starts:
            for question, item in self.by_opening.get(user[s:s + KEY_CHARS], ()):
                if user.startswith(question, s):
                    return item, user[:s] + user[s + len(question):]
        return None

    def reply(self, body: dict[str, Any]) -> Reply:
        msgs = body.get("messages") or []
        system = "\n".join(str(m.get("content") or "") for m in msgs if m.get("role") == "system")
        user = next((str(m.get("content") or "") for m in reversed(msgs) if m.get("role") == "user"), "")
        prompt_tokens = tokens("".join(str(m.get("content") or "") for m in msgs))
        found = self.find(user)
        if found is None:
            with self.lock:
                self.misses += 1
            return Reply("I cannot tell which problem this is. (simulated task agent)", prompt_tokens, 20, "stop")
        item, around = found
        # A sampled request (pass@k's later attempts) draws anew per seed, as an endpoint that honours `seed`
        # would: the same request body always gets the same reply, whatever ran before it (cells in any order).
        greedy = not float(body.get("temperature") or 0.0)
        attempt = 0 if greedy else f"sampled:{body.get('seed')}"
        prof = features.profile(system + "\n" + around, item.bench)
        draw = (system, user, attempt)
        right = features.unit("right", *draw) < features.p_correct(prof, item.bench)
        median = MEDIAN_TOKENS.get(item.bench, MEDIAN_TOKENS["other"]) * features.length_factor(prof)
        z = NormalDist().inv_cdf(min(0.999, max(0.001, features.unit("length", *draw))))
        length = max(16, int(median * math.exp(SIGMA * z)))
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        reasoning = f"(simulated reasoning: {length} tokens elided)"
        if cap and length > cap:
            return Reply(reasoning[:-1] + ", cut off at the token cap", prompt_tokens, int(cap), "length")
        text = answers.answer(item.bench, item.example, right, features.unit("wrong", *draw), item.reference)
        return Reply(f"{reasoning}\n{text}", prompt_tokens, length, "stop")
