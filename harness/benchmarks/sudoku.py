"""Sudoku: seeded puzzles with a unique solution (4x4 or 9x9, chosen number of blanks); any valid
completion that keeps the givens counts. Option source=norvig uses Norvig's hard 9x9 sets as the test split.

Extraction (strict, harness.answers.last_grid): the last well-formed n x n grid block in the reply. Box
separators inside a grid (`------+------`, `|`, box-drawing `│` and `───┼───`) are skipped; a markdown
rule (`---`) ends a block, and blocks split only by such rules or by blank lines (bands) are joined when
together they make exactly n x n; a stray number line after the grid is not a grid. The final attempt
counts: a malformed grid after the last well-formed one (a short row, another shape) means no answer,
never a fallback to an earlier grid. Cells are digits ('.' or 0 for a blank, which fails).
"""

from __future__ import annotations

import random
from typing import Any

from harness import answers, data, splits
from harness.benchmarks.base import Benchmark, Example, Score, Split, register
from harness.config import ConfigError

Grid = list[list[int]]  # 0 = blank
DEFAULT_BLANKS = {4: 8, 9: 40}
NORVIG = ("sudoku/norvig_top95.txt", "sudoku/norvig_hardest.txt")


def count_solutions(grid: Grid, limit: int = 2) -> int:
    """Number of solutions, counting up to `limit` (bitmask backtracking, fewest candidates first)."""
    n = len(grid)
    b = int(n**0.5)
    full = (1 << (n + 1)) - 2
    rows, cols, boxes = [0] * n, [0] * n, [0] * n
    empty = []
    for r in range(n):
        for c in range(n):
            v = grid[r][c]
            if v:
                bit, k = 1 << v, (r // b) * b + c // b
                if (rows[r] | cols[c] | boxes[k]) & bit:
                    return 0
                rows[r] |= bit
                cols[c] |= bit
                boxes[k] |= bit
            else:
                empty.append((r, c, (r // b) * b + c // b))

    def solve(todo: list[tuple[int, int, int]]) -> int:
        if not todo:
            return 1
        best, best_free, best_n = 0, 0, n + 1
        for i, (r, c, k) in enumerate(todo):
            free = full & ~(rows[r] | cols[c] | boxes[k])
            cnt = free.bit_count()
            if cnt < best_n:
                best, best_free, best_n = i, free, cnt
                if cnt <= 1:
                    break
        if best_n == 0:
            return 0
        r, c, k = todo[best]
        rest = todo[:best] + todo[best + 1 :]
        found = 0
        while best_free:
            bit = best_free & -best_free
            best_free ^= bit
            rows[r] |= bit
            cols[c] |= bit
            boxes[k] |= bit
            found += solve(rest)
            rows[r] ^= bit
            cols[c] ^= bit
            boxes[k] ^= bit
            if found >= limit:
                break
        return found

    return solve(empty)


def random_solution(n: int, rng: random.Random) -> Grid:
    """A random full grid: the base pattern under random digit, row, column and band permutations."""
    b = int(n**0.5)
    rows = [g * b + r for g in rng.sample(range(b), b) for r in rng.sample(range(b), b)]
    cols = [g * b + c for g in rng.sample(range(b), b) for c in rng.sample(range(b), b)]
    digits = rng.sample(range(1, n + 1), n)
    grid = [[digits[(b * (r % b) + r // b + c) % n] for c in cols] for r in rows]
    return [list(col) for col in zip(*grid, strict=True)] if rng.random() < 0.5 else grid


def generate(n: int, blanks: int, rng: random.Random, tries: int = 50) -> tuple[Grid, Grid]:
    """(puzzle, solution) with exactly `blanks` empty cells and a unique solution."""
    if not 0 < blanks < n * n:
        raise ConfigError(f"blanks must be between 1 and {n * n - 1} for {n}x{n}, got {blanks}.")
    for _ in range(tries):
        solution = random_solution(n, rng)
        puzzle = [row[:] for row in solution]
        removed = 0
        for pos in rng.sample(range(n * n), n * n):
            r, c = divmod(pos, n)
            puzzle[r][c] = 0
            if count_solutions(puzzle) == 1:
                removed += 1
                if removed == blanks:
                    return puzzle, solution
            else:
                puzzle[r][c] = solution[r][c]
    raise ConfigError(
        f"could not make a {n}x{n} puzzle with {blanks} blanks and a unique solution; ask for fewer blanks."
    )


def render(grid: Grid) -> str:
    return "\n".join(" ".join(str(v) if v else "." for v in row) for row in grid)


def check(grid: Grid, givens: Grid) -> str | None:
    """The first broken rule in a completed grid, or None if it is a valid solution keeping the givens."""
    n = len(givens)
    b = int(n**0.5)
    for r in range(n):
        for c in range(n):
            if givens[r][c] and grid[r][c] != givens[r][c]:
                return f"row {r + 1}, column {c + 1} must keep the given {givens[r][c]}, got {grid[r][c]}"
            if not 1 <= grid[r][c] <= n:
                return (
                    f"row {r + 1}, column {c + 1} is {grid[r][c] or 'empty'}; every cell needs a digit 1-{n}"
                )
    units = [(f"row {i + 1}", [(i, c) for c in range(n)]) for i in range(n)]
    units += [(f"column {i + 1}", [(r, i) for r in range(n)]) for i in range(n)]
    units += [
        (
            f"box {i + 1} (rows {i // b * b + 1}-{i // b * b + b}, columns {i % b * b + 1}-{i % b * b + b})",
            [(i // b * b + dr, i % b * b + dc) for dr in range(b) for dc in range(b)],
        )
        for i in range(n)
    ]
    for name, unit in units:
        seen: set[int] = set()
        for r, c in unit:
            if grid[r][c] in seen:
                return f"{name} has {grid[r][c]} twice"
            seen.add(grid[r][c])
    return None


def describe(n: int) -> str:
    b = int(n**0.5)
    return (
        f"Sudoku {n}x{n}: fill every blank ('.') with a digit 1-{n} so that each row, each column and each "
        f"{b}x{b} box contains every digit exactly once, keeping the given digits. Reply with the completed "
        f"grid as {n} lines of {n} digits separated by spaces (the last such grid in the reply is checked; "
        "any valid completion counts). Score: fraction of puzzles solved."
    )


@register("sudoku")
class Sudoku(Benchmark):
    description = describe(9)
    max_tokens = 512

    def __init__(self, data_dir: str | None = None, **options: Any) -> None:
        data.check_options("sudoku", options, ("size", "blanks"))
        super().__init__(data_dir, **options)
        self.size: int = options.get("size", 9)
        if self.size not in (4, 9):
            raise ConfigError(f"sudoku size must be 4 or 9, got {self.size!r}.")
        self.blanks: int = options.get("blanks", DEFAULT_BLANKS[self.size])
        self.source = options.get("source", "generated")
        if self.source not in ("generated", "norvig"):
            raise ConfigError(f"sudoku source must be 'generated' or 'norvig', got {self.source!r}.")
        if self.source == "norvig" and self.size != 9:
            raise ConfigError("sudoku source 'norvig' holds 9x9 puzzles: use size 9.")
        self.max_tokens = 512 if self.size == 9 else 128
        self.description = describe(self.size)
        self._cache: dict[tuple[int, str], list[Example]] = {}

    def _example(self, eid: str, puzzle: Grid, solution: Grid | None) -> Example:
        q = (
            f"Solve this {self.size}x{self.size} Sudoku ('.' marks a blank):\n\n{render(puzzle)}\n\n"
            f"End your reply with the completed grid: {self.size} lines of {self.size} digits separated by "
            "spaces."
        )
        return Example(
            eid,
            q,
            solution,
            {"givens": puzzle, "size": self.size, "blanks": sum(v == 0 for row in puzzle for v in row)},
        )

    def _norvig(self) -> list[Example]:
        out = []
        for rel in NORVIG:
            path = data.local_file(self.data_dir, rel, "Sudoku (Norvig sets)")
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            for k, line in enumerate(lines):
                puzzle = [
                    [int(ch) if ch.isdigit() else 0 for ch in line[r * 9 : r * 9 + 9]] for r in range(9)
                ]
                out.append(self._example(f"{path.stem}-{k + 1}", puzzle, None))
        return out

    def load(self, split: Split, seed: int) -> list[Example]:
        splits.check_split(split)
        if split == "test" and self.source == "norvig":
            return self._norvig()[: splits.requested(self.options, "test")]
        if (seed, split) not in self._cache:
            seen: set[str] = set()
            for s in ("test", "val", "train"):  # test first: its puzzles never depend on train/val sizes
                if s == "test" and self.source == "norvig":
                    continue
                n = splits.requested(self.options, s) or splits.SUDOKU_SIZES[s]
                rng = random.Random(f"sudoku:{self.size}:{self.blanks}:{seed}:{s}")
                examples: list[Example] = []
                misses = 0
                while len(examples) < n:
                    puzzle, solution = generate(self.size, self.blanks, rng)
                    key = render(puzzle)
                    if key in seen:
                        misses += 1
                        if misses > 1000:
                            raise ConfigError(
                                f"only {len(seen)} distinct {self.size}x{self.size} puzzles with "
                                f"{self.blanks} blanks found; ask for fewer examples or more blanks."
                            )
                        continue
                    seen.add(key)
                    examples.append(self._example(f"{s}-{seed}-{len(examples)}", puzzle, solution))
                self._cache[(seed, s)] = examples
        return self._cache[(seed, split)]

    def score(self, example: Example, response: str) -> Score:
        n = example.meta["size"]
        grid = answers.last_grid(response or "", cell=r"[0-9.]", shape=(n, n))
        if grid is None:
            return Score(0.0, False, f"no {n}x{n} grid found: end with {n} lines of {n} digits.", None,
                         "no answer found")
        got = [[int(ch) if ch.isdigit() else 0 for ch in row] for row in grid]
        broken = check(got, example.meta["givens"])
        if broken:
            return Score(0.0, False, f"invalid: {broken}", got, "invalid grid")
        return Score(1.0, True, "valid solution", got, "correct")
