"""ARC-AGI-1: abstract grid puzzles; demonstrations as text, the predicted output grids must match exactly.

Scored per task, as the official ARC-AGI-1 scoring does: one Example per task (its id is the task id);
a task with several test inputs shows them all and asks for one output grid per input, and the task
counts by the fraction of its test outputs solved (Score.value; Score.correct when all are). The
per-output verdicts stay in Score.extracted ({"outputs": [{"index", "solved", "grid"}, ...]}). pass@k is
per output: `combine_attempts` merges the attempts at a task, an output counting as solved when any
attempt solved it.

Extraction (strict, harness.answers): for a one-output task, the last well-formed grid block in the reply
(rows of digits; markdown rules such as `---` end a block, a stray number line after the grid is not a
grid, a JSON list of lists on one line counts, box-drawing bars `│` are bars). For a task with n outputs:
for each k, the last grid after the last "Test output k" label that a grid follows (prose mentioning "test
output 2" later is not a label), unless n more grids follow the last labelled one (an unlabelled revision
of every output, taken in order); without labels, the last n grid blocks in order.

Option max_cells (default: no filter) keeps only tasks whose demonstration grids, test inputs and expected
outputs hold at most that many cells. A rendered cell costs about two tokens (digit and space), so
max_cells=1200 suits a 4096-token context with a 1024-token reply. Train and val are filtered after
splitting, so the filter never moves a task between them (they may hold fewer than asked); the test split
(the evaluation tasks) draws its n_test from the tasks that fit.
"""

from __future__ import annotations

import json
import re
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


def task_cells(task: dict[str, Any]) -> int:
    """Cells of a task's demonstrations, test inputs and expected outputs (what max_cells bounds)."""
    return sum(cells(p["input"]) + cells(p["output"]) for p in task["train"] + task["test"])


def question(task: dict[str, Any], test_inputs: Grid | list[Grid]) -> str:
    """The prompt for a task: demonstrations, then the test input (or all of them, numbered)."""
    if test_inputs and isinstance(test_inputs[0][0], int):
        test_inputs = [test_inputs]  # one grid
    parts = [
        (
            "Find the rule that turns each input grid into its output grid, then apply it to the test "
            "input. Grids are rows of digits 0-9 (colours), one row per line."
        )
    ]
    for k, pair in enumerate(task["train"], 1):
        parts.append(f"Example {k}\nInput:\n{render(pair['input'])}\nOutput:\n{render(pair['output'])}")
    if len(test_inputs) == 1:
        parts.append(f"Test input:\n{render(test_inputs[0])}")
        parts.append(
            "End your reply with the test output grid in the same format: one row per line, digits "
            "separated by spaces."
        )
    else:
        for k, grid in enumerate(test_inputs, 1):
            parts.append(f"Test input {k}:\n{render(grid)}")
        parts.append(
            f"There are {len(test_inputs)} test inputs. End your reply with their output grids in order, each "
            f"after a line 'Test output k:' (k = 1..{len(test_inputs)}), in the same format: one row per line, "
            "digits separated by spaces."
        )
    return "\n\n".join(parts)


def find_outputs(response: str, n: int) -> list[Grid | None]:
    """The reply's grid for each of n test outputs (see the module docstring)."""
    def ints(g: list[list[str]]) -> Grid:
        return [[int(c) for c in row] for row in g]

    if n == 1:
        g = answers.last_grid(response)
        return [ints(g) if g is not None else None]
    labels = list(re.finditer(r"test\s+output\s*#?\s*(\d+)", response, flags=re.IGNORECASE))
    segments: dict[int, list] = {}  # output index -> grids after its last label that is followed by one
    last_seg: list = []
    for i, m in enumerate(labels):
        end = labels[i + 1].start() if i + 1 < len(labels) else len(response)
        grids = [g for _, g in answers.extract_grids(response[m.end() : end])]
        if grids and 1 <= int(m.group(1)) <= n:
            segments[int(m.group(1)) - 1] = grids
            last_seg = grids
    if len(last_seg) > n:  # an unlabelled revision of every output after the last labelled grid
        return [ints(g) for g in last_seg[-n:]]
    if segments:
        return [ints(segments[k][-1]) if k in segments else None for k in range(n)]
    grids = [g for _, g in answers.extract_grids(response)][-n:]
    return [ints(g) for g in grids] if len(grids) == n else [None] * n


@register("arc")
class ARC(Benchmark):
    description = (
        "ARC-AGI-1 (Abstraction and Reasoning Corpus): each task shows a few input/output pairs of small "
        "coloured grids (digits 0-9, one row per line, digits separated by spaces) that follow a hidden "
        "transformation rule; the model must infer the rule and produce the output grid for a new test "
        "input. The last grid in the reply (plain rows of digits, or a JSON list of lists, fences are "
        "fine) is compared exactly, shape included; a task with several test inputs wants one grid per "
        "input, each after 'Test output k:'. A task scores the fraction of its test outputs solved, up to "
        "3 attempts per task (pass@3 per output)."
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

    def fits(self, task: dict[str, Any]) -> bool:
        return self.max_cells is None or task_cells(task) <= self.max_cells

    def load(self, split: Split, seed: int) -> list[Example]:
        splits.check_split(split)
        if split == "test":  # the evaluation part is the test split alone: filter first, then draw n_test
            part = "evaluation"
            fitting = [t for t, task in self.tasks(part).items() if self.fits(task)]
            ids = splits.subsample(fitting, splits.requested(self.options, "test"), seed, "arc")
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
            if not self.fits(task):
                continue
            size = task_cells(task)
            inputs = [p["input"] for p in task["test"]]
            outputs = [p["output"] for p in task["test"]]
            meta = {"task_id": tid, "part": part, "cells": size, "n_outputs": len(outputs)}
            out.append(Example(tid, question(task, inputs), outputs, meta))
        return out

    def score(self, example: Example, response: str) -> Score:
        wants: list[Grid] = example.answer
        got = find_outputs(response or "", len(wants))
        outputs, feedback = [], []
        for k, (g, want) in enumerate(zip(got, wants, strict=True)):
            solved = g == want
            outputs.append({"index": k, "solved": solved, "grid": g})
            label = f"output {k + 1}: " if len(wants) > 1 else ""
            if g is None:
                feedback.append(f"{label}no grid found: end with the output grid, one row of digits per line.")
            elif solved:
                feedback.append(f"{label}correct grid")
            else:
                feedback.append(label + _difference(g, want))
        return self._score(outputs, wants, feedback)

    def _score(self, outputs: list[dict], wants: list[Grid], feedback: list[str]) -> Score:
        n_ok = sum(o["solved"] for o in outputs)
        value = n_ok / len(wants)
        if all(o["grid"] is None for o in outputs):
            reason = "no answer found"
        elif n_ok == len(wants):
            reason = "correct"
        else:
            reason = f"{n_ok} of {len(wants)} outputs solved" if len(wants) > 1 else "wrong grid"
        return Score(value, n_ok == len(wants), "\n".join(feedback), {"outputs": outputs}, reason)

    def combine_attempts(self, example: Example, scores: list[Score]) -> Score:
        """pass@k per output: an output is solved when any attempt solved it (the last attempt's grids and
        feedback are kept for the outputs no attempt solved)."""
        if len(scores) <= 1 or not all(isinstance(s.extracted, dict) for s in scores):
            return scores[-1]
        outputs = [dict(o) for o in scores[-1].extracted["outputs"]]
        for s in scores[:-1]:
            for o in s.extracted["outputs"]:
                if o["solved"] and not outputs[o["index"]]["solved"]:
                    outputs[o["index"]] = dict(o)
        lines = scores[-1].feedback.split("\n")
        feedback = ["correct grid (an earlier attempt)" if o["solved"] and not last["solved"] else line
                    for o, last, line in zip(outputs, scores[-1].extracted["outputs"], lines, strict=False)]
        return self._score(outputs, example.answer, feedback)


def _difference(got: Grid, want: Grid) -> str:
    shape_got, shape_want = (len(got), len(got[0])), (len(want), len(want[0]))
    if shape_got != shape_want:
        fb = f"wrong shape: expected {shape_want[0]}x{shape_want[1]}, got {shape_got[0]}x{shape_got[1]}"
    else:
        bad = sum(a != b for ra, rb in zip(got, want, strict=True) for a, b in zip(ra, rb, strict=True))
        fb = f"wrong grid: {bad} of {cells(want)} cells differ"
    return f"{fb}\nexpected:\n{render(want)}"
