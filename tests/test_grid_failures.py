"""The grid never dies of one cell: a cell that raises is recorded as failed (results.jsonl, MLflow, console),
the other cells finish, the run exits non-zero naming it, and a rerun retries only the failed cells.
Also: a per-cell budget smaller than one step of a method is refused before any request."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.config import ConfigError, load_config
from harness.experiment import Experiment
from tests.loopback import LoopbackServer
from tests.test_experiment_grid import SECRET, scripted, write_grid


@pytest.fixture
def grid_env(monkeypatch):
    monkeypatch.setenv("SEPO_GRID_KEY", SECRET)


def with_broken_method(cfg_path, tmp_path, parallel: int = 3) -> None:
    text = cfg_path.read_text().replace("methods:\n", "methods:\n  broken: {method: sepo-generalist, "
                                        f"prompt_agent_path: {tmp_path}/no-such-pstar}}\n")
    cfg_path.write_text(text + f"parallel_cells: {parallel}\n")


def test_a_failing_cell_is_recorded_and_the_others_finish(tmp_path, grid_env, capsys):
    from harness.tracking import load_experiment

    out = tmp_path / "runs"
    with LoopbackServer(reply=scripted) as srv:
        cfg = write_grid(tmp_path, srv.url, out)
        with_broken_method(cfg, tmp_path)
        assert main(["optimize", "--config", str(cfg)]) == 1
        said = capsys.readouterr().out
        rows = json.loads((out / "grid" / "results.json").read_text())["results"]
        failed = [r for r in rows if r["status"] == "failed"]
        finished = [r for r in rows if r["status"] == "finished"]
        assert len(failed) == 4 and {r["method"] for r in failed} == {"broken"}
        assert all("no-such-pstar" in r["error"] for r in failed)
        assert len(finished) == 8  # 2 methods x 2 benchmarks x 2 seeds, all done beside the failures
        assert "4 cell(s) FAILED" in said and said.count("  broken on custom, seed ") == 4
        paid = len(srv.requests)
        assert main(["optimize", "--config", str(cfg)]) == 1  # the rerun retries the failed cells only
        again = capsys.readouterr().out
        assert again.count("finished earlier") == 8 and again.count("== FAILED") == 4
        assert len(srv.requests) == paid
    data = load_experiment(f"sqlite:///{out / 'mlflow.db'}", "grid")
    runs = data.cells
    assert set(runs[runs["method"] == "broken"]["status"]) == {"FAILED"}
    assert set(runs[runs["method"] != "broken"]["status"]) == {"FINISHED"}


def test_a_budget_smaller_than_one_step_is_refused_before_any_request(tmp_path, grid_env):
    with LoopbackServer(reply=scripted) as srv:
        cfg = write_grid(tmp_path, srv.url, tmp_path / "runs")
        cfg.write_text(cfg.read_text() + "budget_per_cell: {max_evaluations: 3}\n")
        with pytest.raises(ConfigError, match="smaller than one step of manual-cot"):
            Experiment(load_config(cfg))
        assert srv.requests == []
