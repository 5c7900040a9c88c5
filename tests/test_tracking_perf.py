"""Measured: candidates as one nested MLflow run each vs one JSON artifact each (what harness.tracking does).

    .venv/bin/python -m pytest tests/test_tracking_perf.py -m slow -s      # prints the figures
    .venv/bin/python tests/test_tracking_perf.py [N] [server-url]           # the same, by hand

Both store the same per-candidate content (prompt text, parent, generation, scores, stage); the nested
variant is what MLflow's own docs suggest (create run with mlflow.parentRunId, log_batch, log_text, end).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.optimizer import Candidate
from harness.tracking import Tracker, load_experiment


def _cands(n: int) -> list[Candidate]:
    return [Candidate(id=f"c{i}", prompt=f"You are solver {i}.\n" + "Think step by step. " * 60,
                      parent_id=f"c{(i - 1) // 2}" if i else None, generation=i.bit_length(), train_score=i / n,
                      meta={"stage": "finetune", "admitted": True, "example_ids": [f"e{j}" for j in range(16)]})
            for i in range(n)]


def nested_runs(uri: str, n: int) -> tuple[float, float]:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    t = Tracker(uri, f"perf-nested-{n}-{time.time_ns()}")
    t.check_reachable()
    client: MlflowClient = t.client
    parent = client.create_run(t.experiment_id(), tags={"sepo.kind": "cell"}).info.run_id
    t0 = time.perf_counter()
    for c in _cands(n):
        run = client.create_run(t.experiment_id(), tags={"mlflow.parentRunId": parent, "sepo.kind": "candidate"},
                                run_name=c.id)
        rid = run.info.run_id
        now = int(time.time() * 1000)
        client.log_batch(rid, params=[Param("candidate_id", c.id), Param("parent_id", str(c.parent_id)),
                                      Param("generation", str(c.generation)), Param("stage", "finetune"),
                                      Param("example_ids", json.dumps(c.meta["example_ids"]))],
                         metrics=[Metric("train_score", c.train_score, now, 0)],
                         tags=[RunTag("sepo.admitted", "true")])
        client.log_text(rid, c.prompt, "prompt.txt")
        client.set_terminated(rid, "FINISHED")
    write = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs = client.search_runs([t.experiment_id()], "tags.`sepo.kind` = 'candidate'", max_results=1000)
    with tempfile.TemporaryDirectory() as tmp:
        prompts = [Path(client.download_artifacts(r.info.run_id, "prompt.txt", tmp)).read_text() for r in runs]
    read = time.perf_counter() - t0
    assert len(prompts) == n
    return write, read


def artifacts(uri: str, n: int) -> tuple[float, float]:
    name = f"perf-artifact-{n}-{time.time_ns()}"
    t = Tracker(uri, name)
    t.check_reachable()
    run = t.start_cell("m/b/seed0", method="m", benchmark="b", seed=0, params={}, tags={})
    t0 = time.perf_counter()
    for c in _cands(n):
        run.log_candidate(c)
    write = time.perf_counter() - t0
    run.finish(metrics={}, test_records=[], initial_records=None, best_prompt="x", extra_prompts={},
               register_as=None)
    t0 = time.perf_counter()
    data = load_experiment(uri, name)
    read = time.perf_counter() - t0
    assert len(data.candidates) == n
    return write, read


def measure(uri: str, n: int) -> dict[str, float]:
    nw, nr = nested_runs(uri, n)
    aw, ar = artifacts(uri, n)
    out = {"n": n, "nested_write_s": nw, "nested_read_s": nr, "artifact_write_s": aw, "artifact_read_s": ar,
           "write_ratio": nw / aw, "read_ratio": nr / ar}
    print(json.dumps({k: round(v, 3) for k, v in out.items()}), flush=True)
    return out


@pytest.mark.slow
def test_measure_nested_runs_vs_artifacts(tmp_path):
    out = measure(str(tmp_path), 100)
    assert out["artifact_write_s"] > 0


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    uri = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="sepo-perf-")
    measure(uri, n)
