"""MLflow's GEPA beside this project's on the same grid cells of a loopback world (tests/api_world.py), within
one budget and on one ledger; the `--methods` filter; `sepo-bench export` (file and prompt registry)."""

from __future__ import annotations

import json

import pytest
import yaml

from harness.cli import main
from harness.config import load_config
from harness.experiment import Experiment, RunOptions
from tests.api_world import Agent, kw, rows
from tests.loopback import LoopbackServer

BUDGET = 40
GEPA = {"max_metric_calls": 200, "val_size": 4}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A grid config over a custom task of the scripted world, its server, and the finished grid."""
    tmp = tmp_path_factory.mktemp("grid")
    data = tmp / "world.jsonl"
    data.write_text("".join(json.dumps({"id": f"w{i}", "question": r["question"], "answer": f"ANSWER {r['answer']}"})
                            + "\n" for i, r in enumerate(rows(40))))
    with LoopbackServer(reply=Agent()) as srv:
        ep = {"base_url": srv.url, "backoff_base_s": 0.01}
        cfg = {"name": "peers", "output_dir": str(tmp / "runs"), "seeds": [0], "system_prompt": "You answer short "
               "questions.", "benchmarks": [{"name": "custom", "options": {"path": str(data), "scorer": "exact",
                                                                           "task_name": "world"}}],
               "llm": {"task": {**ep, "model": "task", "max_tokens": 16}, "prompt": {**ep, "model": "prompt",
                                                                                     "max_tokens": 400},
                       "cache": {"path": str(tmp / "cache.sqlite"), "mode": "off"}},
               "methods": {"gepa": GEPA, "mlflow-gepa": GEPA, "mlflow-metaprompt": {"train_size": 8}},
               "budget_per_cell": {"max_evaluations": BUDGET},
               "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"}}
        path = tmp / "peers.yaml"
        path.write_text(yaml.safe_dump(cfg))
        rows_out = Experiment(load_config(path), RunOptions(methods=["gepa", "mlflow-gepa"])).run()
        prompt_requests = sum(b["model"] == "prompt" for b in srv.requests)
        yield path, rows_out, prompt_requests, srv


def test_methods_filter_runs_only_those_cells(world):
    _, rows_out, _, _ = world
    assert sorted(r["method"] for r in rows_out) == ["gepa", "mlflow-gepa"]


def test_mlflow_gepa_and_gepa_on_the_same_cells_within_the_budget(world):
    _, rows_out, prompt_requests, _ = world
    by = {r["method"]: r for r in rows_out}
    for method, row in by.items():
        u = row["usage"]
        assert u["total"]["evaluations"] <= BUDGET and row["stopped"] == "budget", method
        assert set(u) == {"task", "prompt", "total"} and u["prompt"]["requests"] > 0, method  # one ledger, same units
        assert row["best_test"] > row["initial_test"] and kw("alpha") in row["best_prompt"], method
        ids = {c["id"] for c in row["candidates"]}
        assert all(c["parent_id"] is None or c["parent_id"] in ids for c in row["candidates"]), method
    pool = [c for c in by["mlflow-gepa"]["candidates"] if c["meta"]["stage"] == "pool"]
    assert pool and all(len(c["meta"]["val_example_ids"]) == 4 and all(str(i).startswith("w") for i in
                                                                         c["meta"]["val_example_ids"]) for c in pool)
    # every reflection call of MLflow's GEPA went through the bridge onto the cell's ledger
    assert sum(r["usage"]["prompt"]["requests"] for r in rows_out) == prompt_requests


def test_mlflow_metaprompt_cell(world):
    path, _, _, _ = world
    (row,) = Experiment(load_config(path), RunOptions(methods=["mlflow-metaprompt"])).run()
    assert [c["id"] for c in row["candidates"]] == ["mp-0", "mp-1"] and row["best_id"] == "mp-1"
    assert row["usage"]["total"]["evaluations"] == 16 and row["best_test"] == 1.0 > row["initial_test"]


def test_export_to_file_and_registry(world, tmp_path, capsys):
    path, rows_out, _, _ = world
    row = next(r for r in rows_out if r["method"] == "mlflow-gepa")
    out = tmp_path / "best.json"
    assert main(["export", "--config", str(path), "--method", "mlflow-gepa", "--benchmark", "custom:world",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["prompt"] == row["best_prompt"] and doc["scores"]["test"] == row["best_test"]
    assert doc["lineage"][0]["parent_id"] is None and doc["lineage"][-1]["id"] == row["best_id"]
    assert all(b["parent_id"] == a["id"] for a, b in zip(doc["lineage"], doc["lineage"][1:], strict=False))

    assert main(["export", "--config", str(path), "--method", "gepa", "--benchmark", "custom:world",
                 "--register", "world-best", "--alias", "champion"]) == 0
    assert "prompts:/world-best/1" in capsys.readouterr().out
    from harness.experiment import open_tracker

    client = open_tracker(load_config(path)).client
    gepa_row = next(r for r in rows_out if r["method"] == "gepa")
    assert client.get_prompt_version_by_alias("world-best", "champion").template == gepa_row["best_prompt"]

    run_dir = load_config(path).run_dir  # without the run folder's results, from MLflow alone
    for f in ("results.json", "results.jsonl"):
        (run_dir / f).rename(run_dir / f"{f}.away")
    try:
        assert main(["export", "--config", str(path), "--method", "mlflow-gepa", "--benchmark", "custom:world",
                     "--out", str(out)]) == 0
        assert json.loads(out.read_text()) == doc
    finally:
        for f in ("results.json", "results.jsonl"):
            (run_dir / f"{f}.away").rename(run_dir / f)
    assert main(["export", "--config", str(path), "--method", "espl", "--benchmark", "custom:world"]) == 2
    assert "No finished cell espl" in capsys.readouterr().err


def test_methods_flag_names_a_method_the_config_lacks(world, capsys):
    path = world[0]
    assert main(["optimize", "--config", str(path), "--methods", "gepa,nope"]) == 2
    assert "--methods names nope" in capsys.readouterr().err
