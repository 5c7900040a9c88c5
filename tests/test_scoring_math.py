"""Math answer conformance: (gold, reply's final answer, equal?) through harness.math_equiv, the one place that
decides answer equality (math-verify plus the harness's rules), and AIME's integer rule."""

from __future__ import annotations

import pytest

from harness.math_equiv import aime_answer, aime_equal, math_equal

MATH_TABLE: list[tuple[str, str, bool]] = [
    # leading zeros are digits, never a product
    ("70", "070", True),
    ("80", "070", False),
    ("7", "007", True),
    ("0", "000", True),
    ("100", "0100", True),
    ("70", "0 \\cdot 70", False),
    # equations: the left side is not dropped unless it is a single variable
    ("6", "x+1=6", False),
    ("6", "x = 6", True),
    ("6", "2x = 6", False),
    ("a=2, b=3", "a=7, b=3", False),
    ("a=2, b=3", "a=2, b=3", True),
    ("a=2, b=3", "b=3, a=2", True),
    ("y=2x+1", "y=1+2x", True),
    ("y=2x+1", "y=2x+2", False),
    ("9", "x = 3^{2}", True),
    # unordered lists
    ("1, 2, 3", "3, 2, 1", True),
    ("1,2,3", "3,1,2", True),
    ("1, 2", "1,2", True),
    ("1, 2, 3", "1, 2", False),
    ("1, 2, 3", "1, 2, 4", False),
    ("-1, 5", "5, -1", True),
    # tuples and intervals
    ("(1, 2)", "(1,2)", True),
    ("(1, 2)", "\\left(1, 2\\right)", True),
    ("[1, 2)", "\\left[1, 2\\right)", True),
    ("[1, 2)", "(1, 2]", False),
    ("(1, 2)", "(2, 1)", False),
    ("(-\\infty, 3]", "(-\\infty, 3]", True),
    ("(-\\infty, 3]", "(-\\infty, 3)", False),
    ("\\{1, 2\\}", "\\{2, 1\\}", True),
    ("\\{1, 2\\}", "\\{3\\}", False),
    # \left / \right
    ("\\frac{1}{2}", "\\left(\\frac{1}{2}\\right)", True),
    ("3", "\\left(3\\right)", True),
    # units
    ("5", "5\\text{ cm}", True),
    ("5", "5 \\text{cm}", True),
    ("12", "12\\text{ inches}", True),
    ("5", "6\\text{ cm}", False),
    ("90", "90^\\circ", True),
    # percent
    ("10\\%", "10\\%", True),
    ("10\\%", "10", True),
    ("0.1", "10\\%", True),
    ("10\\%", "20\\%", False),
    # thousands separators
    ("1000", "1{,}000", True),
    ("1000", "1,000", True),
    ("1000000", "1,000,000", True),
    ("1000", "1\\,000", True),
    ("1000", "1{,}001", False),
    # \dfrac and fractions
    ("\\frac{1}{2}", "\\dfrac{1}{2}", True),
    ("\\frac{1}{2}", "\\tfrac{1}{2}", True),
    ("\\frac12", "\\dfrac{1}{2}", True),
    ("\\frac{1}{2}", "0.5", True),
    ("\\frac{1}{3}", "0.33", False),
    ("\\frac{2}{3}", "\\frac{4}{6}", True),
    ("\\frac{3}{4}", "\\frac{4}{3}", False),
    # roots
    ("2\\sqrt{2}", "\\sqrt{8}", True),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}", True),
    ("3", "\\sqrt[3]{27}", True),
    ("\\sqrt{2}", "\\sqrt{3}", False),
    ("2\\sqrt{2}", "2.8284271247461903", True),
    # pi
    ("\\pi", "\\pi", True),
    ("\\frac{\\pi}{4}", "\\pi/4", True),
    ("2\\pi", "\\pi \\cdot 2", True),
    ("\\pi", "3.14", False),
    ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}", False),
    # negatives
    ("-3", "-3", True),
    ("-3", "3", False),
    ("-\\frac{1}{2}", "-0.5", True),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True),
    ("-5", "- 5", True),
    # expressions and other wrong answers that must be rejected
    ("2x+1", "1+2x", True),
    ("x^2", "x^{2}", True),
    ("2 \\cdot 3", "6", True),
    ("6", "7", False),
    ("\\frac{1}{2}", "2", False),
    ("", "5", False),
    ("5", "", False),
    ("5", "I do not know", False),
    ("1", "9^{9^{9^{9}}}", False),  # refused before evaluation, not computed
    ("\\infty", "\\infty", True),
]

AIME_TABLE: list[tuple[int, str, int | None]] = [
    (70, "70", 70),
    (70, "070", 70),
    (7, "007", 7),
    (0, "000", 0),
    (70, "\\frac{140}{2}", 70),
    (70, "\\text{70}", 70),
    (70, "70.0", 70),
    (70, "x = 70", 70),
    (70, "1000", None),  # out of range
    (70, "-70", None),
    (70, "\\frac{1}{2}", None),  # not an integer: no answer, not a fallback to another number
    (70, "70 \\text{ and } 49", None),
    (70, "x + 1 = 71", None),
]


@pytest.mark.parametrize(("gold", "reply", "equal"), MATH_TABLE, ids=[f"{g}|{r}" for g, r, _ in MATH_TABLE])
def test_math_table(gold, reply, equal) -> None:
    assert math_equal(reply, gold) is equal


def test_math_table_size() -> None:
    assert len(MATH_TABLE) >= 60


@pytest.mark.parametrize(("gold", "reply", "value"), AIME_TABLE, ids=[r for _, r, _ in AIME_TABLE])
def test_aime_table(gold, reply, value) -> None:
    assert aime_answer(reply) == value
    assert aime_equal(reply, gold) is (value == gold)


def test_hostile_strings_are_not_evaluated() -> None:
    for hostile in ("__import__('os').system('echo hi')", "(1).__class__", "exec('1')", "\\input{/etc/passwd}",
                    "x" * 5000):
        assert math_equal(hostile, "1") is False
