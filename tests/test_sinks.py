"""The grid reports every cell to its sinks (harness/sinks.py): a sink passed to the Experiment hears each
cell start, each candidate, and each end (finished with the row the results file holds, or failed with its
reason); a sink that knows a cell finished earlier makes the runner skip it without a request."""

from __future__ import annotations

import json
import threading

import pytest

from harness.config import load_config
from harness.experiment import Experiment, RunOptions
from harness.sinks import CellInfo, Sinks
from tests.loopback import LoopbackServer
from tests.test_experiment_grid import SECRET, scripted, write_grid
from tests.test_grid_failures import with_broken_method


class Recorder:
    """A sink that remembers what it heard (cells run in threads: guarded by a lock)."""

    def __init__(self, known: dict | None = None) -> None:
        self.known = known or {}
        self.lock = threading.Lock()
        self.opened: list[CellInfo] = []
        self.candidates: dict[str, list[str]] = {}
        self.ends: dict[str, tuple[str, object]] = {}

    def lookup(self, key):
        return self.known.get(key)

    def open(self, cell: CellInfo):
        with self.lock:
            self.opened.append(cell)
            self.candidates[cell.key] = []
        return Log(self, cell)


class Log:
    def __init__(self, rec: Recorder, cell: CellInfo) -> None:
        self.rec, self.cell = rec, cell

    def candidate(self, cand) -> None:
        with self.rec.lock:
            self.rec.candidates[self.cell.key].append(cand.id)

    def finished(self, row, out) -> None:
        with self.rec.lock:
            self.rec.ends[self.cell.key] = ("finished", row)

    def failed(self, reason, *, interrupted=False) -> None:
        with self.rec.lock:
            self.rec.ends[self.cell.key] = ("failed", reason)


@pytest.fixture
def grid_env(monkeypatch):
    monkeypatch.setenv("SEPO_GRID_KEY", SECRET)


def test_an_extra_sink_hears_every_cell_candidate_and_end(tmp_path, grid_env):
    out = tmp_path / "runs"
    rec = Recorder()
    with LoopbackServer(reply=scripted) as srv:
        cfg_path = write_grid(tmp_path, srv.url, out)
        with_broken_method(cfg_path, tmp_path)
        rows = Experiment(load_config(cfg_path), RunOptions(), sinks=[rec]).run()
    assert len(rec.opened) == len(rows) == 12 and len({c.key for c in rec.opened}) == 12
    by_key = {r["cell_key"]: r for r in rows}
    results = {r["cell_key"]: r for r in map(json.loads, (out / "grid" / "results.jsonl").read_text().splitlines())}
    for cell in rec.opened:
        kind, what = rec.ends[cell.key]
        if cell.method == "broken":
            assert kind == "failed" and "no-such-pstar" in what and results[cell.key]["status"] == "failed"
            continue
        assert kind == "finished" and what is by_key[cell.key]
        # the extra sink runs after MLflow and the results file: it sees the row as they wrote it
        assert what["mlflow_run_id"] and results[cell.key] == json.loads(json.dumps(what, default=str))
        assert rec.candidates[cell.key] == [c["id"] for c in what["candidates"]]
        assert cell.records_stem.endswith(f"seed{cell.seed}") and (out / "grid" / "records" /
                                                                   f"{cell.method}-{cell.records_stem}.jsonl").is_file()


def test_a_cell_a_sink_already_holds_is_skipped_without_requests(tmp_path, grid_env):
    out = tmp_path / "runs"
    with LoopbackServer(reply=scripted) as srv:
        cfg_path = write_grid(tmp_path, srv.url, out)
        cfg_path.write_text(cfg_path.read_text() + "tracking: {enabled: false}\n")
        opts = RunOptions(methods=["manual-cot"], benchmarks=["custom:alpha"], seeds=[0])
        first = Experiment(load_config(cfg_path), opts).run()
        assert len(first) == 1 and first[0]["status"] == "finished"
        paid = len(srv.requests)
        for name in ("results.jsonl", "results.json"):  # only the extra sink knows the cell now
            (out / "grid" / name).unlink()
        known = Recorder({first[0]["cell_key"]: first[0]})
        again = Experiment(load_config(cfg_path), opts, sinks=[known]).run()
        assert again == first and len(srv.requests) == paid and known.opened == []


def test_sinks_fan_out_in_order_and_the_first_lookup_wins():
    calls: list[str] = []

    class Named:
        def __init__(self, name, held=None):
            self.name, self.held = name, held

        def lookup(self, key):
            calls.append(f"lookup {self.name}")
            return self.held

        def open(self, cell):
            calls.append(f"open {self.name}")
            name = self.name

            class L:
                def candidate(self, cand):
                    calls.append(f"candidate {name}")

                def finished(self, row, out):
                    row.setdefault("seen", []).append(name)

                def failed(self, reason, *, interrupted=False):
                    calls.append(f"failed {name} {interrupted}")

            return L()

    sinks = Sinks([Named("a"), Named("b", {"row": 1}), Named("c", {"row": 2})])
    assert sinks.lookup("k") == {"row": 1} and calls == ["lookup a", "lookup b"]
    calls.clear()
    log = sinks.open(CellInfo("k", "m on b, seed 0", "m", "m", "b", 0, "b-seed0"))
    log.candidate(object())
    row: dict = {}
    log.finished(row, None)
    log.failed("KeyboardInterrupt: interrupted", interrupted=True)
    assert calls == ["open a", "open b", "open c", "candidate a", "candidate b", "candidate c",
                     "failed a True", "failed b True", "failed c True"]
    assert row["seen"] == ["a", "b", "c"]
