"""Where a cell's progress and outcome go: the results file, MLflow and the console, behind one protocol.

The runner opens each sink for a cell (`Sink.open(CellInfo) -> CellLog`) and reports to the logs it gets
back: every candidate, then the cell's end (`finished(row, outcome)` or `failed(reason)`). A sink can also
say whether a cell finished in an earlier run (`lookup(key)`), so a rerun skips it. `Sinks` fans one call
out to several sinks in order: the MLflow sink adds its run id to the row before the results file writes it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness import schema
from harness.cell import CellOutcome
from harness.evaluator import EvalResult, Record
from harness.files import write_atomic
from harness.optimizer import Candidate


@dataclass(frozen=True)
class CellInfo:
    """What the sinks know of a cell when it starts."""

    key: str  # hash of everything that changes its result
    label: str  # "method on benchmark, seed N"
    method: str  # the run name in `methods:`
    base: str  # the registered method it runs
    benchmark: str
    seed: int
    records_stem: str  # file stem of its per-example records (benchmark entry, seed)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    family: str = ""
    ablation_of: str | None = None
    register_as: str | None = None  # MLflow prompt registry name of its best prompt


class CellLog(Protocol):
    def candidate(self, cand: Candidate) -> None: ...
    def finished(self, row: dict[str, Any], out: CellOutcome) -> None: ...
    def failed(self, reason: str, *, interrupted: bool = False) -> None:
        """A cell that raised (recorded, the grid goes on), or one interrupted by Ctrl-C (it resumes)."""


class Sink(Protocol):
    def lookup(self, key: str) -> dict[str, Any] | None:
        """The row of a cell finished in an earlier run, if this sink holds it."""

    def open(self, cell: CellInfo) -> CellLog: ...


class Sinks:
    """Several sinks as one: lookups ask each in order; a cell's log forwards every call to each sink's log."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def lookup(self, key: str) -> dict[str, Any] | None:
        return next((row for s in self.sinks if (row := s.lookup(key)) is not None), None)

    def open(self, cell: CellInfo) -> CellLog:
        return _Fanout([s.open(cell) for s in self.sinks])


@dataclass
class _Fanout:
    logs: list[CellLog]

    def candidate(self, cand: Candidate) -> None:
        for log in self.logs:
            log.candidate(cand)

    def finished(self, row: dict[str, Any], out: CellOutcome) -> None:
        for log in self.logs:
            log.finished(row, out)

    def failed(self, reason: str, *, interrupted: bool = False) -> None:
        for log in self.logs:
            log.failed(reason, interrupted=interrupted)


@dataclass
class _Log:
    """A cell's log at one sink; what a subclass does not override is ignored."""

    sink: Any
    cell: CellInfo

    def candidate(self, cand: Candidate) -> None:
        pass

    def finished(self, row: dict[str, Any], out: CellOutcome) -> None:
        pass

    def failed(self, reason: str, *, interrupted: bool = False) -> None:
        pass


# ---- the results file ------------------------------------------------------------------------------
class ResultsFile:
    """results.jsonl: one line per finished (or failed) cell, appended the moment it ends (the newest line of
    a cell wins); results.json, the whole table, is written once when the run ends. A results.json of an
    earlier run is read too."""

    def __init__(self, path: Path) -> None:
        self.path = path  # results.json
        self.journal = path.with_suffix(".jsonl")
        self.lock = threading.Lock()
        data = json.loads(path.read_text()) if path.is_file() else {}
        rows: dict[str, dict[str, Any]] = {r["cell_key"]: r for r in data.get("results", []) if "cell_key" in r}
        if self.journal.is_file():
            for line in self.journal.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut off by a kill
                    continue
                rows[row["cell_key"]] = row
        self.by_key = rows

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.by_key.values())

    def finished(self, key: str) -> dict[str, Any] | None:
        row = self.by_key.get(key)
        return row if row is not None and row.get("status", "finished") == "finished" else None

    def add(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.by_key[row["cell_key"]] = row
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with self.journal.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row, default=str) + "\n")

    def write(self, header: dict[str, Any]) -> None:
        with self.lock:
            write_atomic(self.path, json.dumps({**header, "results": self.rows}, indent=2, default=str))


def write_records(path: Path, records: list[Record]) -> None:
    write_atomic(path, "".join(json.dumps(asdict(r), default=str) + "\n" for r in records))


class ResultsSink:
    """results.jsonl (every finished or failed cell) and records/ (per-example records of both prompts)."""

    def __init__(self, results: ResultsFile, records_dir: Path) -> None:
        self.results, self.records_dir = results, records_dir

    def lookup(self, key: str) -> dict[str, Any] | None:
        return self.results.finished(key)

    def open(self, cell: CellInfo) -> CellLog:
        return _ResultsLog(self, cell)


class _ResultsLog(_Log):
    def finished(self, row: dict[str, Any], out: CellOutcome) -> None:
        c = self.cell
        write_records(self.sink.records_dir / f"{c.method}-{c.records_stem}.jsonl", out.test.records)
        write_records(self.sink.records_dir / f"initial-{c.records_stem}.jsonl", out.initial.records)
        self.sink.results.add(row)

    def failed(self, reason: str, *, interrupted: bool = False) -> None:
        if not interrupted:
            c = self.cell
            self.sink.results.add({"cell_key": c.key, "method": c.method, "base_method": c.base,
                                   "benchmark": c.benchmark, "seed": c.seed, "status": "failed", "error": reason})


# ---- MLflow ----------------------------------------------------------------------------------------
class MlflowSink:
    """One MLflow run per cell (harness.tracking.Tracker): params, tags, every candidate with its lineage,
    metrics, records, the best prompt registered; a failed cell's run ends FAILED with its reason."""

    def __init__(self, tracker, *, simulated: bool = False) -> None:
        self.tracker, self.simulated = tracker, simulated

    def lookup(self, key: str) -> dict[str, Any] | None:
        found = self.tracker.find_finished_cell(key)
        return found.get("result") or None if found else None

    def open(self, cell: CellInfo) -> CellLog:
        run = self.tracker.start_cell(cell.key, method=cell.method, benchmark=cell.benchmark, seed=cell.seed,
                                      params=cell.params, tags=cell.tags, family=cell.family,
                                      ablation_of=cell.ablation_of, simulated=self.simulated)
        return _MlflowLog(run, cell)


@dataclass
class _MlflowLog:
    run: Any  # harness.tracking.CellRun
    cell: CellInfo

    def candidate(self, cand: Candidate) -> None:
        self.run.log_candidate(cand)

    def finished(self, row: dict[str, Any], out: CellOutcome) -> None:
        res, u = out.result, out.usage["total"]
        metrics = {"test_accuracy": out.test.accuracy, "initial_test_accuracy": out.initial.accuracy,
                   "best_train_score": res.best.train_score or 0.0, "requests": u["requests"],
                   "tokens": u["tokens"], "usd": u["usd"], "cache_hits": u["cache_hits"],
                   "evaluations": u["evaluations"], "wall_s": out.wall_s, "n_test": out.n_final,
                   "n_candidates": len(res.candidates)}
        if res.best.val_score is not None:
            metrics["best_val_score"] = res.best.val_score
        extra = res.extra or {}
        prompts = {"prompt_agent": extra["prompt_agent"]} if extra.get("prompt_agent") else {}
        row["mlflow_run_id"] = self.run.run_id
        self.run.log_tags({schema.TARGET_IN_POOL: str(row["target_in_pool"]).lower()})
        self.run.finish(metrics=metrics, test_records=out.test.records, initial_records=out.initial.records,
                        best_prompt=res.best.prompt, extra_prompts=prompts, register_as=self.cell.register_as,
                        result=row, stopped=row["stopped"], schedule_complete=row["stopped"] is None,
                        max_tokens=row["reply_cap"], stage_keys=row["stage_keys"])

    def failed(self, reason: str, *, interrupted: bool = False) -> None:
        self.run.fail(reason)


# ---- the console -----------------------------------------------------------------------------------
def summarize(res: EvalResult, asked: int) -> dict[str, Any]:
    """What a reader needs to trust a score: examples run vs asked, cut-off replies, unparseable answers."""
    recs = res.records
    return {"n": len(recs), "asked": asked, "correct": sum(r.correct for r in recs),
            "accuracy": round(res.accuracy, 4), "truncated": sum(r.truncated for r in recs),
            "unparseable": sum(r.extracted is None and not r.correct for r in recs),
            "cache_hits": sum(r.cached for r in recs), "tokens": res.tokens}


def describe(summary: dict[str, Any]) -> str:
    s = summary
    extra = [f"{s['truncated']} cut off at the token cap" if s["truncated"] else "",
             f"{s['unparseable']} with no parseable answer" if s["unparseable"] else "",
             f"{s['cache_hits']} from the cache" if s["cache_hits"] else ""]
    more = "; ".join(x for x in extra if x)
    asked = f" (asked {s['asked']})" if s["asked"] != s["n"] else ""
    return f"{s['correct']}/{s['n']} correct{asked}, accuracy {s['accuracy']:.3f}" + (f"; {more}" if more else "")


class ConsoleSink:
    """One line when a cell starts, its candidates when `show_candidates` (one cell at a time), and its
    scores and spending when it ends, with the run's progress (`spent()`: the run ledger's total)."""

    def __init__(self, say: Callable[[str], None], total_cells: int, spent: Callable[[], Any], *,
                 show_candidates: bool = False) -> None:
        self.say, self.total, self.spent, self.show = say, total_cells, spent, show_candidates
        self.lock = threading.Lock()
        self.done = 0

    def lookup(self, key: str) -> dict[str, Any] | None:
        return None

    def open(self, cell: CellInfo) -> CellLog:
        self.say(f"== {cell.label}")
        return _ConsoleLog(self, cell)


class _ConsoleLog(_Log):
    def candidate(self, cand: Candidate) -> None:
        if self.sink.show:
            self.sink.say(f"  candidate {cand.id} <- {cand.parent_id}: train {cand.train_score}")

    def finished(self, row: dict[str, Any], out: CellOutcome) -> None:
        s, u, stopped = self.sink, out.usage["total"], row["stopped"]
        with s.lock:
            s.done += 1
            done = s.done
        spent = s.spent()
        s.say(f"== done: {self.cell.label} ({out.wall_s:.0f} s)"
              + (f" STOPPED ({stopped}) before its schedule ended" if stopped else "") + "\n"
              f"  test accuracy: initial {out.initial.accuracy:.3f} -> best {out.test.accuracy:.3f} "
              f"({out.n_final} examples; {describe(row['test'])})\n"
              f"  cell spent {u['evaluations']:.0f} evaluations, {u['requests']:.0f} requests, "
              f"{u['tokens']:.0f} tokens, ${u['usd']:.4f}; [{done}/{s.total} cells] run so far "
              f"{spent.requests} requests, {spent.tokens} tokens, ${spent.usd:.4f}")

    def failed(self, reason: str, *, interrupted: bool = False) -> None:
        if not interrupted:
            self.sink.say(f"== FAILED: {self.cell.label}: {reason}")
