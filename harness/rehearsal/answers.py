"""Replies of the simulated task agent in each benchmark's own answer format, right or wrong on purpose.

Right answers come from the benchmark's gold (MBPP: its reference code); wrong ones are near misses the
benchmark's scorer rejects (another integer or letter, a grid with one cell changed, two Sudoku cells
swapped, a function that raises). A reply is an elided-reasoning line followed by the answer; a reply cut
at the token cap keeps only the reasoning, so it holds no answer.
"""

from __future__ import annotations

from typing import Any

from harness.benchmarks.base import Example

Grid = list[list[int]]


def _grid(g: Grid) -> str:
    return "\n".join(" ".join(str(c) for c in row) for row in g)


def _nudge(g: Grid, r: float) -> Grid:
    """The grid with one cell changed (a wrong answer of the right shape)."""
    out = [list(row) for row in g]
    cells = [(i, j) for i, row in enumerate(out) for j in range(len(row))]
    i, j = cells[int(r * len(cells)) % len(cells)]
    out[i][j] = (out[i][j] + 1) % 10
    return out


def aime(ex: Example, right: bool, r: float) -> str:
    n = int(ex.answer) if right else (int(ex.answer) + 1 + int(r * 997)) % 1000
    return f"Therefore the answer is \\boxed{{{n}}}."


def gpqa(ex: Example, right: bool, r: float) -> str:
    letters = "ABCD"
    if right:
        return f"Answer: {ex.answer}"
    others = [x for x in letters if x != ex.answer]
    return f"Answer: {others[int(r * 3) % 3]}"


def arc(ex: Example, right: bool, r: float) -> str:
    wants: list[Grid] = ex.answer
    grids = [g if right else _nudge(g, r) for g in wants]
    if len(grids) == 1:
        return f"The output grid:\n{_grid(grids[0])}"
    return "\n\n".join(f"Test output {k}:\n{_grid(g)}" for k, g in enumerate(grids, 1))


def sudoku(ex: Example, right: bool, r: float) -> str:
    sol: Grid | None = ex.answer
    if sol is None:  # a puzzle without a stored solution (source: norvig): the givens, never valid
        return f"Completed grid:\n{_grid(ex.meta['givens'])}"
    if not right:
        sol = [list(row) for row in sol]
        row = sol[int(r * len(sol)) % len(sol)]
        row[0], row[1] = row[1], row[0]
    return f"Completed grid:\n{_grid(sol)}"


def mbpp(ex: Example, right: bool, r: float, reference: str | None) -> str:
    code = (reference or "").replace("\r\n", "\n").strip()
    ep = ex.meta.get("entry_point") or "solution"
    if not right or not code:
        code += (f"\n\n\ndef {ep}(*args, **kwargs):\n    raise NotImplementedError('simulated wrong answer')"
                 if code else f"def {ep}(*args, **kwargs):\n    return None")
    return f"```python\n{code}\n```"


def answer(bench: str, ex: Example, right: bool, r: float, reference: Any = None) -> str:
    """The final answer part of a reply for `bench` (a canonical benchmark name)."""
    if bench == "mbpp":
        return mbpp(ex, right, r, reference)
    fn = {"aime": aime, "gpqa": gpqa, "arc": arc, "sudoku": sudoku}.get(bench)
    if fn is None:  # a custom task: the gold as text, or a wrong string
        return f"Answer: {ex.answer}" if right else "Answer: (simulated wrong answer)"
    return fn(ex, right, r)
