"""harness.tracking: a synthetic grid written through Tracker and rebuilt from MLflow alone (local sqlite
store and a real `mlflow server` on 127.0.0.1), secrets scans, finished-cell lookup and resume."""

from __future__ import annotations

import atexit
import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from harness.config import ConfigError
from harness.evaluator import Record
from harness.optimizer import Candidate
from harness.tracking import CellRun, Tracker, flatten, load_experiment, resolve_uri

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET-7f3a9c2e1b8d4e6f"  # a fake key: it must never reach the store


@functools.cache
def session_store() -> Path:
    """One sqlite store for the whole test session (MLflow spends seconds creating a new store's tables);
    tests and test modules share it under different experiment names."""
    d = Path(tempfile.mkdtemp(prefix="sepo-mlflow-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    Tracker(str(d), "warm-up").check_reachable()
    return d


@pytest.fixture(scope="session")
def store() -> Path:
    return session_store()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ a synthetic grid


def synthetic_cell(rng: random.Random, method: str, bench: str, seed: int, n_cand: int = 7, n_test: int = 12,
                   secret: str | None = None) -> dict:
    """Candidates with a random lineage tree and test records with known outcomes."""
    cands: list[Candidate] = []
    for i in range(n_cand):
        parent = None if i == 0 else rng.choice(cands).id
        gen = 0 if parent is None else next(c.generation for c in cands if c.id == parent) + 1
        text = f"You are solver {i} for {bench} ({method}, seed {seed}).\nThink step by step. {{braces}} ok."
        if secret and i == 2:
            text += f" leaked key {secret}"
        cands.append(Candidate(
            id=f"{method}-{bench}-{seed}-c{i}", prompt=text, parent_id=parent, generation=gen,
            train_score=round(rng.random(), 3), val_score=round(rng.random(), 3) if i % 2 else None,
            meta={"stage": "pretrain" if i < 2 else "finetune", "admitted": i % 3 != 0,
                  "example_ids": [f"tr{j}" for j in rng.sample(range(30), 4)],
                  "cost": {"requests": 5 + i, "tokens": 100 * i, "usd": 0.001 * i},
                  "agent_reply": f"reply {i}" + (f" {secret}" if secret else "")}))
    records = [Record(example_id=f"t{j}", response="r", score=float(ok), correct=ok, feedback="f", attempts=1,
                      prompt_tokens=10 + j, completion_tokens=5, cached=False, truncated=j == 3,
                      extracted=[j, "x"] if j % 2 else str(j), reason="wrong" if not ok else "")
               for j in range(n_test) for ok in [rng.random() < 0.6]]
    best = max(cands, key=lambda c: c.train_score or 0)
    return {"cands": cands, "records": records, "best": best}


def write_cell(tracker: Tracker, method: str, bench: str, seed: int, cell: dict, *, finish: bool = True) -> CellRun:
    run = tracker.start_cell(f"{method}/{bench}/seed{seed}", method=method, benchmark=bench, seed=seed,
                             params={"settings": {"generations": 2, "children": 2, "pool": ["a", "b"]},
                                     "models": {"task": "loopback", "prompt": "loopback"}, "budget": None},
                             tags={"held_out": "false", "local_models": "true"})
    for c in cell["cands"]:
        run.log_candidate(c)
    if finish:
        acc = sum(r.score for r in cell["records"]) / len(cell["records"])
        run.finish(metrics={"test_accuracy": acc, "requests": 42}, test_records=cell["records"],
                   initial_records=cell["records"][::-1], best_prompt=cell["best"].prompt,
                   extra_prompts={"prompt_agent": f"p~* for {bench}"} if method == "sepo" else {},
                   register_as=f"grid.{method}.{bench}.s{seed}", result={"test_accuracy": acc})
    return run


def grid_roundtrip(uri: str, experiment: str, secret: str | None = None, n_cand: int = 7) -> None:
    rng = random.Random(7)
    tracker = Tracker(uri, experiment, secrets=[secret] if secret else [])
    tracker.check_reachable()
    tracker.log_experiment({"name": experiment, "seeds": [0, 1], "llm": {"task": {"api_key_env": "X"}}},
                           f"name: {experiment}\nseeds: [0, 1]\n# {secret}\n", {"commit": "abc123", "dirty": False})
    tracker.log_experiment({"name": experiment, "seeds": [0, 1]}, f"name: {experiment}\nseeds: [0, 1]\n",
                           {"commit": "abc123", "dirty": False})  # idempotent
    written = {}
    for method in ("sepo", "manual-cot"):
        for bench in ("mbpp", "gpqa"):
            for seed in (0, 1):
                cell = synthetic_cell(rng, method, bench, seed, n_cand=n_cand, secret=secret)
                run = write_cell(tracker, method, bench, seed, cell)
                written[run.run_id] = cell
    data = load_experiment(uri, experiment)
    assert len(data.cells) == 8 and set(data.cells.status) == {"FINISHED"}
    assert data.settings["code_version"] == {"commit": "abc123", "dirty": "False"}
    assert "seeds: [0, 1]" in data.settings["config_text"]
    for run_id, cell in written.items():
        row = data.cells.set_index("run_id").loc[run_id]
        acc = sum(r.score for r in cell["records"]) / len(cell["records"])
        assert row["test_accuracy"] == pytest.approx(acc)
        assert row["sepo.held_out"] == "false" and row["param.settings.generations"] == "2"
        got = data.candidates[data.candidates.run_id == run_id].set_index("id")
        assert list(got.index) == [c.id for c in cell["cands"]]
        for c in cell["cands"]:
            g = got.loc[c.id]
            assert g.prompt == (c.prompt.replace(secret, "***") if secret else c.prompt)
            assert (g.parent_id or None) == c.parent_id and g.generation == c.generation
            assert g.train_score == c.train_score and g.stage == c.meta["stage"]
            assert g.example_ids == c.meta["example_ids"] and g.cost_requests == c.meta["cost"]["requests"]
        # the lineage tree rebuilt from MLflow alone equals the written one
        assert dict(zip(got.index, got.parent_id, strict=True)) == {c.id: c.parent_id for c in cell["cands"]}
        recs = data.records[(data.records.run_id == run_id) & (data.records.split == "test")]
        assert list(recs.example_id) == [r.example_id for r in cell["records"]]
        assert list(recs.correct) == [r.correct for r in cell["records"]]
        assert list(recs.truncated) == [r.truncated for r in cell["records"]]
        assert list(recs.tokens) == [r.prompt_tokens + r.completion_tokens for r in cell["records"]]
        ref = row.get("sepo.prompt.best", "")
        assert ref.startswith("prompts:/grid.")
        name, version = ref[len("prompts:/"):].rsplit("/", 1)
        pv = tracker.client.get_prompt_version(name, version)  # registered, and linked back to its run
        assert pv.template == (cell["best"].prompt.replace(secret, "***") if secret else cell["best"].prompt)
        assert pv.tags["sepo.run_id"] == run_id and pv.tags["sepo.role"] == "task"
        if row["method"] == "sepo":
            agent_ref = row["sepo.prompt.prompt_agent"][len("prompts:/"):]
            agent = tracker.client.get_prompt_version(*agent_ref.rsplit("/", 1))
            assert agent.template.startswith("p~* for") and agent.tags["sepo.role"] == "prompt_agent"
    assert set(data.records.split) == {"test", "initial"}


def scan_for(secret: str, *roots: Path) -> list[str]:
    """Every file under roots whose bytes contain the secret."""
    hits = []
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and secret.encode() in p.read_bytes():
                hits.append(str(p))
    return hits


# ------------------------------------------------------------------------------------------- the tests


def test_flatten_and_uri_resolution(tmp_path, monkeypatch):
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}}) == {"a.b": "1", "a.c": "[1, 2]", "d": "None",
                                                                        "e": "{}"}
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(str(tmp_path)) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:1")
    assert resolve_uri(str(tmp_path)) == "http://example.invalid:1"  # the environment beats the default dir
    assert resolve_uri("sqlite:///x.db") == "sqlite:///x.db"  # an explicit URI beats the environment


def test_grid_roundtrip_local_store(store):
    grid_roundtrip(str(store), "grid-local")


def test_secrets_never_reach_the_local_store(store, monkeypatch):
    env_secret = "envkey-5b1e0c7d9a2f4b3c8e6d"
    monkeypatch.setenv("SEPO_TEST_API_KEY", env_secret)  # a key in the environment is scrubbed unasked
    grid_roundtrip(str(store), "grid-secret", secret=SECRET)
    t = Tracker(str(store), "grid-secret", secrets=[SECRET])
    run = t.start_cell("leak/x/seed0", method="leak", benchmark="x", seed=0,
                       params={"endpoint": {"api_key": env_secret, "key2": SECRET}}, tags={"note": SECRET})
    run.log_metrics({f"m_{SECRET}": 1.0})
    run.log_candidate(Candidate(id=f"c-{env_secret}", prompt=f"use {env_secret}", parent_id=None, generation=0))
    run.fail(f"error with {SECRET} and {env_secret}")
    assert scan_for(SECRET, store) == [] and scan_for(env_secret, store) == []
    data = load_experiment(str(store), "grid-secret")
    assert data.candidates.prompt.str.contains(r"\*\*\*").any()


def test_finished_cell_found_and_resume_reuses_the_run(store):
    t = Tracker(str(store), "resume")
    cell = synthetic_cell(random.Random(1), "sepo", "mbpp", 0, n_cand=6)
    key = "sepo/mbpp/seed0"
    assert t.find_finished_cell(key) is None
    run = write_cell(t, "sepo", "mbpp", 0, {**cell, "cands": cell["cands"][:3]}, finish=False)
    # a new process (new Tracker) resumes: same run, candidates re-reported are not logged twice
    t2 = Tracker(str(store), "resume")
    run2 = write_cell(t2, "sepo", "mbpp", 0, cell)
    assert run2.run_id == run.run_id and run2.resumed
    found = t2.find_finished_cell(key)
    assert found["run_id"] == run.run_id and found["metrics"]["test_accuracy"] == found["result"]["test_accuracy"]
    data = load_experiment(str(store), "resume")
    assert len(data.cells) == 1
    assert list(data.candidates.id) == [c.id for c in cell["cands"]]
    hist = t2.client.get_metric_history(run.run_id, "candidate.train_score")
    assert sorted(m.step for m in hist) == list(range(6))
    # a failed cell is reopened, not duplicated
    failed = t2.start_cell("sepo/mbpp/seed9", method="sepo", benchmark="mbpp", seed=9, params={}, tags={})
    failed.fail("budget reached")
    again = t2.start_cell("sepo/mbpp/seed9", method="sepo", benchmark="mbpp", seed=9, params={}, tags={})
    assert again.run_id == failed.run_id


KILLED_CELL = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from harness.optimizer import Candidate
    from harness.tracking import Tracker
    run = Tracker({store!r}, "killed").start_cell("m/b/seed0", method="m", benchmark="b", seed=0,
                                                  params={{}}, tags={{}})
    for i in range(1000):
        run.log_candidate(Candidate(id=f"c{{i}}", prompt=f"prompt {{i}}", parent_id=f"c{{i-1}}" if i else None,
                                    generation=i, train_score=i / 1000))
        print(i, flush=True)
        if i == 4:
            time.sleep(60)
""")


def test_candidates_survive_a_kill_mid_cell(store):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CELL.format(root=str(ROOT), store=str(store))],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "4":
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    data = load_experiment(str(store), "killed")
    assert list(data.cells.status) == ["RUNNING"]
    assert list(data.candidates.id) == [f"c{i}" for i in range(5)]
    run = Tracker(str(store), "killed").start_cell("m/b/seed0", method="m", benchmark="b", seed=0, params={},
                                                 tags={})
    assert run.run_id == data.cells.run_id[0]
    for i in range(7):
        run.log_candidate(Candidate(id=f"c{i}", prompt=f"prompt {i}", parent_id=f"c{i-1}" if i else None,
                                    generation=i, train_score=i / 1000))
    run.finish(metrics={"test_accuracy": 0.5}, test_records=[], initial_records=None, best_prompt="prompt 6",
               extra_prompts={}, register_as=None)
    data = load_experiment(str(store), "killed")
    assert list(data.candidates.id) == [f"c{i}" for i in range(7)] and list(data.cells.status) == ["FINISHED"]


def test_unreachable_server_is_one_sentence_and_fast():
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"not reachable.*tracking\.uri"):
        Tracker(f"http://127.0.0.1:{free_port()}", "x").check_reachable()
    assert time.monotonic() - t0 < 10


def test_missing_experiment_is_a_config_error(store):
    with pytest.raises(ConfigError, match="No experiment named"):
        load_experiment(str(store), "never-ran")


# ----------------------------------------------------------------------------- a real mlflow server


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{d}/mlflow.db", "--artifacts-destination", str(d / "artifacts")]
    log = open(d / "server.log", "w")  # noqa: SIM115
    # litellm (imported by the server's job runner) would fetch a cost map from the internet at start-up
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (d / "server.log").read_text()[-3000:]
                    raise RuntimeError("mlflow server did not start:\n" + log_text) from None
                time.sleep(0.5)
        yield url, d
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_grid_roundtrip_and_secrets_on_a_real_server(mlflow_server):
    url, d = mlflow_server
    grid_roundtrip(url, "grid-server", secret=SECRET, n_cand=4)
    t = Tracker(url, "grid-server")
    key = "sepo/mbpp/seed0"
    found = t.find_finished_cell(key)
    assert found is not None
    again = Tracker(url, "grid-server", secrets=[SECRET])
    assert again.find_finished_cell(key)["run_id"] == found["run_id"]
    assert scan_for(SECRET, d) == []
    assert any(p.name == "candidates.json" for p in (d / "artifacts").rglob("*"))


def test_openai_calls_are_traced_without_the_key(store, loopback, monkeypatch):
    from harness.aio import run_sync
    from harness.config import EndpointConfig
    from harness.llm.client import LLMClient

    monkeypatch.setenv("SEPO_TRACE_TEST_KEY", SECRET)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    t = Tracker(str(store), "traced", trace=True, secrets=[SECRET])
    try:
        t.check_reachable()
        ep = EndpointConfig(base_url=loopback.url, model="m", api_key_env="SEPO_TRACE_TEST_KEY", timeout_s=5.0)
        reply = run_sync(LLMClient(ep, role="task").chat([{"role": "system", "content": "be brief"},
                                                         {"role": "user", "content": f"echo {SECRET} please"}]))
        assert "***" not in reply.text  # the caller still gets the real reply
        import mlflow

        mlflow.flush_trace_async_logging() if hasattr(mlflow, "flush_trace_async_logging") else None
        traces = t.client.search_traces(locations=[t.experiment_id()])
        assert len(traces) >= 1
        import json

        inputs = json.dumps(traces[0].data.spans[0].inputs)
        assert "***" in inputs and "be brief" in inputs  # the request is traced, the key masked
    finally:
        t.stop_tracing()
    assert scan_for(SECRET, store) == []
    # MLflow's set_tracking_uri exported $MLFLOW_TRACKING_URI while tracing; a later experiment of this
    # process (or a subprocess) must not write into this store
    assert "MLFLOW_TRACKING_URI" not in os.environ
