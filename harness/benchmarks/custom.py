"""Custom tasks without code: a JSONL file of examples and a built-in scorer.

Each line: {"id": optional, "question" (or "input"): str, "answer": ..., "tests": optional str or list of
asserts, "setup": optional str}. Options: path (the file; relative paths are tried against the working
directory, then the data directory), scorer (exact | numeric | math | choice | python), description,
task_name (shown as custom:<task_name>), rel_tol / abs_tol (numeric), choices (letters, default ABCD).
Splits: seeded shuffle, train 0.4 / val 0.2 / test the rest (see harness.splits).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness import answers, data, splits
from harness.benchmarks.base import Benchmark, Example, Score, Split, register
from harness.benchmarks.mbpp import SandboxUser, entry_point, run_code
from harness.config import ConfigError
from harness.math_equiv import math_equal, normalize

SCORERS = ("exact", "numeric", "math", "choice", "python")
HINTS = {
    "exact": "The final answer (in \\boxed{} or after 'Answer:') must match the reference text exactly, "
    "ignoring case, spacing and a trailing period.",
    "numeric": "The final answer is a number (in \\boxed{} or after 'Answer:'), compared within a tolerance.",
    "math": "The final answer goes in \\boxed{}; any mathematically equivalent form counts "
    "(e.g. \\frac{1}{2} = 0.5, \\sqrt{8} = 2\\sqrt{2}).",
    "choice": "The answer is a letter, given as 'Answer: X'.",
    "python": "The answer is Python code in a ```python block, run against hidden asserts in a sandbox.",
}


def stated_answer(text: str) -> str:
    """The final answer: \\boxed{} or 'answer is/:' text, else the last non-empty line."""
    found = answers.final_answer(text)
    if found is not None:
        return found
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return answers.strip_latex(lines[-1]) if lines else ""


# ---- the benchmark ----------------------------------------------------------------------------------


@register("custom")
class Custom(SandboxUser, Benchmark):
    max_tokens = 1024

    def __init__(self, data_dir: str | None = None, sandbox: Any = None, **options: Any) -> None:
        data.check_options(
            "custom",
            options,
            ("path", "scorer", "description", "task_name", "rel_tol", "abs_tol", "choices", "max_tokens"),
        )
        Benchmark.__init__(self, data_dir, **options)
        SandboxUser.__init__(self, sandbox)
        if not options.get("path"):
            raise ConfigError(
                "the custom benchmark needs option path: a JSONL file with one example per line."
            )
        self.scorer = options.get("scorer", "exact")
        if self.scorer not in SCORERS:
            raise ConfigError(f"custom scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}.")
        self.path = self._find(str(options["path"]))
        if options.get("task_name"):
            self.name = f"custom:{options['task_name']}"
        self.description = options.get("description") or (
            f"A custom task from {self.path.name}: answer each question. {HINTS[self.scorer]}"
        )
        self.max_tokens = int(options.get("max_tokens", 1024))
        self.choices = str(options.get("choices", "ABCD")).upper()
        self._examples: list[Example] | None = None

    def _find(self, path: str) -> Path:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        if not p.is_absolute():
            base, _ = data.resolve_data_dir(self.data_dir)
            if base is not None and (base / p).is_file():
                return base / p
        raise data.DatasetMissing(
            f"custom task file not found: looked for {p.resolve()}"
            + (" and in the data directory" if not p.is_absolute() else "")
            + "; set option path to an existing JSONL file."
        )

    def examples(self) -> list[Example]:
        if self._examples is None:
            out, seen = [], set()
            for n, row in data.iter_jsonl(self.path):
                where = f"{self.path}, line {n}"
                question = row.get("question", row.get("input"))
                if not isinstance(question, str) or not question.strip():
                    raise data.DataFormatError(f"{where}: needs a non-empty string 'question' (or 'input').")
                eid = str(row.get("id", f"line{n}"))
                if eid in seen:
                    raise data.DataFormatError(f"{where}: duplicate id {eid!r}.")
                seen.add(eid)
                if self.scorer == "python":
                    tests = row.get("tests")
                    tests = [tests] if isinstance(tests, str) else tests
                    if not tests or not all(isinstance(t, str) for t in tests):
                        raise data.DataFormatError(
                            f"{where}: the python scorer needs 'tests', a string or list of asserts."
                        )
                    meta = {"setup": str(row.get("setup", "")), "entry_point": entry_point(tests[0])}
                    out.append(Example(eid, question, list(tests), meta))
                    continue
                if "answer" not in row or row["answer"] is None:
                    raise data.DataFormatError(f"{where}: needs an 'answer'.")
                answer = row["answer"]
                if self.scorer == "numeric":
                    try:
                        answer = float(str(answer).replace(",", ""))
                    except ValueError:
                        raise data.DataFormatError(f"{where}: answer {answer!r} is not a number.") from None
                if self.scorer == "choice":
                    answer = str(answer).strip().strip("()").upper()
                    if answer not in self.choices or len(answer) != 1:
                        raise data.DataFormatError(
                            f"{where}: answer {row['answer']!r} is not one of {self.choices}."
                        )
                out.append(Example(eid, question, answer, {"line": n}))
            if not out:
                raise ConfigError(f"{self.path}: no examples.")
            self._examples = out
        return self._examples

    def load(self, split: Split, seed: int) -> list[Example]:
        by_id = {e.id: e for e in self.examples()}
        salt = f"custom:{self.path.stem}"
        ids = splits.shuffled_split(list(by_id), split, seed, splits.FRACTIONS["custom"], salt, self.options)
        return [by_id[i] for i in ids]

    def score(self, example: Example, response: str) -> Score:
        return self.score_many([example], [response])[0]

    def score_many(self, examples: list[Example], responses: list[str]) -> list[Score]:
        if self.scorer == "python":
            items = []
            for e, r in zip(examples, responses, strict=True):
                code = answers.extract_code(r or "", e.meta.get("entry_point"))
                items.append((code, "\n".join(e.answer), e.meta.get("setup", ""), len(e.answer)))
            return run_code(self, items)
        return [self._score_one(e, r or "") for e, r in zip(examples, responses, strict=True)]

    def _score_one(self, example: Example, response: str) -> Score:
        want = example.answer
        if self.scorer == "numeric":
            got: Any = answers.extract_number(response)
            ok = got is not None and math.isclose(
                got,
                want,
                rel_tol=float(self.options.get("rel_tol", 1e-6)),
                abs_tol=float(self.options.get("abs_tol", 1e-9)),
            )
        elif self.scorer == "choice":
            got = answers.extract_letter(response, self.choices)
            ok = got == want
        else:
            got = stated_answer(response) or None
            ok = got is not None and (
                math_equal(got, str(want)) if self.scorer == "math" else normalize(got) == normalize(want)
            )
        if got is None:
            return Score(0.0, False, f"no answer found (expected {want}).", None)
        fb = f"correct: {got}" if ok else f"wrong: expected {want}, got {got}"
        return Score(float(ok), ok, fb, got)
