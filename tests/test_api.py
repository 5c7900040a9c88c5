"""harness.api.optimize and the template guard, on a scripted world (tests/api_world.py) over loopback HTTP."""

from __future__ import annotations

import pytest

from harness import template_guard as tg
from harness.api import optimize
from harness.config import ConfigError
from tests.api_world import SEED, Agent, kw, rows, score_fn
from tests.loopback import LoopbackServer

SMALL_SEPO = {"self_improve": False, "generations": 2, "children": 2, "minibatch": 4, "val_top_n": 2}


def llms(url: str) -> dict:
    return {"task_llm": {"base_url": url, "model": "task", "max_tokens": 16, "backoff_base_s": 0.01},
            "prompt_llm": {"base_url": url, "model": "prompt", "max_tokens": 400, "backoff_base_s": 0.01}}


def test_template_helpers():
    assert tg.variables("Q: {{ question }} / {{ctx}} {single}") == {"question", "ctx"}
    assert tg.render("Q: {{ question }} {{other}}", {"question": "2+2?"}) == "Q: 2+2? {{other}}"
    need = frozenset({"question"})
    assert tg.problem(need, "Answer: {{question}}") is None
    assert "lost" in tg.problem(need, "Answer: {question}")
    assert "{{query}}" in tg.problem(need, "Answer: {{query}}")


def test_gepa_from_dicts_within_budget():
    with LoopbackServer(reply=Agent()) as srv:
        res = optimize("gepa", SEED, rows(12), rows(4, 12), score_fn, budget=60,
                       settings={"max_metric_calls": 200, "val_size": 4}, **llms(srv.url))
    assert res.usage["total"]["evaluations"] <= 60 and res.stopped == "budget"
    ids = {c.id for c in res.candidates}
    assert all(c.parent_id is None or c.parent_id in ids for c in res.candidates)
    root = res.lineage()[0]
    assert root.prompt == SEED and root.parent_id is None and res.lineage()[-1] is res.best
    assert res.best.val_score > root.val_score and kw("alpha") in res.best_prompt


def test_a_rewrite_that_loses_the_variable_is_never_returned():
    template = SEED + "\n{{question}}"
    for method, settings in (("gepa", {"max_metric_calls": 60, "val_size": 4}), ("sepo", SMALL_SEPO)):
        with LoopbackServer(reply=Agent("drop")) as srv:
            res = optimize(method, template, rows(12), rows(4, 12), score_fn, budget=80, settings=settings,
                           **llms(srv.url))
            task_msgs = [b["messages"][-1]["content"] for b in srv.requests if b["model"] == "task"]
        assert res.refused, method  # the agent did drop it, and those rewrites were refused...
        assert all(not tg.is_intact(frozenset({"question"}), p) for p in res.refused)
        assert "{{question}}" in res.best_prompt and tg.variables(res.best_prompt) == {"question"}  # ...never returned
        assert all("] item " in m for m in task_msgs)  # a refused template never reached the task model


def test_a_renamed_variable_is_retried():
    agent = Agent("rename")
    with LoopbackServer(reply=agent) as srv:
        res = optimize("sepo", SEED + "\n{{question}}", rows(12), rows(4, 12), score_fn, budget=80,
                       settings=SMALL_SEPO, **llms(srv.url))
    assert agent.retried > 0 and res.extra["refused_replies"] == agent.retried
    assert not res.refused and all("{{query}}" not in c.prompt for c in res.candidates)
    assert res.best.prompt != res.lineage()[0].prompt and "{{question}}" in res.best_prompt


def test_sepo_pretrains_on_the_users_data():
    settings = {"pretrain_generations": 1, "pretrain_children": 1, "pretrain_minibatch": 4, "generations": 1,
                "children": 1, "minibatch": 4, "val_top_n": 1}
    with LoopbackServer(reply=Agent()) as srv:
        res = optimize("sepo", SEED, rows(12), rows(4, 12), score_fn, budget=200, settings=settings,
                       **llms(srv.url))
    assert res.extra["pretrain_pool"] == ["custom:user-task"] and res.extra["pstar"]["source"] == "pre-trained"
    assert "RULE" in res.extra["prompt_agent"] and res.extra["pretrain_candidates"]
    assert 0 < res.usage["total"]["evaluations"] <= 200


def test_bad_inputs_are_one_sentence():
    with pytest.raises(ConfigError, match="score_fn is required"):
        optimize("gepa", SEED, rows(2))
    with pytest.raises(ConfigError, match="template variable"):
        optimize("gepa", "Q: {{question}} {{ctx}}", rows(2), score_fn=score_fn, task_llm="smollm2-135m")


def test_a_pstar_from_an_earlier_run_is_loaded(tmp_path):
    pre = {"pretrain_generations": 1, "pretrain_children": 1, "pretrain_minibatch": 4, "generations": 1,
           "children": 1, "minibatch": 4, "val_top_n": 1}
    with LoopbackServer(reply=Agent()) as srv:
        first = optimize("sepo", SEED, rows(12), rows(4, 12), score_fn, budget=200,
                         settings={**pre, "pstar_dir": str(tmp_path)}, **llms(srv.url))
        (artifact,) = [p for p in tmp_path.iterdir() if p.is_dir()]
        again = optimize("sepo", SEED, rows(12), rows(4, 12), score_fn, budget=200, name="other-task",
                         settings={**pre, "prompt_agent_path": str(artifact)}, **llms(srv.url))
    assert first.extra["pstar"]["source"] == "pre-trained" and again.extra["pstar"]["source"] == "given"
    assert again.extra["prompt_agent"] == first.extra["prompt_agent"] and "RULE" in again.extra["prompt_agent"]
    assert not again.extra["pretrain_candidates"]
    assert again.usage["total"]["evaluations"] < first.usage["total"]["evaluations"]
