"""Custom tasks without code: a file (or hub dataset) of examples and a built-in scorer.

Sources (harness.data.read_table): JSONL, JSON, CSV or Parquet files, or a hub dataset id with
`source: hub`; the format comes from the suffix unless option `format` says. Each record needs a question
and an answer (or tests, for the python scorer); option `fields` maps roles to columns like inspect-ai's
FieldSpec, e.g. `fields: {question: problem, answer: solution_value, id: uid}`; without it the usual names
are found (question/input/problem/prompt, answer/target/label, id/task_id/problem_id/unique_id,
tests/test_list, setup/test_setup_code).

Options: path (file or hub id; relative paths are tried against the working directory, then the data
directory), format, fields, config and split (hub), scorer (exact | numeric | math | choice | python),
description, task_name (shown as custom:<task_name>), rel_tol / abs_tol (numeric), choices (letters,
default ABCD). Splits: seeded shuffle, train 0.4 / val 0.2 / test the rest (see harness.splits).

Extraction and scoring, per scorer:
- exact / math: the stated final answer, i.e. the last \\boxed{} or a later "answer is/Answer:" statement,
  else the reply's last non-empty line; exact compares normalized text, math asks harness.math_equiv (the
  one place that decides answer equality: math-verify plus the harness's rules);
- numeric: the single number in the stated final answer, else a last line that is only a number;
- choice: strict, as GPQA: an "Answer: X" statement or \\boxed{X}, never a letter in running text; an
  answer naming more than one option is wrong;
- python: the reply's code run against the tests as MBPP's are (harness.benchmarks.mbpp, sandboxes/README.md).
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

    @classmethod
    def needs_sandbox(cls, options: dict[str, Any]) -> bool:
        return options.get("scorer") == "python"

    def __init__(self, data_dir: str | None = None, sandbox: Any = None, **options: Any) -> None:
        data.check_options(
            "custom",
            options,
            ("path", "scorer", "description", "task_name", "rel_tol", "abs_tol", "choices", "max_tokens",
             "format", "fields", "config", "split"),
        )
        Benchmark.__init__(self, data_dir, **options)
        SandboxUser.__init__(self, sandbox)
        if not options.get("path"):
            raise ConfigError(
                "the custom benchmark needs option path: a JSONL, JSON, CSV or Parquet file (or a hub dataset "
                "id with source: hub)."
            )
        self.scorer = options.get("scorer", "exact")
        if self.scorer not in SCORERS:
            raise ConfigError(f"custom scorer must be one of {', '.join(SCORERS)}, got {self.scorer!r}.")
        self.fields = data.FieldSpec(options.get("fields"))
        hub = data.source_of(options) == "hub"
        self.format = data.table_format(str(options["path"]), options.get("format"), hub=hub)
        self.path = Path(str(options["path"])) if self.format == "hub" else self._find(str(options["path"]))
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
            + "; set option path to an existing JSONL, JSON, CSV or Parquet file."
        )

    def examples(self) -> list[Example]:
        if self._examples is None:
            out, seen = [], set()
            f = self.fields
            rows = data.read_table(str(self.path), self.format, config=self.options.get("config"),
                                   split=self.options.get("split"))
            for n, (where, row) in enumerate(rows, 1):
                question = f.get("question", row)
                if not isinstance(question, str) or not question.strip():
                    raise data.DataFormatError(f"{where}: needs a non-empty string {f.describe('question')} "
                                               "(or map one with option fields: {question: <column>}).")
                raw_id = f.get("id", row)
                eid = str(raw_id) if raw_id is not None else f"line{n}"
                if eid in seen:
                    raise data.DataFormatError(f"{where}: duplicate id {eid!r}.")
                seen.add(eid)
                if self.scorer == "python":
                    tests = f.get("tests", row)
                    tests = [tests] if isinstance(tests, str) else tests
                    if not tests or not all(isinstance(t, str) for t in tests):
                        raise data.DataFormatError(
                            f"{where}: the python scorer needs {f.describe('tests')}, a string or list of asserts."
                        )
                    setup = f.get("setup", row)
                    setup = "\n".join(setup) if isinstance(setup, list) else str(setup or "")
                    meta = {"setup": setup, "entry_point": entry_point(tests[0])}
                    out.append(Example(eid, question, list(tests), meta))
                    continue
                answer = f.get("answer", row)
                if answer is None or (isinstance(answer, str) and not answer.strip()):
                    raise data.DataFormatError(f"{where}: needs an {f.describe('answer')} "
                                               "(or map one with option fields: {answer: <column>}).")
                if self.scorer == "numeric":
                    try:
                        answer = float(str(answer).replace(",", ""))
                    except ValueError:
                        raise data.DataFormatError(f"{where}: answer {answer!r} is not a number.") from None
                if self.scorer == "choice":
                    letter = str(answer).strip().strip("()").upper()
                    if letter not in self.choices or len(letter) != 1:
                        raise data.DataFormatError(f"{where}: answer {answer!r} is not one of {self.choices}.")
                    answer = letter
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
            return Score(0.0, False, f"no answer found (expected {want}).", None, "no answer found")
        fb = f"correct: {got}" if ok else f"wrong: expected {want}, got {got}"
        return Score(float(ok), ok, fb, got, "correct" if ok else "wrong answer")
