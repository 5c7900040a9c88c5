"""Answer extraction tables (issue 20): every reply the issue names, plus replies written to fool the scorer.

Rule: an answer that names more than one candidate is wrong; the final answer is the last committed one;
formatting the field's checkers accept is read.
"""

from __future__ import annotations

import random

import pytest

from harness import answers
from harness.benchmarks.aime import AIME
from harness.benchmarks.arc import find_outputs, render
from harness.benchmarks.base import Example
from harness.benchmarks.gpqa import GPQA
from harness.benchmarks.sudoku import Sudoku, random_solution

# ---- GPQA: (reply, letter or None, hedged?) --------------------------------------------------------------

GPQA_TABLE: list[tuple[str, str | None, bool]] = [
    # named in issue 20: hedges read as a letter
    ("Answer: A, B, C or D", None, True),
    ("Answer: A or B", None, True),
    ("Answer: A/B", None, True),
    ("Answer: A lot of evidence points to C", None, False),
    ("\\boxed{B}\\boxed{A}", None, True),
    # named in issue 20: formats not read
    ("Reasoning...\n\n**Answer:**\nB", "B", False),
    ("Reasoning...\n\n**Answer:**\n\nB", "B", False),
    ("Answer: \\(A\\)", "A", False),
    ("Answer: [A]", "A", False),
    ("Answer: \\textbf{A}", "A", False),
    ("Answer: Option A", "A", False),
    # formats the field's checkers accept
    ("The answer is (B).", "B", False),
    ("Answer: **C**", "C", False),
    ("Answer: $\\boxed{\\text{D}}$", "D", False),
    ("Answer: B) 42 nm", "B", False),
    ("Answer: A is correct because of symmetry.", "A", False),
    ("answer: c", "C", False),
    # the last committed answer
    ("Answer: B\n\nOn reflection:\nAnswer: C", "C", False),
    ("Answer: B. Wait, actually it's C.", "C", False),
    ("\\boxed{A}\n\nHmm, maybe D is also plausible.", "A", False),
    # attacks: more than one candidate, or none
    ("Answer: (A) or (B)", None, True),
    ("Answer: A and C", None, True),
    ("Answer: B|C", None, True),
    ("Answer: B & D", None, True),
    ("Answer: A B", None, True),
    ("\\boxed{A} or \\boxed{B}", None, True),
    ("Answer: C\n\\boxed{C}\\boxed{D}", None, True),
    ("\\boxed{A}\\boxed{A}", "A", False),
    ("Answer: ABCD", None, False),
    ("Answer: E", None, False),
    ("Answer: a bit more thought is needed", None, False),
    ("Answer: the grader should accept any letter", None, False),
    ("A) ... B) ... C) ... D) ... all seem right.", None, False),
    ("Answer: B a classic case", "B", False),
]


@pytest.mark.parametrize(("reply", "letter", "hedged"), GPQA_TABLE, ids=[r for r, _, _ in GPQA_TABLE])
def test_gpqa_letter_table(reply, letter, hedged) -> None:
    assert answers.find_letter(reply) == (letter, answers.HEDGED if hedged else "")
    s = GPQA().score(Example("q", "?", "B", {}), reply)
    assert s.correct is (letter == "B")
    assert s.reason == ("hedged answer" if hedged else "no answer found" if letter is None
                        else "correct" if letter == "B" else "wrong answer")


# ---- AIME: (reply, reason) with gold 468 for a question asking for m+n ------------------------------------

AIME_TABLE: list[tuple[str, str]] = [
    # named in issue 20: credited as 468
    ("So the answer is 469 (or possibly 468).", "hedged answer"),
    ("\\boxed{469 \\lor 468}", "hedged answer"),
    ("\\boxed{469 | 468}", "hedged answer"),
    ("\\boxed{469}\\boxed{468}", "hedged answer"),
    ("\\boxed{468.0000000001}", "not an integer 0-999"),
    ("\\boxed{468}^{2}", "not an integer 0-999"),
    ("So the answer is 468. Hmm, wait, actually it's 469.", "wrong answer"),
    # named in issue 20: not read
    ("Thus \\boxed{m+n=468}", "correct"),
    ("Summing up.\n\n**Final Answer**\n\n468", "correct"),
    ("## Final Answer\n468", "correct"),
    # formats the field's checkers accept
    ("\\boxed{468}", "correct"),
    ("\\boxed{0468}", "correct"),
    ("\\boxed{468.0}", "correct"),
    ("\\boxed{\\text{468}}", "correct"),
    ("\\boxed{467 + 1}", "correct"),
    ("\\boxed{468}^\\circ", "correct"),
    ("The answer is $m + n = 468$.", "correct"),
    ("\\boxed{469}, no wait, actually it's 468.", "correct"),
    ("The answer is 468. Actually, it is 468.", "correct"),
    ("\\boxed{468}\n\nHmm, but maybe 469 works too.", "correct"),  # an afterthought is not an answer
    ("\\boxed{468}\n\nWait, let me verify: 17_b is 1 \\cdot b + 7, fine.", "correct"),  # a check, not a revision
    ("The answer is 469.\n\nWait, actually the answer should be 468.", "correct"),
    # attacks
    ("\\boxed{468} or \\boxed{469}", "hedged answer"),
    ("\\boxed{468, 469}", "hedged answer"),
    ("\\boxed{468 \\text{ or } 469}", "hedged answer"),
    ("\\boxed{468}\\quad\\boxed{469}", "hedged answer"),
    ("Answer: between 400 and 500", "hedged answer"),
    ("\\boxed{468}\\boxed{468}", "correct"),
    ("\\boxed{x + 1 = 469}", "not an integer 0-999"),
    ("\\boxed{468!}", "not an integer 0-999"),
    ("\\boxed{468 \\pm 1}", "not an integer 0-999"),
    ("468", "no answer found"),
    ("The numbers 468, 469 and 470 are candidates.", "no answer found"),
]


@pytest.mark.parametrize(("reply", "reason"), AIME_TABLE, ids=[r for r, _ in AIME_TABLE])
def test_aime_table(reply, reason) -> None:
    ex = Example("q", "Let m and n be ... Find $m+n$.\n\nPut your final answer in \\boxed{}.", 468, {})
    s = AIME().score(ex, reply)
    assert s.reason == reason, (reply, s)
    assert s.correct is (reason == "correct")


# ---- ARC: (reply, number of outputs, expected grids) ----------------------------------------------------------

G1, G2, D1, D2 = [[1, 2], [3, 4]], [[5, 6], [7, 8]], [[0, 0], [0, 0]], [[9, 9], [9, 9]]
BOXED = "┌───┬───┐\n│ 1 │ 2 │\n├───┼───┤\n│ 3 │ 4 │\n└───┴───┘"
ARC_TABLE: list[tuple[str, str, int, list]] = [
    ("labelled drafts, then an unlabelled final revision",
     f"Test output 1:\n{render(D1)}\n\nTest output 2:\n{render(D2)}\n\nWait, corrected:\n{render(G1)}\n\n"
     f"{render(G2)}\n", 2, [G1, G2]),
    ("box-drawing bars", "│ 1 │ 2 │\n│ 3 │ 4 │", 1, [G1]),
    ("box-drawn grid with borders", f"Output:\n{BOXED}\n", 1, [G1]),
    ("prose mentioning test output 2 after the grids",
     f"Test output 1:\n{render(G1)}\n\nTest output 2:\n{render(G2)}\n\nNote that test output 2 mirrors "
     "test output 1.", 2, [G1, G2]),
    ("a revision inside one label", f"Test output 1:\n{render(D1)}\nNo, fixed:\n{render(G1)}\n\nTest output 2:\n"
     f"{render(G2)}\n", 2, [G1, G2]),
    ("one output: draft then final", f"Output:\n{render(D1)}\n\nActually the final grid is:\n{render(G1)}", 1, [G1]),
    ("labels out of order", f"Test output 2:\n{render(G2)}\n\nTest output 1:\n{render(G1)}\n", 2, [G1, G2]),
    ("a label with no grid", f"Test output 1:\n{render(G1)}\n\nTest output 2: same as above", 2, [G1, None]),
]


@pytest.mark.parametrize(("name", "reply", "n", "want"), ARC_TABLE, ids=[r[0] for r in ARC_TABLE])
def test_arc_table(name, reply, n, want) -> None:
    assert find_outputs(reply, n) == want


# ---- Sudoku: (reply, solved?) ------------------------------------------------------------------------------

SOL = random_solution(9, random.Random(3))
GIVENS = [[v if (r + c) % 3 else 0 for c, v in enumerate(row)] for r, row in enumerate(SOL)]
TEXT = "\n".join(" ".join(map(str, row)) for row in SOL)
BANDS = "\n\n".join("\n".join(" ".join(map(str, row)) for row in SOL[b : b + 3]) for b in (0, 3, 6))
BARS = "\n".join(" │ ".join(" ".join(map(str, row[k : k + 3])) for k in (0, 3, 6)) for row in SOL)
RULE = "───────┼───────┼───────\n"
BOXES = "\n".join((RULE if r in (3, 6) else "") + line for r, line in enumerate(BARS.split("\n")))
WRONG = "\n".join(" ".join(map(str, row[::-1])) for row in SOL)  # rows reversed: keeps no givens
SHORT = "\n".join(" ".join(map(str, row[: 8 if r == 4 else 9])) for r, row in enumerate(SOL))
SUDOKU_TABLE: list[tuple[str, str, str]] = [
    ("bands separated by blank lines", f"Solution:\n\n{BANDS}\n", "correct"),
    ("box-drawing bars", f"{BARS}\n", "correct"),
    ("box-drawing bars and joints", f"{BOXES}\n", "correct"),
    ("plain grid", TEXT, "correct"),
    ("malformed final attempt after a valid grid", f"{TEXT}\n\nHmm, final:\n{SHORT}\n", "no answer found"),
    ("a wrong-shaped final attempt", f"{TEXT}\n\nFinal:\n" + "\n".join(TEXT.split("\n")[:4]), "no answer found"),
    ("a wrong grid after the right one", f"{TEXT}\n\nActually:\n{WRONG}", "invalid grid"),
    ("the right grid after a wrong one", f"{WRONG}\n\nFixed:\n{TEXT}", "correct"),
    ("a stray number after the grid", f"{TEXT}\n\n45\n", "correct"),
]


@pytest.mark.parametrize(("name", "reply", "reason"), SUDOKU_TABLE, ids=[r[0] for r in SUDOKU_TABLE])
def test_sudoku_table(name, reply, reason) -> None:
    ex = Example("s", "?", SOL, {"givens": GIVENS, "size": 9, "blanks": 27})
    s = Sudoku().score(ex, reply)
    assert s.reason == reason, (name, s.feedback)
