"""The CI regression benchmark (perf/bench_regression.py) and the response cache's replay mode under it.

- replay mode: no model server starts, a recorded reply is accounted as the request it was (the replayed run's
  ledger equals the recorded run's), a miss is one sentence (ReplayMiss);
- the committed recording replays with no miss and matches the committed baseline (what `make bench` runs);
- a deliberately broken scorer makes the comparison fail with a readable table of what moved.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from harness.benchmarks.base import Score
from harness.config import CacheConfig, EndpointConfig, LLMConfig
from harness.llm.client import ReplayMiss
from harness.llm.session import open_llms
from tests.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_regression", ROOT / "perf" / "bench_regression.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_regression", mod)
    spec.loader.exec_module(mod)
    return mod


bench = _bench()


def _ask(llms, texts):
    from harness.aio import run_sync

    return [run_sync(llms.task.chat([{"role": "user", "content": t}], seed=0)) for t in texts]


def test_replay_serves_recorded_replies_without_a_server_and_accounts_them_as_recorded(tmp_path, monkeypatch):
    import harness.llm.session as session

    db = tmp_path / "cache.sqlite"
    questions = ["one", "two", "one", "three"]  # "one" twice: a cache hit in the live run too
    with LoopbackServer() as srv:
        live = LLMConfig(task=EndpointConfig(base_url=srv.url, model="qwen2.5-coder-0.5b"),
                         cache=CacheConfig(path=str(db)))
        with open_llms(live, prompt_agent=False) as llms:
            recorded = _ask(llms, questions)
            live_usage = llms.ledger.total
    monkeypatch.setattr(session, "LlamaServer", lambda *a, **k: pytest.fail("replay started a model server"))
    replay = LLMConfig(task=EndpointConfig(local_model="qwen2.5-coder-0.5b"), cache=CacheConfig(path=str(db),
                                                                                                  mode="replay"))
    with open_llms(replay, prompt_agent=False) as llms:
        replayed = _ask(llms, questions)
        assert [r.text for r in replayed] == [r.text for r in recorded]
        assert [r.cached for r in replayed] == [r.cached for r in recorded] == [False, False, True, False]
        assert llms.ledger.total == live_usage
        with pytest.raises(ReplayMiss) as exc:
            _ask(llms, ["never recorded"])
    msg = str(exc.value)
    assert "no recorded reply" in msg and "re-record" in msg and len(msg.splitlines()) == 1


def test_compare_names_every_metric_that_moved():
    base = {"tolerance": {"score_abs": 0.0, "count_rel": 0.0},
            "cells": {"sepo/mbpp/seed0": {"best_test": 0.5, "requests": 40, "completion_tokens": 1000},
                      "(whole run)": {"replay_misses": 0}}}
    same = {"cells": json.loads(json.dumps(base["cells"]))}
    assert bench.compare(base, same) == (True, "")
    moved = {"cells": {"sepo/mbpp/seed0": {"best_test": 0.25, "requests": 40, "completion_tokens": 900},
                       "(whole run)": {"replay_misses": 3}}}
    ok, table = bench.compare(base, moved)
    assert not ok
    lines = table.splitlines()
    assert lines[0].split() == ["cell", "metric", "baseline", "now", "change"]
    assert any(line.split()[:5] == ["sepo/mbpp/seed0", "best_test", "0.5000", "0.2500", "-0.2500"] for line in lines)
    assert any("completion_tokens" in line and "-100 (-10.0%)" in line for line in lines)
    assert any("replay_misses" in line for line in lines) and not any("requests " in line for line in lines)
    tolerant = {**base, "tolerance": {"score_abs": 0.3, "count_rel": 0.2}}
    ok, table = bench.compare(tolerant, {"cells": {**moved["cells"], "(whole run)": {"replay_misses": 0}}})
    assert ok, table


needs_recording = pytest.mark.skipif(not bench.RESPONSES.is_file() or not bench.BASELINE.is_file(),
                                     reason="no recorded replies yet (scripts/record_bench.py)")


@pytest.mark.docker
@needs_recording
def test_recorded_bench_replays_and_matches_its_baseline():
    current = bench.run_replay(quiet=True)
    ok, table = bench.compare(json.loads(bench.BASELINE.read_text()), current)
    assert current["replay_misses"] == 0
    assert ok, table


@pytest.mark.docker
@needs_recording
def test_a_broken_scorer_fails_the_bench_with_a_readable_table(monkeypatch, capsys):
    from harness.benchmarks.mbpp import MBPP

    def broken(self, examples, responses):  # every program "fails"
        return [Score(0.0, False, "broken scorer", None, "broken") for _ in examples]

    monkeypatch.setattr(MBPP, "score_many", broken)
    current = bench.run_replay(quiet=True)
    baseline = json.loads(bench.BASELINE.read_text())
    ok, table = bench.compare(baseline, current)
    assert not ok
    print(table)
    moved = {line.split()[1] for line in table.splitlines()[2:]}
    assert "best_test" in moved or "initial_test" in moved or "best_train" in moved, table
    scores_before = [c.get("best_train") for c in baseline["cells"].values() if c.get("best_train")]
    if scores_before:  # the baseline had passing programs: the broken scorer's zero shows in the table
        assert "best_train" in moved, table
