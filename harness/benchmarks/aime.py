"""AIME 2025: 30 competition problems with integer answers 0-999.

Extraction (strict): the reply's final answer is the last committed one (harness.answers.final_answer): the
last `\\boxed{...}`, a later "answer is ..."/"Answer: ..." statement or "Final Answer" heading, or a later
revision ("wait, actually it's 469"); nothing else in the reply counts, so a reply cut off before its final
answer has none. An answer naming more than one candidate (`469 (or possibly 468)`, `\\boxed{469 \\lor 468}`,
`\\boxed{469}\\boxed{468}`) is wrong ("hedged"). The extracted text is parsed as an expression
(harness.math_equiv.aime_answer): it must denote an integer 0-999 exactly, leading zeros allowed (`070` is
70, `\\frac{140}{2}` is 70, `m+n=70` is 70 when the problem asks for m+n; `70.0000001` and
`\\boxed{70}^{2}` are not 70); anything else is "not an integer 0-999", never a fallback to some other number
in the reply. Equality with the gold is decided in harness.math_equiv.
"""

from __future__ import annotations

from typing import Any

from harness import answers, data, math_equiv, splits
from harness.benchmarks.base import Example, RowsBenchmark, Score, Split, register

FORMAT = "Put your final answer, an integer from 0 to 999, in \\boxed{}."


@register("aime")
class AIME(RowsBenchmark):
    description = (
        "AIME 2025 (American Invitational Mathematics Examination): 30 hard competition math problems "
        "(algebra, geometry, number theory, combinatorics), each with a single integer answer from 0 to "
        "999. The model should reason step by step and end with the final integer in \\boxed{...}, "
        "e.g. \\boxed{70}; only the last boxed value (or a later explicit 'The answer is N') counts, and it "
        "must be an integer 0-999 equal to the reference. Score: accuracy."
    )
    max_tokens = 2048

    def read_rows(self, hub: bool) -> list[dict[str, Any]]:
        if hub:
            return [{"id": str(r.get("id", i)), "problem": r["problem"], "answer": int(r["answer"])}
                    for i, r in enumerate(data.hub_rows("math-ai/aime25"))]
        return data.read_jsonl(data.local_file(self.data_dir, "aime2025/aime2025.jsonl", "AIME 2025"))

    def load(self, split: Split, seed: int) -> list[Example]:
        by_id = {str(r["id"]): r for r in self.rows()}
        ids = splits.shuffled_split(list(by_id), split, seed, splits.FRACTIONS["aime"], "aime", self.options)
        return [
            Example(i, f"{by_id[i]['problem']}\n\n{FORMAT}", int(by_id[i]["answer"]), {"source": "aime2025"})
            for i in ids
        ]

    def score(self, example: Example, response: str) -> Score:
        stated = answers.final_answer(response or "")
        if stated is None:
            return Score(0.0, False, "no answer found: end with the integer in \\boxed{}.", None, "no answer found")
        values = {math_equiv.aime_answer(p, example.question) for p in answers.alternatives(stated)}
        if len(values) > 1:
            return Score(0.0, False, f"the final answer {stated[:80]!r} names more than one candidate: give one.",
                         None, "hedged answer")
        got = math_equiv.aime_answer(stated, example.question)
        if got is None:
            return Score(0.0, False, f"the final answer {stated[:80]!r} is not an integer from 0 to 999.", None,
                         "not an integer 0-999")
        ok = got == int(example.answer)
        fb = f"correct: {got}" if ok else f"wrong: expected {example.answer}, got {got}"
        return Score(float(ok), ok, fb, got, "correct" if ok else "wrong answer")
