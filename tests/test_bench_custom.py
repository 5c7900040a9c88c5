"""Custom JSONL tasks: every built-in scorer, seeded splits, and malformed files reported by line."""

from __future__ import annotations

import json

import pytest

from harness.benchmarks import get_benchmark
from harness.data import DataFormatError, DatasetMissing
from harness.math_equiv import math_equal
from sandboxes.base import RunResult


def write(tmp_path, rows, name="task.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


def only(bench):
    return [e for s in ("train", "val", "test") for e in bench.load(s, 0)]


def test_exact_scorer(tmp_path):
    p = write(tmp_path, [{"id": "fr", "question": "Capital of France?", "answer": "Paris"}])
    b = get_benchmark("custom", path=str(p), scorer="exact")
    (ex,) = only(b)
    for reply in ("Paris", "The answer is Paris.", "Answer: **paris**", "It is \\boxed{\\text{Paris}}"):
        assert b.score(ex, reply).correct, reply
    s = b.score(ex, "The answer is Lyon.")
    assert not s.correct and "expected Paris" in s.feedback and s.extracted == "Lyon"


def test_numeric_scorer(tmp_path):
    p = write(tmp_path, [{"input": "Speed of light in km/s?", "answer": "299,792.458"}])
    b = get_benchmark("custom", path=str(p), scorer="numeric", rel_tol=1e-3)
    (ex,) = only(b)
    assert ex.id == "line1" and ex.answer == pytest.approx(299792.458)
    assert b.score(ex, "About 299,800 km/s, so the answer is 299800.").correct
    assert b.score(ex, "\\boxed{2.9979e5}").correct
    assert not b.score(ex, "The answer is 3000.").correct
    assert "no answer found" in b.score(ex, "no idea").feedback


@pytest.mark.parametrize(
    ("got", "want", "equal"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("\\dfrac{1}{2}", "\\frac12", True),
        ("\\sqrt{8}", "2\\sqrt{2}", True),
        ("2\\sqrt{2}", "2.8284271247461903", True),
        ("\\frac{\\pi}{4}", "\\pi/4", True),
        ("x = 3^{2}", "9", True),
        ("\\sqrt[3]{27}", "3", True),
        ("2 \\cdot 3", "6", True),
        ("(1, 2)", "(1,2)", True),
        ("\\frac{1}{3}", "0.33", False),
        ("\\sqrt{2}", "\\sqrt{3}", False),
        ("2x+1", "1+2x", True),
        ("\\{1,2\\}", "\\{3\\}", False),
        ("9^{9^{9^{9}}}", "1", False),  # refused before evaluation, not computed
    ],
)
def test_math_equivalence(got, want, equal):
    assert math_equal(got, want) is equal


def test_math_parse_is_safe():
    for hostile in (
        "__import__('os').system('echo hi')",
        "(1).__class__",
        "exec('1')",
        "\\input{/etc/passwd}",
    ):
        assert math_equal(hostile, "1") is False


def test_math_scorer(tmp_path):
    p = write(tmp_path, [{"question": "Simplify sqrt(8).", "answer": "2\\sqrt{2}"}])
    b = get_benchmark("custom", path=str(p), scorer="math", description="Simplify radicals.")
    (ex,) = only(b)
    assert b.description == "Simplify radicals."
    assert b.score(ex, "We get $\\sqrt{8} = \\boxed{\\sqrt{8}}$").correct
    assert b.score(ex, "The final answer is $2\\sqrt{2}$.").correct
    s = b.score(ex, "\\boxed{4}")
    assert not s.correct and "expected 2\\sqrt{2}" in s.feedback


def test_choice_scorer(tmp_path):
    p = write(tmp_path, [{"question": "Pick: A) 1 B) 2 C) 3", "answer": "(b)"}])
    b = get_benchmark("custom", path=str(p), scorer="choice", choices="ABC")
    (ex,) = only(b)
    assert ex.answer == "B"
    assert b.score(ex, "Answer: B").correct and b.score(ex, "I choose... answer: b").correct
    assert b.score(ex, "\\boxed{B}").correct
    assert not b.score(ex, "Answer: C").correct
    s = b.score(ex, "I choose (B).")  # strict: no letter from running text
    assert not s.correct and s.extracted is None and s.reason == "no answer found"


def test_python_scorer_batches_through_sandbox(tmp_path):
    rows = [
        {
            "id": "sq",
            "question": "Write square(x).",
            "tests": ["assert square(3) == 9"],
            "setup": "import math",
        },
        {"id": "neg", "question": "Write neg(x).", "tests": "assert neg(2) == -2"},
    ]
    p = write(tmp_path, rows)

    class Double:
        def __init__(self):
            self.seen = []

        def run_many(self, programs, timeout_s=None):
            self.seen.append(programs)
            return [
                RunResult("x * x" in p.code, "", "passed" if "x * x" in p.code else "error: x", 0)
                for p in programs
            ]

    sb = Double()
    b = get_benchmark("custom", path=str(p), scorer="python", sandbox=sb)
    exs = {e.id: e for e in only(b)}
    scores = b.score_many(
        [exs["sq"], exs["neg"]],
        ["```python\ndef square(x):\n    return x * x\n```", "```python\ndef neg(x):\n    return x\n```"],
    )
    assert [s.correct for s in scores] == [True, False] and len(sb.seen) == 1
    assert sb.seen[0][0].tests == "assert square(3) == 9" and sb.seen[0][0].setup == "import math"
    assert "error: x" in scores[1].feedback


def test_malformed_lines_name_file_and_line(tmp_path):
    good = {"question": "q", "answer": "a"}
    cases = [
        ([good, "{not json"], "line 2: not valid JSON"),
        ([good, good, "", "[1, 2]"], "line 4: expected a JSON object"),
        ([good, {"answer": "a"}], "line 2: needs a non-empty string 'question'"),
        ([{"question": "q"}], "line 1: needs an 'answer'"),
        ([{"id": 1, **good}, {"id": 1, **good}], "line 2: duplicate id '1'"),
    ]
    for rows, message in cases:
        p = write(tmp_path, rows, "bad.jsonl")
        with pytest.raises(DataFormatError, match=message) as err:
            only(get_benchmark("custom", path=str(p)))
        assert str(p) in str(err.value)
    p = write(tmp_path, [{"question": "q", "answer": "seven"}], "num.jsonl")
    with pytest.raises(ValueError, match="line 1: answer 'seven' is not a number"):
        only(get_benchmark("custom", path=str(p), scorer="numeric"))


def test_options_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="scorer must be one of exact, numeric, math, choice, python"):
        get_benchmark("custom", path=str(write(tmp_path, [{"question": "q", "answer": "a"}])), scorer="fuzzy")
    with pytest.raises(ValueError, match="needs option path"):
        get_benchmark("custom")
    with pytest.raises(DatasetMissing, match="nope.jsonl"):
        get_benchmark("custom", path=str(tmp_path / "nope.jsonl"))


def test_seeded_split_and_data_dir_relative_path(tmp_path):
    p = write(tmp_path, [{"id": f"q{i}", "question": f"{i}+1?", "answer": str(i + 1)} for i in range(50)])
    b = get_benchmark("custom", path="task.jsonl", task_name="adder", data_dir=str(tmp_path))
    assert b.name == "custom:adder" and b.path == p
    parts = {s: [e.id for e in b.load(s, 0)] for s in ("train", "val", "test")}
    assert [len(v) for v in parts.values()] == [20, 10, 20]
    assert len({i for v in parts.values() for i in v}) == 50
    assert parts["train"] == [e.id for e in b.load("train", 0)]
    assert parts["train"] != [e.id for e in b.load("train", 1)]


def test_problem_answer_rows_need_no_mapping(tmp_path):
    """MATH/AIME-style rows (`problem`, `answer`, `unique_id`) load as they are."""
    p = write(tmp_path, [{"unique_id": "m1", "problem": "What is 2+2?", "answer": "4"}])
    b = get_benchmark("custom", path=str(p), scorer="math")
    (ex,) = only(b)
    assert (ex.id, ex.question, ex.answer) == ("m1", "What is 2+2?", "4")
    assert b.score(ex, "So \\boxed{4}.").correct


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_other_formats_with_a_field_mapping(tmp_path, fmt):
    import pandas as pd

    rows = [{"uid": f"q{i}", "prompt_text": f"{i}+1?", "gold": str(i + 1)} for i in range(5)]
    path = tmp_path / f"task.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)
    fields = {"question": "prompt_text", "answer": "gold", "id": "uid"}
    b = get_benchmark("custom", path=str(path), scorer="exact", fields=fields)
    exs = {e.id: e for e in only(b)}
    assert sorted(exs) == [f"q{i}" for i in range(5)]
    assert exs["q2"].question == "2+1?" and str(exs["q2"].answer) == "3"
    assert b.score(exs["q2"], "Answer: 3").correct
    with pytest.raises(DataFormatError, match="needs a non-empty string 'nope'"):
        only(get_benchmark("custom", path=str(path), fields={"question": "nope", "answer": "gold"}))


def test_hub_dataset_id_through_datasets(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake_load(hub_id, config=None):
        calls.append((hub_id, config))
        return {"train": [{"problem": "1+1?", "answer": "2", "id": "a"}]}

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    b = get_benchmark("custom", path="someone/tiny-math", source="hub", scorer="math", split="train")
    (ex,) = only(b)
    assert calls == [("someone/tiny-math", None)] and ex.answer == "2"


def test_format_and_fields_are_checked(tmp_path):
    p = write(tmp_path, [{"question": "q", "answer": "a"}], "task.txt")
    with pytest.raises(ValueError, match="cannot tell the format"):
        get_benchmark("custom", path=str(p))
    assert only(get_benchmark("custom", path=str(p), format="jsonl"))[0].answer == "a"
    with pytest.raises(ValueError, match="unknown role 'qestion'"):
        get_benchmark("custom", path=str(p), format="jsonl", fields={"qestion": "q"})
