"""SePO as the paper runs it (issue 8): p~* pre-trained once per key and checked on load, pools, feedback
kept out of scoring draws, ablations, budgets, unusable agent replies, checkpoint fingerprints.

All on the scripted world of tests/worlds.py behind a LoopbackServer; grid cells go through
harness.cell.run_cell with a RunContext the way the experiment runner builds one.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from harness.cell import run_cell
from harness.config import ConfigError, EndpointConfig
from harness.llm.client import LLMClient
from harness.llm.session import LLMs
from harness.llm.usage import Budget, Ledger
from harness.methods import make_optimizer
from harness.optimizer import RunContext
from sepo import CheckpointMismatch, SePO
from sepo.agent import PromptAgent, initial_prompt_agent
from sepo.evolve import EvolveSettings
from sepo.stages import finetune, pretrain
from tests.loopback import LoopbackServer
from tests.worlds import (
    INITIAL,
    HeldOut,
    PoolA,
    PoolB,
    Shuffled,
    SynthBench,
    clients,
    make_task,
    reply,
    request_text,
    write_echo_task,
)

SMALL = {"generations": 2, "children": 2, "minibatch": 8}
TINY_PRE = {"pretrain_generations": 2, "pretrain_children": 2, "pretrain_minibatch": 6}
BENCHES = {c.name: c for c in (SynthBench, PoolA, PoolB, HeldOut, Shuffled)}
SELF = "# Rewrite your own system prompt"


@pytest.fixture
def srv():
    with LoopbackServer(reply=reply) as s:
        yield s


@pytest.fixture
def synth_registry(monkeypatch):
    """The synthetic benchmarks count as registered names for pool resolution (this test only)."""
    import sepo.pools
    from harness.benchmarks import registry

    monkeypatch.setattr(sepo.pools, "_registered", lambda: {**registry(), **BENCHES})


def context(task_llm: LLMClient, tmp_path: Path, target: str, seed: int, *, held_out: tuple[str, ...] = (),
            opened: list | None = None) -> RunContext:
    """A RunContext as the experiment runner makes one: pools opened by name, the target's test split
    under the cell's seed guarded, a shared folder for p~*."""
    def open_task(name: str, s: int):
        if opened is not None:
            opened.append((name, s))
        return make_task(BENCHES[name], task_llm, s)

    def check(name: str, ids) -> None:
        if name != target:
            return
        overlap = set(ids) & {e.id for e in BENCHES[name]().load("test", seed)}
        if overlap:
            raise ConfigError(f"{len(overlap)} pre-training examples are in this cell's {name} test split.")

    return RunContext(open_task=open_task, shared_dir=tmp_path / "shared", check_disjoint_from_test=check,
                      held_out=held_out)


def agent_requests(srv, marker: str) -> list[dict]:
    return [b for b in srv.requests if b["model"] == "prompt" and marker in request_text(b)]


# ---- 1. p~* once per key, held-out claims, split overlap, self_improve: false ---------------------------
def test_a_grid_of_two_benchmarks_and_two_seeds_pretrains_once_per_key(srv, tmp_path, synth_registry):
    task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / "cache.sqlite")
    settings = {**SMALL, **TINY_PRE, "pretrain_pool": ["sepo-pool-a", "sepo-pool-b"]}
    opt = make_optimizer("sepo-generalist", settings)
    assert opt.benchmarks_needed("sepo-synth") == ["sepo-pool-a", "sepo-pool-b"]
    cells, opened = [], []
    for bench in (SynthBench, HeldOut):
        for seed in (0, 1):
            b = bench()
            cells.append(run_cell(make_optimizer("sepo-generalist", settings), b, seed,
                                  llms=LLMs(task_llm, prompt_llm, ledger, None), final=partial(b.load, "test", seed),
                                  initial_prompt=INITIAL, checkpoint_dir=tmp_path / "cells" / f"{bench.name}{seed}",
                                  make_context=lambda _, b=b, seed=seed: context(task_llm, tmp_path, b.name, seed,
                                                                                 opened=opened),
                                  score_initial=False))
    pst = [c.result.extra["pstar"] for c in cells]
    assert [p["reused"] for p in pst] == [False, True, True, True]
    assert len({p["key"] for p in pst}) == 1 and all(p["held_out_target"] for p in pst)
    assert len({json.dumps(p["best"]) for p in pst}) == 1 and pst[0]["best"]["id"].startswith("pt-")
    assert len(agent_requests(srv, SELF)) == 2 * 2  # one pre-training: G x K self-rewrites
    assert len(list((tmp_path / "shared" / "sepo-pstar").iterdir())) == 1
    assert len({c.result.extra["prompt_agent"] for c in cells}) == 1
    assert all(c.result.extra["pretrain_pool"] == ["sepo-pool-a", "sepo-pool-b"] for c in cells)
    assert {s for _, s in opened} == {0}  # pool splits under the pre-training seed, whatever the cell's seed
    assert all(len(c.test.records) == 8 for c in cells)

    # pool splits per cell seed: a new key for seed 1 only; seed 0 is the artifact above again
    per_seed = {**settings, "pretrain_seed": None}
    keys = []
    for seed in (0, 1, 1):
        cell_ledger = ledger.child()
        res = make_optimizer("sepo-generalist", per_seed).optimize(
            make_task(SynthBench, task_llm.with_ledger(cell_ledger)), prompt_llm.with_ledger(cell_ledger), seed=seed,
            context=context(task_llm, tmp_path, "sepo-synth", seed))
        keys.append((res.extra["pstar"]["key"], res.extra["pstar"]["reused"]))
    assert keys[0] == (pst[0]["key"], True) and keys[1][0] != keys[0][0] and not keys[1][1]
    assert keys[2] == (keys[1][0], True)
    assert len(agent_requests(srv, SELF)) == 2 * 2 * 2


def test_a_held_out_target_that_was_in_the_pool_is_refused(srv, tmp_path, synth_registry):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
    pool = ["sepo-pool-a", "sepo-synth"]
    # a p~* whose pool contains sepo-synth, made for another target
    made = SePO(**SMALL, **TINY_PRE, pretrain_pool=pool).optimize(
        make_task(PoolB, task_llm), prompt_llm, seed=0, context=context(task_llm, tmp_path, "sepo-pool-b", 0))
    art = made.extra["pstar"]["path"]
    n = len(srv.requests)
    # the same pool for the target itself: refused before any request (no held-out claim possible)
    with pytest.raises(ConfigError, match="contains the target 'sepo-synth'"):
        SePO(**SMALL, pretrain_pool=pool).benchmarks_needed("sepo-synth")
    with pytest.raises(ConfigError, match="contains the target 'sepo-synth'"):
        SePO(**SMALL, **TINY_PRE, pretrain_pool=pool).optimize(
            make_task(SynthBench, task_llm), prompt_llm, seed=0, context=context(task_llm, tmp_path, "sepo-synth", 0))
    # the stored artifact, loaded for that target: refused on load
    with pytest.raises(ConfigError, match="not held out of pre-training"):
        SePO(**SMALL, prompt_agent_path=art).optimize(make_task(SynthBench, task_llm), prompt_llm, seed=0,
                                                      context=context(task_llm, tmp_path, "sepo-synth", 0))
    # allowing the target in the pool does not override the experiment's held-out list
    with pytest.raises(ConfigError, match="holds out"):
        SePO(**SMALL, prompt_agent_path=art, allow_target_in_pool=True).optimize(
            make_task(SynthBench, task_llm), prompt_llm, seed=0,
            context=context(task_llm, tmp_path, "sepo-synth", 0, held_out=("sepo-synth",)))
    assert len(srv.requests) == n
    # allowed and not held out: it runs, and says the target is not held out
    ok = SePO(**SMALL, prompt_agent_path=art, allow_target_in_pool=True).optimize(
        make_task(SynthBench, task_llm), prompt_llm, seed=0, context=context(task_llm, tmp_path, "sepo-synth", 0))
    assert ok.extra["pstar"]["held_out_target"] is False and ok.extra["pstar"]["test_disjoint"] == "checked"


def test_a_pool_split_overlapping_the_targets_test_split_is_refused(srv, tmp_path, synth_registry):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
    s = {**SMALL, **TINY_PRE, "pretrain_pool": ["sepo-shuffled", "sepo-pool-a"], "allow_target_in_pool": True,
         "pretrain_seed": 0}  # a fixed pool seed (the default, auto, takes the cell's when the target is in the pool)
    # seed 0: the pool's train split (seed 0) is disjoint from the seed-0 test split: pre-trains, stores p~*
    first = SePO(**s).optimize(make_task(Shuffled, task_llm, 0), prompt_llm, seed=0,
                               context=context(task_llm, tmp_path, "sepo-shuffled", 0))
    assert first.extra["pstar"]["reused"] is False
    # seed 1 reshuffles: the stored p~* saw examples of seed 1's test split -> refused on load, no request
    n = len(srv.requests)
    with pytest.raises(ConfigError, match="test split"):
        SePO(**s).optimize(make_task(Shuffled, task_llm, 1), prompt_llm, seed=1,
                           context=context(task_llm, tmp_path, "sepo-shuffled", 1))
    # and a fresh pre-training on seed-0 splits for a seed-1 cell is refused before it starts
    with pytest.raises(ConfigError, match="test split"):
        SePO(**s, pstar_dir=str(tmp_path / "elsewhere")).optimize(
            make_task(Shuffled, task_llm, 1), prompt_llm, seed=1,
            context=context(task_llm, tmp_path, "sepo-shuffled", 1))
    assert len(srv.requests) == n
    # pool splits under the cell's seed are disjoint from its test split: allowed
    ok = SePO(**{**s, "pretrain_seed": None}).optimize(make_task(Shuffled, task_llm, 1), prompt_llm, seed=1,
                                                context=context(task_llm, tmp_path, "sepo-shuffled", 1))
    assert ok.extra["pstar"]["pool_seed"] == 1
    auto = SePO(**{**s, "pretrain_seed": "auto"}).optimize(make_task(Shuffled, task_llm, 1), prompt_llm, seed=1,
                                                          context=context(task_llm, tmp_path, "sepo-shuffled", 1))
    assert auto.extra["pstar"]["pool_seed"] == 1 and auto.extra["pstar"]["key"] == ok.extra["pstar"]["key"]


def test_self_improve_false_sends_the_hand_written_prompt_agent(srv, tmp_path, synth_registry):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
    made = SePO(**SMALL, **TINY_PRE, pretrain_pool=["sepo-pool-a"]).optimize(
        make_task(SynthBench, task_llm), prompt_llm, seed=0, context=context(task_llm, tmp_path, "sepo-synth", 0))
    assert made.extra["prompt_agent"] != initial_prompt_agent()
    n_self, n = len(agent_requests(srv, SELF)), len(srv.requests)
    for extra in ({}, {"prompt_agent_path": made.extra["pstar"]["path"]}):  # an existing p~* is never loaded
        opt = make_optimizer("sepo-no-self-improve", {**SMALL, "pretrain_pool": ["sepo-pool-a"], **extra})
        assert opt.benchmarks_needed("sepo-synth") == []
        res = opt.optimize(make_task(HeldOut, task_llm), prompt_llm, seed=0,
                           context=context(task_llm, tmp_path, "sepo-held-out", 0))
        assert res.extra["prompt_agent"] == initial_prompt_agent() and res.extra["pretrain_pool"] == []
    sent = [b for b in srv.requests[n:] if b["model"] == "prompt"]
    assert sent and all(b["messages"][0]["content"] == initial_prompt_agent() for b in sent)
    assert len(agent_requests(srv, SELF)) == n_self


# ---- 2. pools -----------------------------------------------------------------------------------------
def test_the_generalist_default_pool_excludes_sudoku_and_the_target():
    for target in ("aime", "arc", "gpqa", "mbpp", "sudoku"):
        pool = SePO().benchmarks_needed(target)
        assert "sudoku" not in pool and target not in pool and "custom" not in pool and len(pool) >= 3
    assert SePO().benchmarks_needed("mbpp") == ["aime", "arc", "gpqa"]
    assert SePO().benchmarks_needed("mbpp-sanitized") == ["aime", "arc", "gpqa"]  # aliases name the target too
    assert SePO().benchmarks_needed("mbpp", held_out=["gpqa"]) == ["aime", "arc"]
    greedy = SePO(pool_selection="greedy", pool_size=2).benchmarks_needed("aime")
    assert len(greedy) == 2 and set(greedy) <= {"arc", "gpqa", "mbpp"}
    assert greedy[0] == "gpqa"  # the most relevant first (reasoning with a final answer)
    assert SePO(variant="specialist").benchmarks_needed("aime") == ["gpqa"]
    with pytest.raises(ConfigError, match="holds out"):
        SePO(pretrain_pool=["aime", "sudoku"]).benchmarks_needed("mbpp", held_out=["sudoku"])
    with pytest.raises(ConfigError, match="not a benchmark"):
        SePO(pretrain_pool=["aimee"]).benchmarks_needed("mbpp")
    assert SePO(self_improve=False).benchmarks_needed("mbpp") == []


def test_the_generalist_default_is_one_mixture_with_the_target_and_per_target_is_an_option():
    mixture = ["aime", "arc", "gpqa", "mbpp"]
    for target in ("aime", "arc", "gpqa", "mbpp", "sudoku"):  # one pool (one p~* per seed) serves every target
        assert SePO().pool_names(target, held_out=["sudoku"]) == mixture
    assert SePO(pool_mode="per-target").pool_names("mbpp", held_out=["sudoku"]) == ["aime", "arc", "gpqa"]
    assert SePO().pool_names("mbpp", held_out=["gpqa", "sudoku"]) == ["aime", "arc", "mbpp"]
    with pytest.raises(ConfigError, match="contains the target"):  # an explicit pool still needs the opt-in
        SePO(pretrain_pool=["aime", "mbpp"]).pool_names("mbpp")


# ---- 3. draws -------------------------------------------------------------------------------------------
def test_children_are_never_scored_on_their_feedback_examples(srv, tmp_path):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
    task = make_task(SynthBench, task_llm)
    ft = finetune(task, PromptAgent(prompt_llm, initial_prompt_agent()),
                  EvolveSettings(generations=4, children=2, minibatch=12), seed=0)
    pool = [make_task(PoolA, task_llm), make_task(PoolB, task_llm), task]
    pt = pretrain(initial_prompt_agent(), pool, prompt_llm, EvolveSettings(generations=3, children=2, minibatch=10,
                                                                        feedback_per_side=2), seed=0)
    for res in (ft, pt):
        entries = [e for e in res.archive.entries if e.score is not None]
        assert len(entries) >= 5
        for e in entries[1:]:
            shown = {f.example_id for f in res.archive[e.parent_id].feedback if f.kind == "example"}
            assert shown and not shown & set(e.meta["example_ids"]), e.id
        draws = {e.generation: frozenset(e.meta["example_ids"]) for e in entries}
        assert len(set(draws.values())) == len(draws)  # a fresh draw per generation
    # pre-training feedback covers every pool task, each with failing and passing examples
    for e in pt.archive.entries:
        if e.score is None:
            continue
        tasks = [f.example_id for f in e.feedback if f.kind == "task"]
        assert tasks == ["sepo-pool-a", "sepo-pool-b", "sepo-synth"]
    assert any({f.correct for f in e.feedback if f.kind == "example" and f.example_id.startswith(t)} == {True, False}
               for e in pt.archive.entries for t in ("sepo-pool-a", "sepo-pool-b", "sepo-synth"))
    # pre-training and fine-tuning draw independently, even on the same task
    ft_root = set(ft.archive.entries[0].meta["example_ids"])
    pt_root = {i.split("::", 1)[1] for i in pt.archive.entries[0].meta["example_ids"] if i.startswith("sepo-synth::")}
    assert ft_root != pt_root


# ---- 4. ablations: no-archive (see also tests/test_sepo_loop.py) -----------------------------------------
def test_no_archive_preset_extends_the_latest_child_in_both_stages(srv, tmp_path):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
    opt = make_optimizer("sepo-no-archive", {**SMALL, **TINY_PRE})
    opt.pool_tasks = [make_task(PoolA, task_llm)]
    res = opt.optimize(make_task(SynthBench, task_llm), prompt_llm, seed=1)
    for cands in (res.candidates, res.extra["pretrain_candidates"]):
        assert len(cands) == 1 + 2 * 2
        chain = [c for c in cands if not c.meta.get("skipped")]
        assert len(chain) >= 3
        assert all(c.parent_id == p.id and c.meta["admitted"] for p, c in zip(chain, chain[1:], strict=False))


# ---- 5. budgets -----------------------------------------------------------------------------------------
def test_a_budget_stop_anywhere_still_yields_a_test_score(srv, tmp_path, synth_registry):
    task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / "cache.sqlite")
    settings = {**SMALL, **TINY_PRE, "pretrain_pool": ["sepo-pool-a"]}

    def cell(name: str, cap: int | None, s: dict, seed: int = 0):
        bench = SynthBench()
        out = run_cell(make_optimizer("sepo-generalist", s), bench, seed, llms=LLMs(task_llm, prompt_llm, ledger, None),
                       budget=Budget(max_evaluations=cap), final=partial(bench.load, "test", seed),
                       initial_prompt=INITIAL, checkpoint_dir=tmp_path / "cells" / name, score_initial=False,
                       make_context=lambda _: context(task_llm, tmp_path, "sepo-synth", 0))
        assert len(out.test.records) == 8 and out.test_usage["total"]["evaluations"] == 8  # test scoring always runs
        assert cap is None or out.ledger.total.evaluations <= cap
        return out

    # reference spending, with another store so nothing is shared
    ref = cell("ref", None, {**settings, "pstar_dir": str(tmp_path / "ref-store")}).result.extra["usage"]
    assert ref["val"]["evaluations"] > 8

    # stop in pre-training: the initial prompt is returned unscored; the next cell resumes pre-training
    stop = cell("pre", int(ref["pretrain"]["evaluations"] // 2), settings)
    assert stop.result.extra["stopped"] == "budget" and stop.result.extra["pretrain_stopped"] == "budget"
    assert stop.result.best.prompt == INITIAL and stop.result.best.train_score is None
    done_before = len(stop.result.extra["pretrain_candidates"])
    after = cell("pre-2", None, settings, seed=1)
    assert after.result.extra["stopped"] is None and after.result.extra["pstar"]["reused"] is False
    assert done_before > 0 and len(after.result.extra["pretrain_candidates"]) == 1 + 2 * 2

    # stop in fine-tuning (one evaluation short of the last candidate): the best admitted candidate so far
    no_pre = cell("ft-full", None, {**settings, "self_improve": False}).result.extra["usage"]
    stop = cell("ft", int(no_pre["finetune"]["evaluations"] - 1), {**settings, "self_improve": False})
    cands = stop.result.candidates
    assert stop.result.extra["stopped"] == "budget" and 1 < len(cands) < 1 + 2 * 2
    assert stop.result.best.train_score == max(c.train_score for c in cands if c.meta["admitted"])
    assert all(c.val_score is None for c in cands)  # no val pass after a stop

    # stop in the val re-scoring: the best of the contenders scored before the cap
    stop = cell("val", int(no_pre["finetune"]["evaluations"] + 12), {**settings, "self_improve": False})
    assert stop.result.extra["stopped"] == "budget"
    scored = [c for c in stop.result.candidates if c.val_score is not None]
    assert len(scored) == 1 and stop.result.best.id == scored[0].id
    assert scored[0].meta["val_example_ids"] == [e.id for e in SynthBench().load("val", 0)]


# ---- 6. unusable agent replies, duplicates, per-candidate records -------------------------------------
def test_truncated_untagged_and_duplicate_proposals_are_recorded_never_admitted(tmp_path):
    calls = {"n": 0}

    def scripted(body):
        if body["model"] != "prompt" or "TARGET" not in request_text(body):
            return reply(body)
        calls["n"] += 1
        n = calls["n"]
        if n in (1, 2):  # g1-0: cut off at the token cap, and again on its retry
            return "<prompt>LONG " + "word " * 3000 + "</prompt>"
        if n == 3:  # g1-1: no tags; the retry is fine
            return "I would make it clearer."
        if n == 5:  # g2-0: the parent's own text again
            parent = request_text(body).split("<parent_prompt>\n", 1)[1].split("\n</parent_prompt>", 1)[0]
            return f"Same.\n<prompt>{parent}</prompt>"
        return reply(body)

    with LoopbackServer(reply=scripted) as srv:
        task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
        seen = []
        res = SePO(self_improve=False, **SMALL).optimize(make_task(SynthBench, task_llm), prompt_llm, seed=0,
                                                         on_candidate=seen.append)
        by_id = {c.id: c for c in res.candidates}
        cut = by_id["g1-0"]
        assert "truncated" in cut.meta["skipped"] and not cut.meta["admitted"] and cut.train_score is None
        assert len(cut.meta["agent_replies"]) == 2 and "example_ids" not in cut.meta
        assert cut.meta["cost"]["requests"] == 2 and cut.meta["cost"]["evaluations"] == 0
        retried = by_id["g1-1"]
        assert retried.meta["retried"] == "untagged" and retried.train_score is not None
        assert retried.meta["agent_replies"][0] == "I would make it clearer."
        dup = by_id["g2-0"]
        assert dup.meta["skipped"].startswith("duplicate of") and dup.train_score is None
        assert dup.meta["cost"]["evaluations"] == 0  # not re-scored
        assert all("LONG" not in c.prompt for c in res.candidates)
        assert res.best.id not in ("g1-0", "g2-0")
        retry = [b for b in srv.requests if b["model"] == "prompt" and len(b["messages"]) == 4]
        assert len(retry) == 2 and "cut off" in retry[0]["messages"][-1]["content"]
        assert "did not hold" in retry[1]["messages"][-1]["content"]
        assert retry[1]["messages"][2]["content"] == "I would make it clearer."
        # every scored candidate says what it was judged on, what the agent replied and what it cost
        for c in res.candidates:
            assert c.meta["stage"] == "finetune" and set(c.meta["cost"]) >= {"requests", "tokens", "usd",
                                                                               "evaluations"}
            if c.train_score is not None:
                assert len(c.meta["example_ids"]) == SMALL["minibatch"]
            if c.parent_id is not None:
                assert c.meta["agent_reply"]
        assert [c.id for c in seen] == [c.id for c in res.candidates]
        assert any(c.val_score is not None and c.meta["val_example_ids"] for c in res.candidates)


def test_lenient_tags_read_an_untagged_retry(tmp_path):
    with LoopbackServer(reply=lambda b: "Here is the improved system prompt:\nBe exact." if b["model"] == "prompt"
                        else reply(b)) as srv:
        task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
        strict = SePO(self_improve=False, generations=1, children=1, minibatch=8).optimize(
            make_task(SynthBench, task_llm), prompt_llm, seed=0)
        assert "untagged" in strict.candidates[1].meta["skipped"]
        lenient = SePO(self_improve=False, generations=1, children=1, minibatch=8, lenient_tags=True).optimize(
            make_task(SynthBench, task_llm), prompt_llm, seed=0)
        assert lenient.candidates[1].prompt == "Be exact." and "skipped" not in lenient.candidates[1].meta


# ---- 7. checkpoint fingerprint ---------------------------------------------------------------------------
def test_the_checkpoint_refuses_a_run_that_differs_and_says_why(srv, tmp_path):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
    ck = tmp_path / "ck"
    s = {"self_improve": False, **SMALL}
    first = SePO(**s).optimize(make_task(SynthBench, task_llm), prompt_llm, seed=0, checkpoint_dir=ck)
    other_model = LLMClient(EndpointConfig(base_url=srv.url, model="task-v2", max_tokens=16), role="task",
                            ledger=Ledger())
    opts = SynthBench()
    opts.options = {"variant": "hard"}
    fewer = make_task(SynthBench, task_llm)
    fewer.train = fewer.train[:-1]
    cases = [
        (make_task(SynthBench, other_model), prompt_llm, s, "model"),
        (make_task(SynthBench, task_llm), other_model, s, "prompt_model"),
        (fewer, prompt_llm, s, "train_ids"),
        (make_task(SynthBench, task_llm), prompt_llm, {**s, "temperature": 0.2}, "temperature"),
        (make_task(SynthBench, task_llm), prompt_llm, {**s, "minibatch": 4}, "minibatch"),
    ]
    from harness.evaluator import Evaluator
    from harness.optimizer import OptimizationTask

    cases.append((OptimizationTask(opts.name, opts, opts.load("train", 0), opts.load("val", 0),
                                   Evaluator(opts, task_llm), INITIAL), prompt_llm, s, "options"))
    n = len(srv.requests)
    for task, p_llm, settings, why in cases:
        with pytest.raises(CheckpointMismatch, match=why) as err:
            SePO(**settings).optimize(task, p_llm, seed=0, checkpoint_dir=ck)
        assert isinstance(err.value, ConfigError) and "checkpoint" in str(err.value) and "\n" not in str(err.value)
    assert len(srv.requests) == n
    again = SePO(**s).optimize(make_task(SynthBench, task_llm), prompt_llm, seed=0, checkpoint_dir=ck)
    assert len(srv.requests) == n and [c.id for c in again.candidates] == [c.id for c in first.candidates]
    saved = json.loads((ck / "sepo-finetune.json").read_text())
    assert saved["run"]["run_key"]["target"]["model"]["model"] == "task"


def test_a_request_the_endpoint_rejects_fails_that_proposal_only(tmp_path):
    from tests.loopback import Fault

    with LoopbackServer(reply=reply) as srv:
        task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")

        def after_root(c):  # the next request is g1-0's proposal: the endpoint answers HTTP 400
            if c.id == "g0-0":
                srv.inject(Fault(status=400))

        res = SePO(self_improve=False, **SMALL).optimize(make_task(SynthBench, task_llm), prompt_llm, seed=0,
                                                         on_candidate=after_root)
        first = res.candidates[1]
        assert "rejected" in first.meta["skipped"] and not first.meta["admitted"] and first.train_score is None
        assert len(res.candidates) == 1 + 2 * 2 and res.extra["stopped"] is None


def _grid_reply(body):
    """Task model: repeats the number iff its system prompt says 'careful'; prompt agent: adds that word."""
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    if body["model"] == "agent":
        return "The answers ignore the number.\n<prompt>Be careful: reply with the number only.</prompt>"
    number = body["messages"][-1]["content"].split()[-1].rstrip("?")
    return f"Answer: {number}" if "careful" in system.lower() else "Answer: 0"


def test_a_budget_stop_in_a_grid_still_writes_every_cell_with_a_test_score(tmp_path):
    """Through `sepo-bench optimize`: every cell stops at its evaluation cap, and each is still scored on
    test (on its own ledger) and written to results.json."""
    from harness.cli import main

    data = write_echo_task(tmp_path / "echo.jsonl", 40)
    with LoopbackServer(reply=_grid_reply) as srv:
        cfg = tmp_path / "exp.yaml"
        cfg.write_text(f"""
name: capped
output_dir: {tmp_path}/runs
seeds: [0, 1]
system_prompt: Answer.
benchmarks:
  - {{name: custom, n_test: 5, options: {{path: {data}, scorer: exact, task_name: echo}}}}
methods:
  sepo-no-self-improve: {{generations: 3, children: 2, minibatch: 4, feedback_per_side: 1}}
budget_per_cell: {{max_evaluations: 14}}
tracking: {{enabled: false}}
llm:
  cache: {{path: {tmp_path}/cache.sqlite}}
  task: {{base_url: '{srv.url}', model: task}}
  prompt: {{base_url: '{srv.url}', model: agent}}
""")
        assert main(["optimize", "--config", str(cfg)]) == 0
    rows = json.loads((tmp_path / "runs" / "capped" / "results.json").read_text())["results"]
    assert sorted(r["seed"] for r in rows) == [0, 1]
    for r in rows:
        assert r["stopped"] == "budget" and r["usage"]["total"]["evaluations"] <= 14
        assert r["test"]["n"] == 5 and r["best_test"] == 1.0 and r["initial_test"] == 0.0


def test_without_a_run_context_sepo_opens_its_pool_itself_and_closes_it(tmp_path, monkeypatch):
    """No RunContext (scripts, unit use): the pool is opened by name from the target's data folder before any
    request and closed at the end; a missing dataset is reported before any request."""
    import harness.benchmarks.gpqa as gpqa

    closed = []
    monkeypatch.setattr(gpqa.GPQA, "close", lambda self: closed.append(self.name), raising=False)

    def any_question(body):
        if body["model"] == "task" and not body["messages"][-1]["content"].startswith("["):
            return "Answer: A"
        return reply(body)

    with LoopbackServer(reply=any_question) as srv:
        task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
        res = SePO(variant="specialist", pretrain_pool=["gpqa"], pretrain_generations=1, pretrain_children=1,
                   pretrain_minibatch=4, **SMALL).optimize(make_task(SynthBench, task_llm), prompt_llm, seed=0)
        assert res.extra["pretrain_pool"] == ["gpqa"] and closed == ["gpqa"]
        assert res.extra["pstar"]["held_out_target"] and res.extra["pstar"]["path"] is None  # no store: not reused
        n = len(srv.requests)
        target = make_task(SynthBench, task_llm)
        target.benchmark.data_dir = str(tmp_path / "no-data")
        with pytest.raises(Exception, match="(?i)gpqa"):
            SePO(variant="specialist", pretrain_pool=["gpqa"], **SMALL).optimize(target, prompt_llm, seed=0)
        assert len(srv.requests) == n
