"""Scoring AIME, GPQA and ARC with real dataset rows and replies written the way models write them."""

from __future__ import annotations

import json

import pytest

from harness import answers
from harness.benchmarks import get_benchmark
from harness.benchmarks.arc import render


@pytest.fixture(scope="module")
def aime():
    b = get_benchmark("aime")
    return b, {e.id: e for s in ("train", "val", "test") for e in b.load(s, 0)}


@pytest.fixture(scope="module")
def gpqa():
    b = get_benchmark("gpqa")
    return b, b.load("test", 0)


@pytest.fixture(scope="module")
def arc():
    b = get_benchmark("arc")
    return b, b.load("test", 0)


# ---- AIME ------------------------------------------------------------------------------------------

CORRECT_AIME = [
    "We have $b+7 \\mid 9b+7$, so ... The sum is $21+49=70$.\n\nThe final answer is $\\boxed{70}$.",
    "Step 1 ... so the answer is 70.",
    "... giving 21 + 49.\n\n**Answer:** 70",
    "Thus we get \\boxed{070}",
    "Summing, 21 + 49 = 70.\n\nFinal Answer: The final answer is $70$. I hope it is correct.",
    "Therefore \\[\\boxed{\\text{70}}\\]",
    "Hence the sum is \\boxed{\\frac{140}{2}}.",
    "The answer is $\\dfrac{140}{2}$.",
]


@pytest.mark.parametrize("reply", CORRECT_AIME)
def test_aime_correct_formats(aime, reply):
    bench, by_id = aime
    ex = by_id["2025-I-1"]
    assert ex.answer == 70 and "17_b" in ex.question
    s = bench.score(ex, reply)
    assert s.correct and s.value == 1.0 and s.extracted == 70, (reply, s)


def test_aime_wrong_and_unparseable(aime):
    bench, by_id = aime
    ex = by_id["2025-I-1"]
    wrong = bench.score(ex, "Only b = 21 works, so the answer is \\boxed{21}.")
    assert not wrong.correct and wrong.value == 0.0 and wrong.extracted == 21
    assert "expected 70" in wrong.feedback and "got 21" in wrong.feedback
    # the last boxed value wins over earlier ones
    assert not bench.score(ex, "Maybe \\boxed{70}? No: recheck, \\boxed{49}.").correct
    none = bench.score(ex, "I could not solve this problem.")
    assert not none.correct and none.extracted is None and "no answer found" in none.feedback
    assert not bench.score(ex, "").correct


def test_aime_strict_extraction(aime):
    bench, by_id = aime
    ex = by_id["2025-I-1"]
    s = bench.score(ex, "The bases are 21 and 49, and 21 + 49 = 70")  # no stated final answer
    assert not s.correct and s.extracted is None and s.reason == "no answer found"
    s = bench.score(ex, "So 70 works... therefore \\boxed{x^2 + 1}")  # a box holding a non-integer
    assert not s.correct and s.extracted is None and s.reason == "not an integer 0-999"
    s = bench.score(ex, "We get \\boxed{\\frac{140}{3}} hmm, 70 maybe")
    assert not s.correct and s.reason == "not an integer 0-999"
    cut = "Let me compute. 21 + 49 = 70. Now we check the bases 17 and 97 and then the final step is"
    assert bench.score(ex, cut).reason == "no answer found"  # cut off at the token cap: no credit
    assert bench.score(ex, "\\boxed{70} is what I first thought, but the answer is 49.").extracted == 49


def test_aime_every_reference_answer_roundtrips(aime):
    bench, by_id = aime
    assert len(by_id) == 30
    for ex in by_id.values():
        assert 0 <= ex.answer <= 999
        assert bench.score(ex, f"Reasoning...\n\n$\\boxed{{{ex.answer}}}$").correct
        assert not bench.score(ex, f"\\boxed{{{(ex.answer + 1) % 1000}}}").correct


def test_answer_helpers():
    assert answers.last_boxed("a \\boxed{\\frac{1}{2}} b \\boxed{x^{2}}") == "x^{2}"
    assert answers.last_boxed("no box") is None
    assert answers.extract_int("To answer this, compute 3+4 and more.\nSo we get 7") is None  # strict
    assert answers.extract_int("\\boxed{1,000}") == 1000
    assert answers.extract_number("The answer is -3.5 m/s.") == -3.5
    assert answers.final_answer("blah\nAnswer: Paris.") == "Paris"


# ---- GPQA ------------------------------------------------------------------------------------------


def test_gpqa_correct_formats(gpqa):
    bench, exs = gpqa
    for ex in exs[:20]:
        L = ex.answer
        for reply in (
            f"Reasoning about the options...\n\nAnswer: {L}",
            f"Therefore the answer is $\\boxed{{{L}}}$.",
            f"ANSWER: {L}",
            f"answer: {L.lower()}",
            f"Final answer: **{L}**",
            f"**Answer:** ({L})",
            f"Answer: A at first sight, but on reflection:\nAnswer: {L}" if L != "A" else "Answer: A",
        ):
            s = bench.score(ex, reply)
            assert s.correct and s.extracted == L and s.reason == "correct", (reply, s)


def test_gpqa_strict_extraction(gpqa):
    """simple-evals' pattern: no fallback to letters in running text."""
    bench, exs = gpqa
    ex = exs[0]
    L = ex.answer
    for reply in (
        f"The correct option is ({L}).",
        f"**{L}**",
        f"{L}",
        f"After checking, {L} is right.",
        "Vitamin D deficiency explains it, as in option",  # cut off at the token cap
        "Hmm. A careful reading of the options does not settle it.",
        "The answer: a bit more thought is needed",
    ):
        s = bench.score(ex, reply)
        assert not s.correct and s.extracted is None and s.reason == "no answer found", (reply, s)


def test_gpqa_wrong_and_unparseable(gpqa):
    bench, exs = gpqa
    ex = exs[0]
    other = next(L for L in "ABCD" if ex.answer != L)
    s = bench.score(ex, f"Considering {ex.answer} first, I reject it.\nAnswer: {other}")
    assert not s.correct and s.extracted == other and f"expected {ex.answer}" in s.feedback
    assert s.reason == "wrong answer"
    s = bench.score(ex, "I am not sure about any of these.")
    assert not s.correct and s.extracted is None and "no answer letter" in s.feedback


# ---- ARC -------------------------------------------------------------------------------------------


def test_arc_question_renders_real_task(arc):
    bench, exs = arc
    ex = exs[0]
    task = bench.tasks("evaluation")[ex.meta["task_id"]]
    assert render(task["train"][0]["input"]) in ex.question
    assert ex.question.count("Example ") == len(task["train"])
    assert len(exs) == 400 and {e.id for e in exs} == set(bench.tasks("evaluation"))  # one example per task
    multi = [e for e in exs if e.meta["n_outputs"] > 1]
    assert multi and all("Test input 2:" in e.question and "Test output k:" in e.question for e in multi)


def test_arc_correct_formats(arc):
    bench, exs = arc
    for ex in [e for e in exs if e.meta["n_outputs"] == 1][:15]:
        g = ex.answer[0]
        text = render(g)
        for reply in (
            f"The rule mirrors the shape.\n\nOutput:\n{text}",
            f"Here is the result:\n```\n{text}\n```\nDone.",
            f"```json\n{json.dumps(g)}\n```",
            f"Answer: {json.dumps(g)}",
            "```python\n[\n" + ",\n".join("  " + json.dumps(r) for r in g) + "\n]\n```",
            f"First a guess:\n{render([[9] * 2] * 2)}\n\nCorrected final grid:\n{text}\n",
            "\n".join(",".join(str(c) for c in r) for r in g),
            "\n".join("".join(str(c) for c in r) for r in g),
            f"A guess:\n{render([[9] * 3] * 3)}\n---\n{text}\n",  # a markdown rule ends a grid
            f"Output:\n{text}\n\n12\n",  # a stray number line after the grid
        ):
            s = bench.score(ex, reply)
            assert s.correct and s.value == 1.0 and s.extracted["outputs"][0]["grid"] == g, (ex.id, reply, s)


def test_arc_multi_output_task_scores_fraction(arc):
    bench, exs = arc
    ex = next(e for e in exs if e.meta["n_outputs"] == 2)
    a, b = ex.answer
    bad = [row[:] for row in b]
    bad[0][0] = (bad[0][0] + 1) % 10
    s = bench.score(ex, f"Test output 1:\n{render(a)}\n\nTest output 2:\n{render(b)}\n")
    assert s.correct and s.value == 1.0 and s.reason == "correct"
    s = bench.score(ex, f"Test output 2:\n{render(bad)}\n\nTest output 1:\n{render(a)}\n")
    assert not s.correct and s.value == 0.5 and s.reason == "1 of 2 outputs solved"
    assert [o["solved"] for o in s.extracted["outputs"]] == [True, False]
    s2 = bench.score(ex, f"Test output 2:\n{render(b)}\n")
    assert s2.value == 0.5 and [o["solved"] for o in s2.extracted["outputs"]] == [False, True]
    both = bench.combine_attempts(ex, [s, s2])  # pass@k per output: any attempt solving an output counts
    assert both.correct and both.value == 1.0
    assert bench.score(ex, f"{render(a)}\n\n{render(b)}\n").correct  # unlabelled: the last two grids in order


def test_arc_wrong_and_unparseable(arc):
    bench, exs = arc
    ex = next(e for e in exs if e.meta["n_outputs"] == 1 and len(e.answer[0]) > 2 and len(e.answer[0][0]) > 2)
    want = ex.answer[0]
    g = [row[:] for row in want]
    g[0][0] = (g[0][0] + 1) % 10
    s = bench.score(ex, f"Output:\n{render(g)}")
    assert not s.correct and "1 of" in s.feedback and "cells differ" in s.feedback and s.reason == "wrong grid"
    s = bench.score(ex, f"Output:\n{render(want[:-1])}")
    assert not s.correct and "wrong shape" in s.feedback
    s = bench.score(ex, f"Output:\n{render(want[:2])}\n---\n{render(want[2:])}")  # '---' no longer merges
    assert not s.correct and "wrong shape" in s.feedback
    s = bench.score(ex, "I think the pattern is a rotation but I cannot produce it.")
    assert not s.correct and s.extracted["outputs"][0]["grid"] is None and "no grid found" in s.feedback
    assert s.reason == "no answer found"


def test_arc_max_cells_filter():
    small = get_benchmark("arc", max_cells=800)
    exs = small.load("train", 0)
    full = get_benchmark("arc").load("train", 0)
    assert 0 < len(exs) < len(full) and all(e.meta["cells"] <= 800 for e in exs)
    assert {e.id for e in exs} <= {e.id for e in full}


def test_arc_max_cells_test_split_draws_n_test_from_the_tasks_that_fit():
    test = get_benchmark("arc", max_cells=600, n_test=3).load("test", 0)
    assert len(test) == 3 and all(e.meta["cells"] <= 600 for e in test)
    # a filter every task passes draws exactly what no filter draws
    unfiltered = get_benchmark("arc").load("test", 0)
    assert [e.id for e in unfiltered] == [e.id for e in get_benchmark("arc", max_cells=10**9).load("test", 0)]
