"""AIME 2025: 30 competition problems with integer answers 0-999; exact match on the extracted integer."""

from __future__ import annotations

from typing import Any

from harness import answers, data, splits
from harness.benchmarks.base import Benchmark, Example, Score, Split, register

FORMAT = "Put your final answer, an integer from 0 to 999, in \\boxed{}."


@register("aime")
class AIME(Benchmark):
    description = (
        "AIME 2025 (American Invitational Mathematics Examination): 30 hard competition math problems "
        "(algebra, geometry, number theory, combinatorics), each with a single integer answer from 0 to "
        "999. The model should reason step by step and end with the final integer in \\boxed{...}, "
        "e.g. \\boxed{70}; the last boxed value (else 'Answer: N', else the last integer) is compared "
        "exactly with the reference. Score: accuracy."
    )
    max_tokens = 2048

    def __init__(self, data_dir: str | None = None, **options: Any) -> None:
        data.check_options("aime", options, ())
        super().__init__(data_dir, **options)
        self._rows: list[dict[str, Any]] | None = None

    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            if data.source_of(self.options) == "hub":
                raw = data.hub_rows("math-ai/aime25")
                self._rows = [
                    {"id": str(r.get("id", i)), "problem": r["problem"], "answer": int(r["answer"])}
                    for i, r in enumerate(raw)
                ]
            else:
                path = data.local_file(self.data_dir, "aime2025/aime2025.jsonl", "AIME 2025")
                self._rows = data.read_jsonl(path)
        return self._rows

    def load(self, split: Split, seed: int) -> list[Example]:
        by_id = {str(r["id"]): r for r in self.rows()}
        ids = splits.shuffled_split(list(by_id), split, seed, splits.FRACTIONS["aime"], "aime", self.options)
        return [
            Example(i, f"{by_id[i]['problem']}\n\n{FORMAT}", int(by_id[i]["answer"]), {"source": "aime2025"})
            for i in ids
        ]

    def score(self, example: Example, response: str) -> Score:
        got = answers.extract_int(response or "")
        if got is None:
            return Score(0.0, False, "no answer found: end with the integer in \\boxed{}.", None)
        ok = got == example.answer
        fb = f"correct: {got}" if ok else f"wrong: expected {example.answer}, got {got}"
        return Score(float(ok), ok, fb, got)
