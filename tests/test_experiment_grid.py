"""The experiment runner end to end over the loopback server, into a real MLflow store.

A 2 methods x 2 benchmarks x 2 seeds grid runs through `sepo-bench optimize`; then everything is rebuilt
from MLflow alone (every candidate's prompt, the lineage, every cell's test score) and compared with the
runner's own results. A SIGKILL mid-grid and a rerun give the same results as an uninterrupted run, with
no duplicate MLflow run, no lost cell and no repeated paid request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from tests.loopback import LoopbackServer
from tests.worlds import write_echo_task

SECRET = "sk-grid-SECRET-7d1e99"


def scripted(body):
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    user = body["messages"][-1]["content"]
    if "<prompt>" in system or "prompt engineer" in system.lower() or "system prompt" in user.lower()[:400]:
        return "The answers ignore the number.\n<prompt>Be careful: reply with the number only.</prompt>"
    number = user.split()[-1].rstrip("?")
    return f"Answer: {number}" if "careful: reply" in system.lower() else "Answer: 0"


def write_grid(tmp: Path, url: str, out: Path, name: str = "grid") -> Path:
    for task in ("alpha", "beta"):
        write_echo_task(tmp / f"{task}.jsonl", 40, tag=task)
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(f"""
name: {name}
output_dir: {out}
seeds: [0, 1]
system_prompt: Answer.
benchmarks:
  - {{name: custom, n_test: 4, options: {{path: {tmp}/alpha.jsonl, scorer: exact, task_name: alpha}}}}
  - {{name: custom, n_test: 4, options: {{path: {tmp}/beta.jsonl, scorer: exact, task_name: beta}}}}
methods:
  manual-cot: {{minibatch: 4}}
  sepo-no-self-improve: {{generations: 1, children: 2, minibatch: 4, feedback_per_side: 1, val_top_n: 1}}
llm:
  cache: {{path: {out}/cache.sqlite}}
  task: {{base_url: '{url}', model: task, api_key_env: SEPO_GRID_KEY}}
  prompt: {{base_url: '{url}', model: agent, api_key_env: SEPO_GRID_KEY}}
""")
    return cfg


def cells_by_key(rows):
    return {(r["method"], r["benchmark"], r["seed"]): r for r in rows}


@pytest.fixture
def grid_env(monkeypatch):
    monkeypatch.setenv("SEPO_GRID_KEY", SECRET)


def test_grid_is_rebuilt_from_mlflow_alone(tmp_path, grid_env):
    from harness.tracking import load_experiment

    out = tmp_path / "runs"
    with LoopbackServer(reply=scripted) as srv:
        cfg = write_grid(tmp_path, srv.url, out)
        assert main(["optimize", "--config", str(cfg)]) == 0
        paid = len(srv.requests)
        rows = json.loads((out / "grid" / "results.json").read_text())["results"]
        assert len(rows) == 8 and len(cells_by_key(rows)) == 8
        assert main(["optimize", "--config", str(cfg)]) == 0  # rerun: every cell found finished
        assert len(srv.requests) == paid
    data = load_experiment(f"sqlite:///{out / 'mlflow.db'}", "grid")
    assert len(data.cells) == 8 and data.cells["cell_key"].nunique() == 8
    for r in rows:
        cell = data.cells[data.cells["run_id"] == r["mlflow_run_id"]].iloc[0]
        assert cell["test_accuracy"] == pytest.approx(r["best_test"])
        cands = data.candidates[data.candidates["run_id"] == r["mlflow_run_id"]]
        mine = {c["id"]: c for c in r["candidates"]}
        assert set(cands["id"]) == set(mine)
        for _, c in cands.iterrows():
            assert c["prompt"] == mine[c["id"]]["prompt"]
            assert (c["parent_id"] or None) == mine[c["id"]]["parent_id"]
        tests = data.records[(data.records["run_id"] == r["mlflow_run_id"]) & (data.records["split"] == "test")]
        assert len(tests) == r["test"]["n"] and tests["correct"].mean() == pytest.approx(r["best_test"])
    sepo = [r for r in rows if r["method"] == "sepo-no-self-improve"]
    assert all(r["best_test"] == 1.0 and r["initial_test"] == 0.0 for r in sepo)  # the scripted world is learnable
    stored = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert SECRET.encode() not in stored


def _run_cli(cfg: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).with_name("sepo-bench")), "optimize", "--config", str(cfg)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_mid_grid_then_resume_matches_an_uninterrupted_run(tmp_path, grid_env):
    from harness.tracking import load_experiment

    env = {**os.environ, "SEPO_GRID_KEY": SECRET}
    with LoopbackServer(reply=scripted, latency_s=0.02) as srv:
        (tmp_path / "a").mkdir()
        whole = write_grid(tmp_path / "a", srv.url, tmp_path / "a" / "runs")
        assert main(["optimize", "--config", str(whole)]) == 0
        uninterrupted = [json.dumps(b, sort_keys=True) for b in srv.requests]
        ref = cells_by_key(json.loads((tmp_path / "a" / "runs" / "grid" / "results.json").read_text())["results"])

        (tmp_path / "b").mkdir()
        out = tmp_path / "b" / "runs"
        cfg = write_grid(tmp_path / "b", srv.url, out)
        before = len(srv.requests)
        proc = _run_cli(cfg, env)
        results, live = out / "grid" / "results.json", out / "grid" / "results.jsonl"  # live: appended per cell

        def n_live() -> int:
            return len(live.read_text().splitlines()) if live.exists() else 0

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if n_live() >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finished = n_live()
        assert 3 <= finished < 8, "the kill must land mid-grid"
        assert not results.exists()  # the whole table is written once, when a run ends
        assert main(["optimize", "--config", str(cfg)]) == 0
        resumed = [json.dumps(b, sort_keys=True) for b in srv.requests[before:]]
    rows = cells_by_key(json.loads(results.read_text())["results"])
    assert set(rows) == set(ref)
    for k, r in rows.items():
        assert (r["best_test"], r["initial_test"], r["best_prompt"]) == (
            ref[k]["best_test"], ref[k]["initial_test"], ref[k]["best_prompt"]), k
        assert [c["id"] for c in r["candidates"]] == [c["id"] for c in ref[k]["candidates"]]
    # The same requests as the uninterrupted run; only those in flight at the kill (at most the endpoint's
    # concurrency, 4) were sent twice: every finished reply was reused from the cache.
    assert set(resumed) == set(uninterrupted)
    assert len(resumed) - len(set(resumed)) <= 4
    data = load_experiment(f"sqlite:///{out / 'mlflow.db'}", "grid")
    assert len(data.cells) == 8 and data.cells["cell_key"].nunique() == 8  # no duplicate runs
    assert set(data.cells["status"]) == {"FINISHED"}
