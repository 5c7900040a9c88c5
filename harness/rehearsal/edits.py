"""How the simulated prompt agent rewrites a prompt: add a missing feature the task agent rewards, or
(sometimes) drop one or pad the prompt, so methods have better and worse children to tell apart.

Each feature of features.FEATURES has sentences that carry it; the domain feature has one per benchmark.
`skill` (SePO: the features the META_RULES in the prompt agent's own prompt name) makes worse edits rarer,
steers additions to the features the rules name, and adds 1 + len(skill) // 2 features at once.
"""

from __future__ import annotations

import re

from harness.rehearsal import features

SNIPPETS = {
    "format": "State the final answer exactly in the format the question asks for (for example \\boxed{n}, "
              "'Answer: X', an output grid, or one python code block).",
    "steps": "Reason step by step before answering.",
    "verify": "Before you answer, verify the result and double-check it against the question.",
    "plan": "First make a short plan: break the problem down into parts.",
    "concise": "Keep the reasoning concise.",
}
DOMAIN_SNIPPETS = {
    "aime": "Use number theory, modular arithmetic and combinatorics where they apply; the answer is an integer "
            "from 0 to 999.",
    "gpqa": "Eliminate each option that contradicts a scientific principle before choosing.",
    "arc": "Infer the transformation rule from each demonstration: look for symmetry, colour changes and objects.",
    "mbpp": "Match the function name and signature of the example assert and handle edge cases.",
    "sudoku": "Track the candidates of each cell: each row, each column and each box holds every digit once.",
    "other": "Use what you know about the task's domain.",
}
PADDING = ("Remember that careful, thorough and complete work matters a great deal in every situation, and that "
           "you should always keep in mind every consideration that might possibly be relevant. ") * 6
META_RULES = {  # SePO self-rewrites add these to the prompt agent's own prompt
    "format": "- Always make the task prompt name the exact final-answer format.",
    "verify": "- Always make the task prompt ask for a verification step.",
    "steps": "- Always make the task prompt ask for step-by-step reasoning.",
    "domain": "- Always add a hint about the task's domain to the task prompt.",
}
BENCH_WORDS = {"aime": r"\baime\b", "gpqa": r"\bgpqa\b", "arc": r"\barc-agi|\barc\b", "mbpp": r"\bmbpp\b",
               "sudoku": r"\bsudoku\b"}
ORDER = ["format", "steps", "domain", "verify", "plan", "concise"]


def guess_bench(text: str) -> str:
    """The benchmark a request is about, from its task description or questions ("other" if none)."""
    low = text.lower()
    hits = [(m.start(), b) for b, rx in BENCH_WORDS.items() if (m := re.search(rx, low))]
    return min(hits)[1] if hits else "other"


def skill_of(agent_prompt: str) -> list[str]:
    """The features the META_RULES in a prompt-agent prompt name."""
    return [f for f, rule in META_RULES.items() if rule in agent_prompt]


def snippet(feature: str, bench: str) -> str:
    return DOMAIN_SNIPPETS.get(bench, DOMAIN_SNIPPETS["other"]) if feature == "domain" else SNIPPETS[feature]


def drop(prompt: str, feature: str, bench: str) -> str:
    rx = features.DOMAIN.get(bench, r"$^") if feature == "domain" else features.FEATURES[feature]
    lines = [ln for ln in prompt.split("\n") if not re.search(rx, ln.lower())]
    return "\n".join(lines).strip()


def edit(prompt: str, bench: str, r: float, skill: list[str] = ()) -> tuple[str, str]:
    """(new prompt, what changed) for a draw r in [0, 1)."""
    have = features.profile(prompt, bench).features
    worse = 0.3 / (1 + len(skill))
    if r < worse:
        present = [f for f in ORDER if f in have and f != "concise"]
        if present and r < worse * 0.6:
            f = present[int(r * 997) % len(present)]
            return drop(prompt, f, bench) or prompt, f"dropped {f}"
        return (prompt.rstrip() + "\n" + PADDING).strip(), "padded"
    missing = [f for f in ORDER if f not in have]
    preferred = [f for f in skill if f in missing] + [f for f in missing if f not in skill]
    if not preferred:
        return prompt, "unchanged"
    k = int(r * 7919) % len(preferred) if not skill else 0
    added = preferred[k:k + 1 + len(skill) // 2]  # a skilled agent fixes more at once
    lines = [prompt.rstrip(), *(snippet(f, bench) for f in added)]
    return "\n".join(lines).strip(), f"added {', '.join(added)}"
