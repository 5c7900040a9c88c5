"""GPQA Diamond: 198 graduate-level science multiple-choice questions, options shuffled per seed.

Extraction (strict, simple-evals' answer pattern widened to the formatting checkers accept;
harness.answers.find_letter): an `Answer: X` or "the answer is X" statement, case-insensitive, the letter
bold, bracketed, in `\\(X\\)`, `\\textbf{X}`, as `Option X` or on the line after `**Answer:**`; or
`\\boxed{X}`. The last committed one counts (a later "wait, actually it's X" included). An answer naming
more than one option (`A or B`, `A/B`, `A, B, C or D`, `\\boxed{B}\\boxed{A}`) is wrong ("hedged answer").
There is no fallback to letters in running text ("vitamin D", "A lot of evidence points to C"), so a
reply without an explicit answer, such as one cut off at the token cap, scores "no answer found" (0)
rather than a chance guess.
"""

from __future__ import annotations

import random
from typing import Any

from harness import answers, data, splits
from harness.benchmarks.base import Example, RowsBenchmark, Score, Split, register

PASSWORD = "deserted-untie-orchid"
LETTERS = "ABCD"
FORMAT = "End your reply with a line of the form 'Answer: X', where X is one of A, B, C, D."


def permute(seed: int, record_id: str, options: list[str]) -> tuple[list[str], str]:
    """Shuffle [correct, wrong1, wrong2, wrong3] with a per-seed, per-question permutation.

    Returns the shuffled options and the letter of the correct one.
    """
    order = list(range(4))
    random.Random(f"gpqa:{seed}:{record_id}").shuffle(order)
    return [options[i] for i in order], LETTERS[order.index(0)]


@register("gpqa")
class GPQA(RowsBenchmark):
    description = (
        "GPQA Diamond: 198 very hard, 'Google-proof' multiple-choice questions written by PhD experts in "
        "biology, chemistry and physics. Each question has four options A-D (in a seeded random order); "
        "exactly one is correct. The model should reason and end with a line 'Answer: X' where X is the "
        "letter (case does not matter; \\boxed{X} is also accepted; a letter elsewhere in the text never "
        "counts). Score: accuracy."
    )
    max_tokens = 1024

    def read_rows(self, hub: bool) -> list[dict[str, Any]]:
        if hub:
            return data.hub_rows("Idavidrein/gpqa", "gpqa_diamond")
        return data.read_zipped_csv(data.local_file(self.data_dir, "gpqa/gpqa_diamond.zip", "GPQA Diamond"), PASSWORD)

    def load(self, split: Split, seed: int) -> list[Example]:
        by_id = {r["Record ID"]: r for r in self.rows()}
        ids = splits.shuffled_split(list(by_id), split, seed, splits.FRACTIONS["gpqa"], "gpqa", self.options)
        out = []
        for rid in ids:
            r = by_id[rid]
            raw = [r["Correct Answer"]] + [r[f"Incorrect Answer {k}"] for k in (1, 2, 3)]
            opts, letter = permute(seed, rid, [o.strip() for o in raw])
            body = "\n".join(f"{L}) {o}" for L, o in zip(LETTERS, opts, strict=True))
            question = f"{r['Question'].strip()}\n\n{body}\n\n{FORMAT}"
            meta = {"domain": r.get("High-level domain", ""), "options": opts}
            out.append(Example(rid, question, letter, meta))
        return out

    def score(self, example: Example, response: str) -> Score:
        got, why = answers.find_letter(response or "", LETTERS)
        if why == answers.HEDGED:
            return Score(0.0, False, "the final answer names more than one option: give exactly one letter.", None,
                         "hedged answer")
        if got is None:
            return Score(0.0, False, "no answer letter found: end with 'Answer: X' (X in A-D).", None,
                         "no answer found")
        ok = got == example.answer
        fb = f"correct: {got}" if ok else f"wrong: expected {example.answer}, got {got}"
        return Score(float(ok), ok, fb, got, "correct" if ok else "wrong answer")
