"""Sudoku: generator uniqueness and blank counts (4x4 and 9x9), disjoint splits, rule-checking scorer."""

from __future__ import annotations

import random

import pytest

from harness.benchmarks import get_benchmark
from harness.benchmarks.sudoku import check, count_solutions, generate, render


def blanks(grid):
    return sum(v == 0 for row in grid for v in row)


@pytest.mark.parametrize(("n", "k"), [(4, 6), (4, 10), (9, 30), (9, 45), (9, 52)])
def test_generator_unique_solution_and_blank_count(n, k):
    for seed in range(5):
        puzzle, solution = generate(n, k, random.Random(seed))
        assert len(puzzle) == n and all(len(r) == n for r in puzzle)
        assert blanks(puzzle) == k
        assert count_solutions(puzzle) == 1
        assert check(solution, puzzle) is None
        assert all(
            p in (0, s) for pr, sr in zip(puzzle, solution, strict=True) for p, s in zip(pr, sr, strict=True)
        )


def test_solution_counter():
    assert count_solutions([[0] * 4 for _ in range(4)], limit=2) == 2
    assert count_solutions([[0] * 4 for _ in range(4)], limit=1000) == 288  # all 4x4 sudokus
    bad = [[1, 1, 0, 0]] + [[0] * 4 for _ in range(3)]
    assert count_solutions(bad) == 0
    with pytest.raises(ValueError, match="blanks must be between"):
        generate(4, 16, random.Random(0))


def test_splits_are_seeded_and_disjoint():
    b = get_benchmark("sudoku", size=4, blanks=8, n_train=30, n_val=20, n_test=30)
    parts = {s: [render(e.meta["givens"]) for e in b.load(s, 0)] for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [30, 20, 30]
    all_puzzles = [p for ps in parts.values() for p in ps]
    assert len(set(all_puzzles)) == len(all_puzzles)  # disjoint, no duplicates
    again = get_benchmark("sudoku", size=4, blanks=8, n_train=30, n_val=20, n_test=30)
    assert [render(e.meta["givens"]) for e in again.load("test", 0)] == parts["test"]
    assert [render(e.meta["givens"]) for e in again.load("test", 1)] != parts["test"]
    # test puzzles do not depend on the train/val sizes
    other = get_benchmark("sudoku", size=4, blanks=8, n_train=5, n_val=5, n_test=30)
    assert [render(e.meta["givens"]) for e in other.load("test", 0)] == parts["test"]
    nine = get_benchmark("sudoku", n_test=5).load("test", 0)
    assert len(nine) == 5 and all(e.meta["blanks"] == 40 and e.meta["size"] == 9 for e in nine)


@pytest.fixture(scope="module")
def nine():
    b = get_benchmark("sudoku", n_test=3)
    return b, b.load("test", 0)[0]


def test_scorer_accepts_solution_in_common_formats(nine):
    bench, ex = nine
    sol = ex.answer
    plain = render(sol)
    boxed = "\n".join(
        ("------+-------+------\n" if r in (3, 6) else "")
        + " | ".join(" ".join(str(v) for v in row[c : c + 3]) for c in (0, 3, 6))
        for r, row in enumerate(sol)
    )
    for reply in (
        f"Here is the solved puzzle:\n\n{plain}",
        f"```\n{plain}\n```\nEach row, column and box is valid.",
        f"Puzzle:\n{render(ex.meta['givens'])}\n\nSolution:\n{boxed}",
        "\n".join("".join(map(str, r)) for r in sol),
        "\n".join(f"Row {i + 1}: {' '.join(map(str, r))}" for i, r in enumerate(sol)),
    ):
        s = bench.score(ex, reply)
        assert s.correct and s.extracted == sol, (reply, s)


def test_scorer_names_the_broken_rule(nine):
    bench, ex = nine
    sol, givens = ex.answer, ex.meta["givens"]
    r, c = next((r, c) for r in range(9) for c in range(9) if givens[r][c] == 0)
    broken = [row[:] for row in sol]
    broken[r][c] = sol[r][(c + 1) % 9]  # a digit already in the row
    s = bench.score(ex, render(broken))
    assert not s.correct and f"row {r + 1} has {broken[r][c]} twice" in s.feedback
    gr, gc = next((r, c) for r in range(9) for c in range(9) if givens[r][c])
    swapped = [row[:] for row in sol]
    swapped[gr][gc] = sol[gr][gc] % 9 + 1
    s = bench.score(ex, render(swapped))
    assert not s.correct and f"must keep the given {givens[gr][gc]}" in s.feedback
    s = bench.score(ex, f"Still working:\n{render(givens)}")
    assert not s.correct and "is empty" in s.feedback
    s = bench.score(ex, "This puzzle is too hard.")
    assert not s.correct and s.extracted is None and "no 9x9 grid" in s.feedback


def test_any_valid_completion_counts():
    # an empty 4x4 board has 288 completions; the scorer must accept one that differs from the stored answer
    bench = get_benchmark("sudoku", size=4)
    ex = bench.load("test", 0)[0]
    from harness.benchmarks.base import Example

    free = Example(
        "free",
        "",
        [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]],
        {"givens": [[0] * 4 for _ in range(4)], "size": 4},
    )
    assert bench.score(free, "2 1 4 3\n4 3 2 1\n1 2 3 4\n3 4 1 2").correct
    s = bench.score(free, "1 2 3 4\n2 1 4 3\n3 4 1 2\n4 3 2 1")
    assert not s.correct and "box 1" in s.feedback
    assert bench.score(ex, render(ex.answer)).correct


def test_norvig_test_set():
    b = get_benchmark("sudoku", source="norvig")
    exs = b.load("test", 0)
    assert len(exs) == 95 + 11 and all(e.meta["size"] == 9 for e in exs)
    assert exs[0].meta["givens"][0][0] == 4  # first line of norvig_top95.txt starts with 4
    assert len(b.load("train", 0)) == 100
    with pytest.raises(ValueError, match="size 9"):
        get_benchmark("sudoku", source="norvig", size=4)
