"""ARC-AGI-1: abstract grid puzzles; demonstrations as text, the predicted output grid must match exactly.

Option max_cells (default: no filter) keeps only examples whose demonstration grids, test input and
expected output hold at most that many cells. A rendered cell costs about two tokens (digit and space), so
max_cells=1200 suits a 4096-token context with a 1024-token reply (226 of 335 train examples and 171 of
419 test examples have at most 1000 cells). The filter runs after splitting, so it never moves a task
between splits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import answers, data, splits
from harness.benchmarks.base import Benchmark, Example, Score, Split, register
from harness.config import ConfigError

Grid = list[list[int]]


def render(grid: Grid) -> str:
    """One row per line, digits separated by spaces."""
    return "\n".join(" ".join(str(c) for c in row) for row in grid)


def cells(grid: Grid) -> int:
    return sum(len(row) for row in grid)


def question(task: dict[str, Any], test_input: Grid) -> str:
    parts = [
        (
            "Find the rule that turns each input grid into its output grid, then apply it to the test "
            "input. Grids are rows of digits 0-9 (colours), one row per line."
        )
    ]
    for k, pair in enumerate(task["train"], 1):
        parts.append(f"Example {k}\nInput:\n{render(pair['input'])}\nOutput:\n{render(pair['output'])}")
    parts.append(f"Test input:\n{render(test_input)}")
    parts.append(
        "End your reply with the test output grid in the same format: one row per line, digits "
        "separated by spaces."
    )
    return "\n\n".join(parts)


@register("arc")
class ARC(Benchmark):
    description = (
        "ARC-AGI-1 (Abstraction and Reasoning Corpus): each task shows a few input/output pairs of small "
        "coloured grids (digits 0-9, one row per line, digits separated by spaces) that follow a hidden "
        "transformation rule; the model must infer the rule and produce the output grid for a new test "
        "input. The last grid in the reply (plain rows of digits, or a JSON list of lists, fences are "
        "fine) is compared exactly, shape included. Up to 3 attempts per example count (pass@3)."
    )
    attempts = 3
    max_tokens = 1024

    def __init__(self, data_dir: str | None = None, **options: Any) -> None:
        data.check_options("arc", options, ("max_cells",))
        super().__init__(data_dir, **options)
        if data.source_of(options) == "hub":
            raise ConfigError(
                "ARC-AGI-1 is read from local files only: use source: local with SEPO_DATA_DIR."
            )
        self.max_cells: int | None = options.get("max_cells")
        self._tasks: dict[str, dict[str, dict[str, Any]]] = {}

    def tasks(self, part: str) -> dict[str, dict[str, Any]]:
        """All tasks of 'training' or 'evaluation', by task id."""
        if part not in self._tasks:
            folder = data.local_file(self.data_dir, f"arc_agi_1/data/{part}", f"ARC-AGI-1 ({part})")
            files = sorted(Path(folder).glob("*.json"))
            if not files:
                raise data.DatasetMissing(
                    f"ARC-AGI-1 data not found: {folder} holds no task files; "
                    f"set {data.ENV_VAR} or data_dir in the config."
                )
            self._tasks[part] = {f.stem: json.loads(f.read_text()) for f in files}
        return self._tasks[part]

    def load(self, split: Split, seed: int) -> list[Example]:
        splits.check_split(split)
        if split == "test":
            part = "evaluation"
            ids = splits.subsample(
                list(self.tasks(part)), splits.requested(self.options, "test"), seed, "arc"
            )
        else:
            part = "training"
            ids = splits.shuffled_split(
                list(self.tasks(part)),
                split,
                seed,
                splits.FRACTIONS["arc"],
                "arc",
                self.options,
                with_test=False,
            )
        out = []
        for tid in ids:
            task = self.tasks(part)[tid]
            demo = sum(cells(p["input"]) + cells(p["output"]) for p in task["train"])
            for k, pair in enumerate(task["test"]):
                size = demo + cells(pair["input"]) + cells(pair["output"])
                if self.max_cells is not None and size > self.max_cells:
                    continue
                eid = tid if len(task["test"]) == 1 else f"{tid}#{k}"
                meta = {"task_id": tid, "part": part, "cells": size}
                out.append(Example(eid, question(task, pair["input"]), pair["output"], meta))
        return out

    def score(self, example: Example, response: str) -> Score:
        grid = answers.last_grid(response or "")
        if grid is None:
            return Score(0.0, False, "no grid found: end with the output grid, one row of digits per line.")
        got = [[int(c) for c in row] for row in grid]
        want: Grid = example.answer
        if got == want:
            return Score(1.0, True, "correct grid", got)
        shape_got, shape_want = (len(got), len(got[0])), (len(want), len(want[0]))
        if shape_got != shape_want:
            fb = f"wrong shape: expected {shape_want[0]}x{shape_want[1]}, got {shape_got[0]}x{shape_got[1]}"
        else:
            bad = sum(a != b for ra, rb in zip(got, want, strict=True) for a, b in zip(ra, rb, strict=True))
            fb = f"wrong grid: {bad} of {cells(want)} cells differ"
        return Score(0.0, False, f"{fb}\nexpected:\n{render(want)}", got)
