"""The SePO loop end to end on a scripted world (tests/worlds.py) behind a LoopbackServer."""

from __future__ import annotations

import json

import pytest

from harness.llm.usage import Budget
from harness.optimizer import Candidate
from sepo import SePO
from sepo.agent import PromptAgent, initial_prompt_agent
from sepo.evolve import EvolveSettings
from sepo.optimizer import SePOSettings
from sepo.stages import finetune
from tests.loopback import LoopbackServer
from tests.worlds import (
    INITIAL,
    HeldOut,
    PoolA,
    PoolB,
    SynthBench,
    archive_view,
    clients,
    make_task,
    reply,
    request_text,
)

SMALL = {"generations": 5, "children": 2, "minibatch": 8}


@pytest.fixture
def srv():
    with LoopbackServer(reply=reply) as s:
        yield s


def _agent_requests(srv, marker: str) -> list[dict]:
    return [b for b in srv.requests if b["model"] == "prompt" and marker in request_text(b)]


def check_tree(cands: list[Candidate]) -> None:
    by_id = {c.id: c for c in cands}
    assert len(by_id) == len(cands)
    roots = [c for c in cands if c.parent_id is None]
    assert len(roots) == 1 and roots[0].prompt == cands[0].prompt
    for c in cands:
        seen, cur = set(), c
        while cur.parent_id is not None:
            assert cur.parent_id in by_id, cur
            parent = by_id[cur.parent_id]
            assert parent.generation < cur.generation
            assert cur.id not in seen
            seen.add(cur.id)
            cur = parent
        assert cur is roots[0]


def test_loop_finds_better_prompts_and_lineage_is_a_tree(srv, tmp_path):
    task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / "cache.sqlite")
    task = make_task(SynthBench, task_llm)
    seen: list[Candidate] = []
    res = SePO(self_improve=False, **SMALL).optimize(task, prompt_llm, seed=0, on_candidate=seen.append)
    root = res.candidates[0]
    assert root.prompt == INITIAL and root.train_score == 0.0
    assert res.best.train_score > root.train_score and res.best.val_score > 0.5
    assert len(res.candidates) == 1 + 5 * 2 and [c.id for c in seen] == [c.id for c in res.candidates]
    check_tree(res.candidates)
    # admission with tolerance 0: a child enters iff it is not worse than its parent on the child's draw
    for c in res.candidates[1:]:
        if c.train_score is not None:
            assert c.meta["admitted"] == (c.train_score >= c.meta["parent_score_ref"])
    assert any(not c.meta["admitted"] for c in res.candidates)  # the scripted agent does make worse edits
    assert res.extra["prompt_agent"] == initial_prompt_agent()
    # the prompt agent saw failures and successes, and an archive
    users = [request_text(b) for b in _agent_requests(srv, "TARGET")]
    assert any("FAILURE" in u and "SUCCESS" in u for u in users)
    assert any("## g" in u and "(score " in u for u in users[2:])
    assert task.evaluator.calls >= 11 and ledger.total.requests == len(srv.requests)


def test_rerun_with_the_cache_pays_nothing(srv, tmp_path):
    cache = tmp_path / "cache.sqlite"
    results = []
    for _ in range(2):
        task_llm, prompt_llm, _ = clients(srv.url, cache)
        agent = PromptAgent(prompt_llm, initial_prompt_agent())
        before = len(srv.requests)
        r = finetune(make_task(SynthBench, task_llm), agent, EvolveSettings(**SMALL), seed=1)
        results.append((archive_view([e.to_dict() for e in r.archive.entries]), len(srv.requests) - before))
    (a1, paid1), (a2, paid2) = results
    assert a1 == a2 and paid1 > 0 and paid2 == 0


def test_no_archive_ablation_extends_the_latest_child_even_when_worse(tmp_path):
    n = {"calls": 0}

    def sometimes_worse(body):  # every third task-prompt proposal forgets every keyword (scores 0)
        if body["model"] == "prompt" and "TARGET" in request_text(body):
            n["calls"] += 1
            if n["calls"] % 3 == 0:
                return f"Start over.\n<prompt>Answer briefly, attempt {n['calls']}.</prompt>"
        return reply(body)

    with LoopbackServer(reply=sometimes_worse) as srv:
        task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
        res = SePO(self_improve=False, archive=False, **SMALL).optimize(make_task(SynthBench, task_llm), prompt_llm,
                                                                         seed=2)
        assert len(res.candidates) == 1 + 5 * 2
        cands = [c for c in res.candidates if not c.meta.get("skipped")]  # duplicates are skipped
        assert all(c.parent_id == p.id for p, c in zip(cands, cands[1:], strict=False))  # a pure chain
        assert all(c.meta["admitted"] for c in cands)
        worse = [c for p, c in zip(cands, cands[1:], strict=False) if c.train_score < p.train_score]
        assert worse and any(c.parent_id == w.id for w in worse for c in cands)  # a worse child was extended
        check_tree(res.candidates)
        users = [request_text(b) for b in _agent_requests(srv, "TARGET")]
        assert users and all("(no archive in this run)" in u for u in users)


def test_paired_admission_rescores_the_parent_on_the_childs_draw(srv, tmp_path):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
    res = SePO(self_improve=False, generations=4, children=2, minibatch=4).optimize(
        make_task(SynthBench, task_llm), prompt_llm, seed=0)
    by_id = {c.id: c for c in res.candidates}
    scored = [c for c in res.candidates[1:] if c.train_score is not None]
    for c in scored:
        ref = c.meta["parent_score_ref"]  # the parent re-scored on this generation's draw
        assert c.meta["admitted"] == (c.train_score >= ref)
    assert any(c.meta["parent_score_ref"] != by_id[c.parent_id].train_score for c in scored)
    check_tree(res.candidates)


def test_pretraining_evolves_the_agent_and_finetuning_uses_it_frozen(srv, tmp_path):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
    pool = [make_task(PoolA, task_llm), make_task(PoolB, task_llm)]
    store = tmp_path / "pstar"
    sepo = SePO(SePOSettings(**SMALL, pstar_dir=str(store)), pool_tasks=pool)
    res = sepo.optimize(make_task(SynthBench, task_llm), prompt_llm, seed=0, checkpoint_dir=tmp_path / "ck")
    p_star = res.extra["prompt_agent"]
    pre = res.extra["pretrain_candidates"]
    assert p_star != initial_prompt_agent() and "RULE-" in p_star and p_star.startswith(initial_prompt_agent())
    assert max(c.train_score for c in pre) > pre[0].train_score  # S~ improved
    check_tree(pre)
    assert res.extra["pretrain_pool"] == ["sepo-pool-a", "sepo-pool-b"]
    assert res.extra["pstar"]["held_out_target"] is True and res.extra["pstar"]["reused"] is False
    # the fine-tuning stage used the frozen p~*: every task-prompt request for the target has it as system
    ft = _agent_requests(srv, "TARGET")
    assert ft and all(b["messages"][0]["content"] == p_star for b in ft)
    # self-rewrites happened in pre-training only, each with its parent as the system prompt
    selfs = _agent_requests(srv, "# Rewrite your own system prompt")
    texts = {c.prompt for c in pre}
    assert len(selfs) == 5 * 2 and all(b["messages"][0]["content"] in texts for b in selfs)
    (art,) = store.iterdir()
    assert (art / "p_star.md").read_text() == p_star
    prov = json.loads((art / "provenance.json").read_text())
    assert prov["pool"] == ["sepo-pool-a", "sepo-pool-b"] and prov["variant"] == "generalist"
    assert prov["pool_examples"]["sepo-pool-a"] == [e.id for e in pool[0].train]
    assert res.best.train_score > res.candidates[0].train_score
    usage = res.extra["usage"]
    assert usage["pretrain"]["evaluations"] > 0 and usage["finetune"]["evaluations"] > 0
    assert usage["total"]["evaluations"] == pytest.approx(sum(usage[k]["evaluations"]
                                                              for k in ("pretrain", "finetune", "val")))

    # p~* is reusable on a task held out of pre-training: loaded, no pre-training, used frozen
    n_self = len(selfs)
    reuse = SePO(SePOSettings(**SMALL, prompt_agent_path=str(art / "p_star.md")))
    out = reuse.optimize(make_task(HeldOut, task_llm), prompt_llm, seed=0)
    held = _agent_requests(srv, "HELDOUT")
    assert held and all(b["messages"][0]["content"] == p_star for b in held)
    assert len(_agent_requests(srv, "# Rewrite your own system prompt")) == n_self
    assert out.extra["pretrain_candidates"] == [] and out.best.train_score > out.candidates[0].train_score
    assert out.extra["pstar"]["reused"] is True


def test_specialist_pretrains_on_one_task(srv, tmp_path):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cache.sqlite")
    assert SePO(variant="specialist").benchmarks_needed("mbpp") == ["arc"]  # its related task by default
    assert SePO(variant="specialist", pretrain_pool=["gpqa"]).benchmarks_needed("mbpp") == ["gpqa"]
    with pytest.raises(Exception, match="one name"):
        SePO(variant="specialist", pretrain_pool=["aime", "gpqa"]).benchmarks_needed("mbpp")
    sepo = SePO(variant="specialist", pretrain_generations=2, pretrain_children=1, **SMALL,
                pool_tasks=[make_task(PoolA, task_llm)])
    res = sepo.optimize(make_task(SynthBench, task_llm), prompt_llm, seed=0)
    assert "RULE-" in res.extra["prompt_agent"] and len(res.extra["pretrain_candidates"]) == 3
    assert res.extra["pretrain_pool"] == ["sepo-pool-a"]


def test_budget_stops_cleanly_and_a_resume_finishes_the_same(srv, tmp_path):
    full_llm = clients(srv.url, tmp_path / "full.sqlite")
    full = SePO(self_improve=False, **SMALL).optimize(make_task(SynthBench, full_llm[0]), full_llm[1], seed=4,
                                                      checkpoint_dir=tmp_path / "full")
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cut.sqlite", budget=Budget(max_requests=40))
    cut = SePO(self_improve=False, **SMALL).optimize(make_task(SynthBench, task_llm), prompt_llm, seed=4,
                                                     checkpoint_dir=tmp_path / "cut")
    assert cut.extra["stopped"] == "budget" and 1 < len(cut.candidates) < len(full.candidates)
    assert cut.best.train_score == max(c.train_score for c in cut.candidates if c.meta["admitted"])
    saved = json.loads((tmp_path / "cut" / "sepo-finetune.json").read_text())
    assert len(saved["archive"]["entries"]) == len(cut.candidates)
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "cut.sqlite")  # no cap now
    resumed = SePO(self_improve=False, **SMALL).optimize(make_task(SynthBench, task_llm), prompt_llm, seed=4,
                                                         checkpoint_dir=tmp_path / "cut")
    view = [(c.id, c.prompt, c.parent_id, c.generation, c.train_score, c.val_score, c.meta["admitted"])
            for c in resumed.candidates]
    assert view == [(c.id, c.prompt, c.parent_id, c.generation, c.train_score, c.val_score, c.meta["admitted"])
                    for c in full.candidates]
    assert resumed.best.id == full.best.id and resumed.extra["stopped"] is None


def test_budget_before_the_root_is_scored(srv, tmp_path):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "c.sqlite", budget=Budget(max_requests=3))
    res = SePO(self_improve=False, **SMALL).optimize(make_task(SynthBench, task_llm), prompt_llm, seed=0)
    assert res.extra["stopped"] == "budget" and res.best.prompt == INITIAL and res.best.train_score is None


def test_crash_after_a_checkpoint_resumes_exactly(srv, tmp_path):
    """In-process variant of kill-and-resume: a crash right after a checkpoint loses no paid request."""
    ck = tmp_path / "ck.json"
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "ref.sqlite")
    n0 = len(srv.requests)
    ref = finetune(make_task(SynthBench, task_llm), PromptAgent(prompt_llm, initial_prompt_agent()),
                   EvolveSettings(**SMALL), seed=5)
    paid_ref = len(srv.requests) - n0

    class Crash(Exception):
        pass

    def crash_at_g3(entry):  # the 6th candidate: checkpointed, then the process "dies"
        if entry.id == "g3-0":
            raise Crash

    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "run.sqlite")
    n1 = len(srv.requests)
    with pytest.raises(Crash):
        finetune(make_task(SynthBench, task_llm), PromptAgent(prompt_llm, initial_prompt_agent()),
                 EvolveSettings(**SMALL), seed=5, checkpoint=ck, on_candidate=crash_at_g3)
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "run.sqlite")
    seen = []
    res = finetune(make_task(SynthBench, task_llm), PromptAgent(prompt_llm, initial_prompt_agent()),
                   EvolveSettings(**SMALL), seed=5, checkpoint=ck, on_candidate=lambda e: seen.append(e.id))
    assert len(srv.requests) - n1 == paid_ref
    assert archive_view([e.to_dict() for e in res.archive.entries]) == \
        archive_view([e.to_dict() for e in ref.archive.entries])
    assert seen == [e.id for e in res.archive.entries[6:]]  # restored candidates are not re-reported
    with pytest.raises(ValueError, match="different run"):
        finetune(make_task(SynthBench, task_llm), PromptAgent(prompt_llm, initial_prompt_agent()),
                 EvolveSettings(**SMALL), seed=6, checkpoint=ck)


def test_an_evaluation_budget_keeps_the_val_pass_for_every_contender(srv, tmp_path):
    # SynthBench: val 8; minibatch 8 -> root 8 + per generation 2 x (8 child + 8 parent) = 32; the val pass
    # (top 3 + root) needs 4 x 8 = 32. A cap of 100 cannot pay for the whole schedule (8 + 5 x 32 + 32).
    task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / "c.sqlite", budget=Budget(max_evaluations=100))
    res = SePO(self_improve=False, **SMALL).optimize(make_task(SynthBench, task_llm), prompt_llm, seed=0)
    assert res.extra["stopped"] == "budget"  # recorded as stopped before its schedule ended
    scored = [c for c in res.candidates if c.val_score is not None]
    contenders = {c.id for c in sorted((c for c in res.candidates if c.meta["admitted"] and c.train_score is not None),
                                       key=lambda c: -c.train_score)[:3]} | {res.candidates[0].id}
    assert {c.id for c in scored} == contenders  # the val pass covered every contender
    assert res.best.val_score == max(c.val_score for c in scored)
    assert ledger.total.evaluations <= 100
