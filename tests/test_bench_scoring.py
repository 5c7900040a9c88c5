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
    "The bases are 21 and 49, and 21 + 49 = 70",
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
    assert answers.extract_int("To answer this, compute 3+4 and more.\nSo we get 7") == 7
    assert answers.extract_int("\\boxed{1,000}") == 1000
    assert answers.extract_number("The answer is -3.5 m/s.") == -3.5
    assert answers.final_answer("blah\nAnswer: Paris.") == "Paris"


# ---- GPQA ------------------------------------------------------------------------------------------


def test_gpqa_correct_formats(gpqa):
    bench, exs = gpqa
    for ex in exs[:20]:
        L = ex.answer
        text = ex.meta["options"]["ABCD".index(L)]
        for reply in (
            f"Reasoning about the options...\n\nAnswer: {L}",
            f"The correct option is ({L}).",
            f"**{L}**",
            f"Therefore the answer is $\\boxed{{{L}}}$.",
            f"Let me think. Option A seems plausible, but it fails. The answer is {L}) {text}",
            f"ANSWER: {L}",
            f"Final answer: **{L}**",
            f"{L}",
        ):
            s = bench.score(ex, reply)
            assert s.correct and s.extracted == L, (reply, s)


def test_gpqa_wrong_and_unparseable(gpqa):
    bench, exs = gpqa
    ex = exs[0]
    other = next(L for L in "ABCD" if ex.answer != L)
    s = bench.score(ex, f"Considering {ex.answer} first, I reject it.\nAnswer: {other}")
    assert not s.correct and s.extracted == other and f"expected {ex.answer}" in s.feedback
    s = bench.score(ex, "I am not sure about any of these.")
    assert not s.correct and s.extracted is None and "no answer letter" in s.feedback
    s = bench.score(ex, "Hmm. A careful reading of the options does not settle it.")  # the article, no answer
    assert not s.correct and s.extracted is None
    assert bench.score(ex, f"After checking, {ex.answer} is right.").correct


# ---- ARC -------------------------------------------------------------------------------------------


def test_arc_question_renders_real_task(arc):
    bench, exs = arc
    ex = exs[0]
    task = bench.tasks("evaluation")[ex.meta["task_id"]]
    assert render(task["train"][0]["input"]) in ex.question
    assert ex.question.count("Example ") == len(task["train"])
    assert len(exs) == 419 and sum("#" in e.id for e in exs) > 0  # multi-test tasks give several examples


def test_arc_correct_formats(arc):
    bench, exs = arc
    for ex in exs[:15]:
        g = ex.answer
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
        ):
            s = bench.score(ex, reply)
            assert s.correct and s.extracted == g, (ex.id, reply, s)


def test_arc_wrong_and_unparseable(arc):
    bench, exs = arc
    ex = next(e for e in exs if len(e.answer) > 2 and len(e.answer[0]) > 2)
    g = [row[:] for row in ex.answer]
    g[0][0] = (g[0][0] + 1) % 10
    s = bench.score(ex, f"Output:\n{render(g)}")
    assert not s.correct and "1 of" in s.feedback and "cells differ" in s.feedback
    s = bench.score(ex, f"Output:\n{render(ex.answer[:-1])}")
    assert not s.correct and "wrong shape" in s.feedback
    s = bench.score(ex, "I think the pattern is a rotation but I cannot produce it.")
    assert not s.correct and s.extracted is None and "no grid found" in s.feedback


def test_arc_max_cells_filter():
    small = get_benchmark("arc", max_cells=800)
    exs = small.load("train", 0)
    full = get_benchmark("arc").load("train", 0)
    assert 0 < len(exs) < len(full) and all(e.meta["cells"] <= 800 for e in exs)
    assert {e.id for e in exs} <= {e.id for e in full}
