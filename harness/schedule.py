"""When each job of a grid runs: shared stages and the cells that need none start at once (heaviest first, so
the tail of the grid is short); a stage's cells start when it ends. One worker runs everything in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from harness.stages import Stage

HEAVY_FIRST = {"sepo": 0, "textgrad": 1, "espl": 2, "gepa": 3}  # registered-name prefix -> order; others 5


def weight(cell) -> int:
    """Cells with the longest schedules first (lower sorts first)."""
    return next((v for k, v in HEAVY_FIRST.items() if cell.base.startswith(k)), 5)


def workers(setting: int | str, llms, jobs: int) -> int:
    """How many cells and stages run at once: `parallel_cells`, where auto is the endpoints' task + prompt
    concurrency (1 on the embedded model), never more than there are jobs."""
    p = setting
    if p == "auto":
        embedded = llms.task.endpoint.embedded or (llms.prompt is not None and llms.prompt.endpoint.embedded)
        p = 1 if embedded else llms.task.endpoint.max_concurrency + (
            llms.prompt.endpoint.max_concurrency if llms.prompt is not None else 0)
    return max(1, min(p, jobs))


def schedule(cells: list, stages: dict[str, Stage], *, parallel: int, run_stage: Callable[[Stage], None],
             run_cell: Callable[[Any, bool], dict[str, Any]], say: Callable[[str], None] = print,
             ) -> list[dict[str, Any]]:
    """Run every stage and cell; `run_cell(cell, show)` returns the cell's row (show: one job at a time, so
    its progress may print). Rows in grid order."""
    rows: dict[int, dict[str, Any]] = {}
    if parallel <= 1:
        for st in stages.values():
            run_stage(st)
        for i, c in enumerate(cells):
            rows[i] = run_cell(c, True)
        return [rows[i] for i in range(len(cells))]
    say(f"{parallel} cells and stages at once")
    index = {id(c): i for i, c in enumerate(cells)}
    waiting = {id(c) for st in stages.values() for c in st.cells}
    futures: list[Future] = []
    lock = threading.Lock()
    with ThreadPoolExecutor(parallel) as pool:

        def cell(i: int) -> None:
            rows[i] = run_cell(cells[i], False)

        def stage_then_cells(st: Stage) -> None:
            run_stage(st)
            with lock:  # a failed stage's cells run too: each fails with StageMissing, recorded
                futures.extend(pool.submit(cell, index[id(c)]) for c in sorted(st.cells, key=weight))

        with lock:
            futures.extend(pool.submit(stage_then_cells, st) for st in stages.values())
            futures.extend(pool.submit(cell, i) for i in sorted(range(len(cells)), key=lambda i: weight(cells[i]))
                           if id(cells[i]) not in waiting)
        n = 0
        while True:
            with lock:
                pending, n = futures[n:], len(futures)
            if not pending:
                break
            for f in pending:
                f.result()  # a cell records its own failure; this raises only on Ctrl-C or a bug
    return [rows[i] for i in range(len(cells)) if i in rows]
