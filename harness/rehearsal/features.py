"""The simulated task agent's accuracy model: which features of a system prompt help, and by how much.

A prompt's features are found by keyword (case-insensitive) in its system prompt, plus any instruction text
around the question in the user message (MetaSPO's user prompts):

    format   states the final-answer format ("\\boxed", "Answer:", "final answer", "```python", "grid" ...)
    steps    asks for step-by-step reasoning ("step by step", "reason carefully", "think through")
    verify   asks for a check before answering ("verify", "double-check", "check your")
    domain   a hint for the benchmark's domain (AIME: number theory, modular...; GPQA: eliminate options...)
    plan     asks to plan or decompose ("plan", "break the problem down")
    concise  asks for brevity ("concise", "brief"): no accuracy, but shorter replies (fewer cut off)

P(right) = base + (ceiling - base) * (1 - exp(-sum of the present features' weights)) - length penalty,
with per-benchmark base rates and ceilings (diminishing returns: the second feature adds less than the
first); the penalty grows by 0.04 per 100 words beyond 350 (very long prompts distract). "steps" makes
replies 30% longer, "concise" 35% shorter. The right/wrong draw is a hash of (prompt, example, attempt),
so the same request always gets the same verdict. Nothing here measures a real model.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

FEATURES: dict[str, str] = {
    "format": r"\\boxed|answer:\s*x|final answer|```python|code block|output grid|completed grid|answer format"
              r"|format the answer|exact format",
    "steps": r"step[- ]by[- ]step|reason carefully|think through|work through|chain of thought",
    "verify": r"verif|double[- ]check|check your|re-check|sanity[- ]check|test your",
    "plan": r"\bplan\b|break (?:it|the problem) down|decompose|outline",
    "concise": r"\bconcise|\bbrief|\bshort(?:er)? (?:reply|answer|reasoning)|keep it short",
}
DOMAIN: dict[str, str] = {
    "aime": r"number theory|modular|combinator|algebraic|geometr|integer from 0 to 999",
    "gpqa": r"eliminat|each option|physics|chemistry|biology|scientific principle",
    "arc": r"symmetr|transformation rule|colou?r|object|same shape|each demonstration",
    "mbpp": r"edge case|function name|signature|python|assert",
    "sudoku": r"row, column|each row|each box|candidates|constraint|givens",
}
WEIGHTS = {"format": 0.6, "steps": 0.5, "verify": 0.35, "domain": 0.45, "plan": 0.25, "concise": 0.0}
# (base rate with a bare prompt, ceiling with every feature), per benchmark; "other" for anything else
RATES = {"aime": (0.25, 0.75), "gpqa": (0.45, 0.8), "arc": (0.2, 0.55), "mbpp": (0.55, 0.9),
         "sudoku": (0.15, 0.7), "other": (0.3, 0.8)}
LONG_WORDS, PENALTY_PER_100 = 350, 0.04


@dataclass(frozen=True)
class Profile:
    features: frozenset[str]
    words: int

    def has(self, name: str) -> bool:
        return name in self.features


def profile(text: str, bench: str) -> Profile:
    """The features of a prompt text for benchmark `bench`."""
    low = text.lower()
    found = {name for name, rx in FEATURES.items() if re.search(rx, low)}
    if re.search(DOMAIN.get(bench, r"$^"), low):
        found.add("domain")
    return Profile(frozenset(found), len(text.split()))


def p_correct(p: Profile, bench: str) -> float:
    base, ceiling = RATES.get(bench, RATES["other"])
    gain = 1 - math.exp(-sum(WEIGHTS[f] for f in p.features))
    penalty = max(0, p.words - LONG_WORDS) / 100 * PENALTY_PER_100
    return min(0.98, max(0.02, base + (ceiling - base) * gain - penalty))


def length_factor(p: Profile) -> float:
    return (1.3 if p.has("steps") else 1.0) * (0.65 if p.has("concise") else 1.0)


def unit(*parts: object) -> float:
    """A uniform number in [0, 1) from a hash of the parts: the world's only source of chance."""
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64
