"""The baselines' mechanics on a scripted world (tests/worlds.py) behind a LoopbackServer."""

from __future__ import annotations

import math
import random
from statistics import fmean

import pytest

from baselines.common import Journal, parse_operations
from baselines.espl import ESPL, Program, ranks_with_ties, softmax_sample
from baselines.gepa import GEPA, HarnessAdapter
from baselines.manual_cot import PROMPTS, ManualCoT
from baselines.metaspo import MetaSPO
from baselines.textgrad import TextGrad
from harness.config import ConfigError
from harness.llm.usage import Budget
from harness.methods import METHODS, make_optimizer
from harness.optimizer import Candidate, RunContext
from tests.loopback import LoopbackServer
from tests.worlds import INITIAL, WorldBench, kw, make_task, reply
from tests.worlds import BLPoolA as PoolA
from tests.worlds import BLPoolB as PoolB
from tests.worlds import baseline_clients as clients

BASELINES = ["manual-cot", "textgrad", "metaspo", "espl", "gepa"]


@pytest.fixture
def srv():
    with LoopbackServer(reply=reply) as s:
        yield s


def prompt_requests(srv, marker: str = "") -> list[dict]:
    return [b for b in srv.requests if b["model"] == "prompt" and marker in "\n".join(
        m["content"] for m in b["messages"])]


def check_lineage(cands: list[Candidate]) -> None:
    by_id = {c.id: c for c in cands}
    assert len(by_id) == len(cands), "candidate ids are unique"
    for c in cands:
        assert c.parent_id is None or c.parent_id in by_id, c
        assert isinstance(c.meta.get("stage"), str) and "admitted" in c.meta and "cost" in c.meta, c


# ---- registry and settings --------------------------------------------------------------------------

def test_registered_and_settings_strict():
    for name in BASELINES:
        assert name in METHODS
        opt = make_optimizer(name, {})
        assert opt.name == name and callable(opt.optimize)
        with pytest.raises(ConfigError, match="unknown setting 'no_such_key'"):
            make_optimizer(name, {"no_such_key": 1})
    with pytest.raises(ConfigError, match="iterations"):
        make_optimizer("textgrad", {"iterations": -1})


def test_metaspo_benchmarks_needed():
    assert MetaSPO({"meta_train_pool": ["gpqa", "mbpp"]}).benchmarks_needed("mbpp") == ["gpqa"]
    default = MetaSPO().benchmarks_needed("mbpp")
    assert "mbpp" not in default and "custom" not in default and {"aime", "gpqa"} <= set(default)


# ---- Manual-CoT -------------------------------------------------------------------------------------

def test_manual_cot_one_scored_candidate(srv, tmp_path):
    task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / "c.sqlite")
    task = make_task(WorldBench, task_llm)
    seen: list[Candidate] = []
    res = ManualCoT(minibatch=8).optimize(task, prompt_llm, seed=0, on_candidate=seen.append)
    assert [c.id for c in seen] == ["cot-0"] and res.best is seen[0]
    assert res.best.prompt == PROMPTS["generic"] and res.best.train_score == 0.0 and res.best.val_score == 0.0
    assert len(res.best.meta["example_ids"]) == 8 and len(res.best.meta["val_example_ids"]) == 8
    assert ledger.total.evaluations == 16 == res.extra["spent"]["evaluations"]
    assert not prompt_requests(srv)  # no optimizer calls at all
    from types import SimpleNamespace

    from baselines.manual_cot import cot_prompt

    def fake(name, **kw):
        return SimpleNamespace(benchmark=SimpleNamespace(name=name, **kw))

    assert "```python" in cot_prompt(fake("mbpp")) and "Answer: X" in cot_prompt(fake("gpqa"))
    assert "\\boxed" in cot_prompt(fake("aime")) and "\\boxed" in cot_prompt(fake("custom", scorer="math"))
    assert "one row per line" in cot_prompt(fake("arc")) and "Sudoku" in cot_prompt(fake("sudoku"))


# ---- TextGrad -----------------------------------------------------------------------------------------

def test_textgrad_engine_goes_through_llm_layer(srv, tmp_path):
    from baselines.textgrad import harness_engine

    _, prompt_llm, ledger = clients(srv.url, tmp_path / "c.sqlite")
    eng = harness_engine(prompt_llm, temperature=0.0, max_tokens=50, seed=3)
    n = len(srv.requests)
    assert eng("hello [alpha] item 1", system_prompt="You are the gradient (feedback) engine.") .startswith("Adding")
    assert eng("hello [alpha] item 1", system_prompt="You are the gradient (feedback) engine.")  # cache hit
    assert len(srv.requests) == n + 1
    body = srv.requests[-1]
    assert body["model"] == "prompt" and body["seed"] == 3 and body["max_tokens"] == 50
    assert body["messages"][0] == {"role": "system", "content": "You are the gradient (feedback) engine."}
    u = ledger.by_role["prompt"]
    assert (u.requests, u.cache_hits) == (1, 1) and u.tokens > 0


def test_textgrad_steps_improve_and_revert_fires(tmp_path):
    calls = {"tgd": 0}

    def scripted(body):  # the second TGD step proposes a worse prompt (all keywords dropped)
        system = body["messages"][0]["content"]
        if body["model"] == "prompt" and "<IMPROVED_VARIABLE>" in system:
            calls["tgd"] += 1
            if calls["tgd"] == 2:
                return "<IMPROVED_VARIABLE>Answer with anything.</IMPROVED_VARIABLE>"
        return reply(body)

    with LoopbackServer(reply=scripted) as srv:
        task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / "c.sqlite")
        task = make_task(WorldBench, task_llm)
        seen: list[Candidate] = []
        opt = TextGrad(iterations=4, minibatch=8)
        res = opt.optimize(task, prompt_llm, seed=0, on_candidate=seen.append)
        assert [c.id for c in seen] == [c.id for c in res.candidates] == [f"tg-{i}" for i in range(5)]
        check_lineage(res.candidates)
        root, c1, c2, c3, _ = res.candidates
        assert root.prompt == INITIAL and root.val_score == 0.0
        assert c1.meta["admitted"] and c1.val_score > root.val_score and c1.parent_id == "tg-0"
        assert c2.prompt == "Answer with anything." and c2.meta["reverted"] and not c2.meta["admitted"]
        assert c2.val_score < c1.val_score and c3.parent_id == "tg-1"  # the step after a revert starts from c1
        assert res.best.val_score == max(c.val_score for c in res.candidates if c.val_score is not None)
        assert kw("alpha") in res.best.prompt and res.best.meta["admitted"]
        # every textgrad call went through the harness layer: the backward engine and TGD are prompt-role requests
        tg_reqs = prompt_requests(srv)
        pu = ledger.by_role["prompt"]
        assert opt.engine.calls == pu.requests + pu.cache_hits and len(tg_reqs) == pu.requests > 0
        assert any("<IMPROVED_VARIABLE>" in b["messages"][0]["content"] for b in tg_reqs)
        assert any("gradient (feedback) engine" in b["messages"][0]["content"] for b in tg_reqs)
        # the loss carries the scorer's feedback into the backward pass
        assert any("expected ANSWER" in b["messages"][-1]["content"] for b in tg_reqs)
        # every evaluation (forward passes and validation) was counted
        judged = sum(c.val_score is not None for c in res.candidates)
        assert ledger.total.evaluations == 4 * 8 + judged * 8 == res.extra["spent"]["evaluations"]


# ---- MetaSPO ----------------------------------------------------------------------------------------

def _metaspo_context(task_llm) -> RunContext:
    tasks = {"bl-pool-a": make_task(PoolA, task_llm), "bl-pool-b": make_task(PoolB, task_llm)}
    opened: list[str] = []

    def open_task(name, seed):
        opened.append(name)
        return tasks[name]

    ctx = RunContext(open_task=open_task)
    ctx.opened = opened  # type: ignore[attr-defined]
    return ctx


def test_metaspo_bilevel_and_mean_acceptance(srv, tmp_path):
    task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / "c.sqlite")
    target = make_task(WorldBench, task_llm)
    ctx = _metaspo_context(task_llm)
    opt = MetaSPO(meta_train_pool=["bl-pool-a", "bl-pool-b", "bl-target"], iterations=2, system_candidates=3,
                  user_candidates=2, user_top_k=2, train_size=6)
    assert opt.benchmarks_needed("bl-target") == ["bl-pool-a", "bl-pool-b"]  # the target stays unseen
    seen: list[Candidate] = []
    res = opt.optimize(target, prompt_llm, seed=1, on_candidate=seen.append, context=ctx)
    assert ctx.opened == ["bl-pool-a", "bl-pool-b"] and res.extra["meta_train_tasks"] == ["bl-pool-a", "bl-pool-b"]
    check_lineage(res.candidates)
    assert [c.id for c in seen] == [c.id for c in res.candidates]
    inner = [c for c in res.candidates if c.meta["stage"] == "inner" and c.generation > 0]
    outer = [c for c in res.candidates if c.meta["stage"] == "outer" and c.generation > 0]
    # both levels ran: 2 rounds x 2 tasks x 2 user prompts, 2 rounds x 3 system prompts
    assert len(inner) == 8 and len(outer) == 6
    assert all("{question}" in c.prompt for c in inner)
    assert {c.meta["task"] for c in inner} == {"bl-pool-a", "bl-pool-b"}
    assert any(c.train_score > 0 for c in inner)
    # acceptance uses the mean over every task x user-prompt node, against the best so far
    for c in outer:
        assert c.train_score == pytest.approx(fmean(c.meta["node_scores"].values()))
        assert len(c.meta["node_scores"]) == 4  # 2 tasks x top-2 user prompts
        assert c.meta["admitted"] == (c.train_score > c.meta["compared_score"])
    assert any(c.meta["admitted"] for c in outer) and any(not c.meta["admitted"] for c in outer)
    accepted = [c for c in outer if c.meta["admitted"]]
    assert res.best.id == accepted[-1].id and res.best.prompt != INITIAL
    # the system proposals saw wrong examples pooled from both tasks
    analyses = prompt_requests(srv, "## Wrong responses (from several tasks)")
    assert any("POOL" not in b["messages"][-1]["content"] and "[eta]" in b["messages"][-1]["content"]
               and "[iota]" in b["messages"][-1]["content"] for b in analyses)
    assert "bl-target" not in {r.get("model") for r in srv.requests}  # sanity: only task/prompt models
    assert ledger.total.evaluations == res.extra["spent"]["evaluations"]


def test_metaspo_without_context_uses_target_train(srv, tmp_path):
    task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "c.sqlite")
    res = MetaSPO(iterations=1, system_candidates=1, user_candidates=1, train_size=4).optimize(
        make_task(WorldBench, task_llm), prompt_llm, seed=0)
    assert res.extra["meta_train_tasks"] == ["bl-target"] and "no RunContext" in res.extra["pool_kind"]
    assert res.extra["pretrain_pool"] == ["bl-target"]  # so the runner flags the target as seen in meta-training


# ---- E-SPL --------------------------------------------------------------------------------------------

def test_espl_ratings_follow_rankings():
    opt = ESPL()
    a, b, c = (Program(f"p{i}", {}, 25.0, 25 / 3, [], "root", -1) for i in range(3))
    opt.rate([a, b, c], [0, 1, 2])
    assert a.mu > 25 > c.mu and a.mu > b.mu > c.mu and all(p.sigma < 25 / 3 for p in (a, b, c))
    x, y = (Program(f"q{i}", {}, 25.0, 25 / 3, [], "root", -1) for i in range(2))
    opt.rate([x, y], [0, 0])  # a tie moves neither mean
    assert x.mu == pytest.approx(25.0) and y.mu == pytest.approx(25.0) and x.sigma < 25 / 3
    assert ranks_with_ties([0.9, 0.895, 0.5, 0.5], 0.01) == [0, 0, 2, 2]
    # the paper's TrueSkill parameters
    env = opt.env()
    assert (env.mu, env.sigma, env.beta, env.tau, env.draw_probability) == (25, 25 / 3, 25 / 6, 25 / 300, 0.10)


def test_espl_selection_is_optimistic():
    # an uncertain program (mu 20, sigma 8: 36 optimistic) beats a sure one (mu 30, sigma 1: 32)
    opt = ESPL(programs_per_step=1, recent_window=5, include_last=False)
    sure = Program("sure", {}, 30.0, 1.0, [], "root", 0)
    unsure = Program("unsure", {}, 20.0, 8.0, [], "root", 0)
    old = Program("old", {}, 40.0, 0.5, [], "root", 0)  # best of all, but outside the window of 2
    opt.settings.recent_window = 2
    r = random.Random(0)
    picks = [opt.select([old, sure, unsure], r)[0].id for _ in range(4000)]
    assert "old" not in picks
    share = picks.count("unsure") / len(picks)
    expected = 1 / (1 + math.exp((32 - 36) / 36))  # softmax over mu + 2 sigma at temperature max(score, 1)
    assert share == pytest.approx(expected, abs=0.03) and share > 0.5
    # without replacement, and the newest program always among the M
    opt2 = ESPL(programs_per_step=2, recent_window=5)
    for _ in range(50):
        chosen = opt2.select([old, sure, unsure], r)
        assert len({p.id for p in chosen}) == 2 and unsure in chosen
    assert sorted(softmax_sample([1.0, 2.0, 3.0], 3, r)) == [0, 1, 2]


def test_espl_loop_mutation_crossover_and_ratings(srv, tmp_path):
    task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / "c.sqlite")
    task = make_task(WorldBench, task_llm)
    seen: list[Candidate] = []
    rl_calls: list[tuple[int, list]] = []
    opt = ESPL(steps=6, batch_size=8, crossover_prob=1.0, critique_problems=2,
               rl_update=lambda step, groups: rl_calls.append((step, groups)))
    res = opt.optimize(task, prompt_llm, seed=0, on_candidate=seen.append)
    # the RL half's plug-in point sees every step's rollouts, per selected program
    assert [s for s, _ in rl_calls] == list(range(6))
    assert all(len(g["rollouts"]) == 8 and g["prompt"] for _, groups in rl_calls for g in groups)
    check_lineage(res.candidates)
    assert [c.id for c in seen] == [c.id for c in res.candidates if c.train_score is not None]
    kinds = {c.meta["kind"] for c in res.candidates}
    assert {"root", "mutation"} <= kinds
    for h in res.extra["history"]:  # ratings moved as each step's ranking dictates
        ids = list(h["scores"])
        if len(ids) >= 2 and h["ranks"][0] != h["ranks"][-1]:
            first, last = ids[0], ids[-1]
            assert h["after"][first][0] > h["before"][first][0]
            assert h["after"][last][0] < h["before"][last][0]
    muts = [c for c in res.candidates if c.meta["kind"] == "mutation"]
    assert muts and all("Use KW-" in c.prompt for c in muts)  # mutations add principles "Use KW-..."
    assert res.best.train_score is not None and res.best.train_score > res.candidates[0].train_score
    assert "When solving problems" in res.best.prompt
    assert prompt_requests(srv, "<attempts>") and prompt_requests(srv, "<suggested_updates>")
    assert ledger.total.evaluations == res.extra["spent"]["evaluations"] > 0


def test_espl_crossover_from_the_win_matrix():
    from types import SimpleNamespace

    opt = ESPL(tie_tolerance=0.01, crossover_sigma=1.0)
    opt.programs = [None] * 5
    a = Program("pa", {"G0": "Use KW-ALPHA."}, 30.0, 2.0, [], "mutation", 0)
    b = Program("pb", {"G0": "Use KW-BETA."}, 26.0, 4.0, [], "mutation", 0)
    c = Program("pc", {}, 20.0, 3.0, [], "root", 0)  # wins nothing alone: left out
    batch = [SimpleNamespace(id=f"q{i}", question=f"[{cat}] item {i}") for i, cat in
             enumerate(["alpha", "beta", "gamma", "alpha"])]
    table = {"pa": [1, 0, 0, 1], "pb": [0, 1, 0, 0], "pc": [0, 0, 0, 0]}
    results = {pid: {"records": [{"id": f"q{i}", "score": float(v)} for i, v in enumerate(row)]}
               for pid, row in table.items()}
    asked = []

    def ask(key, prompt):
        asked.append(prompt)
        return reply({"model": "prompt", "messages": [{"role": "user", "content": prompt}]})

    child = opt._crossover(3, [a, b, c], results, batch, ask)
    (prompt,) = asked
    assert "Principle Set A" in prompt and "Principle Set B" in prompt and "Principle Set C" not in prompt
    a_part, b_part = prompt.split("Set A did best on:")[1].split("Set B did best on:")
    assert "Q.0" in a_part and "Q.3" in a_part and "Q.1" in b_part and "Q.2" not in prompt.split("did best on")[1]
    assert child.principles == {"G0": "Use KW-ALPHA.", "G1": "Use KW-BETA."} and child.parent_ids == ["pa", "pb"]
    pa, pb = 1 / 2.0**2, 1 / 4.0**2
    assert child.mu == pytest.approx((30 * pa + 26 * pb) / (pa + pb))
    assert child.sigma == pytest.approx(math.sqrt(1 / (pa + pb) + 1.0))
    # no crossover when set A won nothing alone
    results["pa"]["records"][0]["score"] = 0.0
    results["pa"]["records"][3]["score"] = 0.0
    assert opt._crossover(4, [a, b, c], results, batch, ask) is None


# ---- GEPA -----------------------------------------------------------------------------------------------

def test_gepa_adapter_returns_the_evaluators_scores_and_traces(srv, tmp_path):
    task_llm, _, _ = clients(srv.url, tmp_path / "c.sqlite")
    task = make_task(WorldBench, task_llm)
    prompt = INITIAL + "\n" + kw("alpha") + "\n" + kw("gamma")
    produced = []
    real = task.evaluator.evaluate

    def spy(*args, **kwargs):
        produced.append(real(*args, **kwargs))
        return produced[-1]

    task.evaluator.evaluate = spy
    adapter = HarnessAdapter(task)
    out = adapter.evaluate(task.train[:8], {"system_prompt": prompt}, capture_traces=True)
    (res,) = produced
    assert out.scores == [r.score for r in res.records] and 0 < sum(out.scores) < 8
    assert out.scores == [1.0 if e.question.startswith(("[alpha]", "[gamma]")) else 0.0 for e in task.train[:8]]
    assert len(out.trajectories) == 8 and all(a is b for a, b in zip(out.trajectories, res.records, strict=True))
    assert out.outputs == [r.response for r in res.records]
    assert adapter.evaluate(task.train[:8], {"system_prompt": prompt}).trajectories is None
    ds = adapter.make_reflective_dataset({"system_prompt": prompt}, out, ["system_prompt"])["system_prompt"]
    assert [d["Inputs"] for d in ds] == [e.question for e in task.train[:8]]
    assert [d["Generated Outputs"] for d in ds] == [r.response for r in res.records]
    assert all(d["Feedback"].endswith(r.feedback) for d, r in zip(ds, res.records, strict=True))


def test_gepa_run_reports_pool_and_rejections(srv, tmp_path):
    task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / "c.sqlite")
    task = make_task(WorldBench, task_llm)
    seen: list[Candidate] = []
    opt = GEPA(max_metric_calls=80)
    res = opt.optimize(task, prompt_llm, seed=0, on_candidate=seen.append, checkpoint_dir=tmp_path / "ck")
    check_lineage(res.candidates)
    assert [c.id for c in seen] == [c.id for c in res.candidates] and res.candidates[0].id == "gepa-0"
    pool = [c for c in res.candidates if c.meta["stage"] == "pool"]
    assert len(pool) >= 2 and res.best.val_score == max(c.val_score for c in pool) > pool[0].val_score
    assert opt.reflection.calls == len(prompt_requests(srv, "I provided an assistant")) > 0
    assert ledger.total.evaluations == res.extra["spent"]["evaluations"] <= 80 + 8  # GEPA stops after the call
    assert res.extra["stopped"] is None


# ---- budget parity ----------------------------------------------------------------------------------------

BIG = {
    "manual-cot": {"minibatch": 16},
    "textgrad": {"iterations": 10, "minibatch": 8},
    "metaspo": {"iterations": 3, "system_candidates": 3, "user_candidates": 2, "train_size": 8},
    "espl": {"steps": 20, "batch_size": 8},
    "gepa": {"max_metric_calls": 1000},
}


@pytest.mark.parametrize("method", BASELINES)
def test_budget_parity(srv, tmp_path, method):
    """One example-evaluation budget for every method: each stops at it with a best-so-far, never passes it,
    and its own spend record agrees with the LLM layer's ledger and the server's request count."""
    cap = 20
    task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / "c.sqlite", budget=Budget(max_evaluations=cap))
    task = make_task(WorldBench, task_llm)
    ctx = _metaspo_context(task_llm)
    opt = make_optimizer(method, {**BIG[method], **({"meta_train_pool": ["bl-pool-a", "bl-pool-b"]}
                                                    if method == "metaspo" else {})})
    res = opt.optimize(task, prompt_llm, seed=0, checkpoint_dir=tmp_path / "ck", context=ctx)
    total = ledger.total
    assert total.evaluations <= cap
    if method != "manual-cot":  # Manual-CoT fits: 16 train + 8 val > 20 stops it too
        assert res.extra["stopped"] == "budget"
    assert isinstance(res.best, Candidate) and res.best.prompt
    spent = res.extra["spent"]
    assert spent["evaluations"] == total.evaluations and spent["requests"] == total.requests == len(srv.requests)
    assert spent["tokens"] == total.tokens
    # one task-agent request (or cache hit) per example evaluation: the units agree
    task_usage = ledger.by_role["task"]
    assert task_usage.requests + task_usage.cache_hits == task_usage.evaluations == total.evaluations


def test_budget_parity_requests_cap(srv, tmp_path):
    for method in BASELINES:
        task_llm, prompt_llm, ledger = clients(srv.url, tmp_path / f"{method}.sqlite", budget=Budget(max_requests=30))
        settings = {**BIG[method], **({"meta_train_pool": ["bl-pool-a", "bl-pool-b"]} if method == "metaspo" else {})}
        res = make_optimizer(method, settings).optimize(make_task(WorldBench, task_llm), prompt_llm, seed=0,
                                                          context=_metaspo_context(task_llm))
        assert ledger.total.requests <= 30 and res.extra["spent"]["requests"] == ledger.total.requests
        assert res.extra["stopped"] == "budget" or method == "manual-cot"


# ---- resume ---------------------------------------------------------------------------------------------------

SMALL = {
    "manual-cot": {"minibatch": 8},
    "textgrad": {"iterations": 3, "minibatch": 6},
    "metaspo": {"iterations": 1, "system_candidates": 2, "user_candidates": 1, "train_size": 4,
                "meta_train_pool": ["bl-pool-a", "bl-pool-b"]},
    "espl": {"steps": 4, "batch_size": 6, "crossover_prob": 0.5},
    "gepa": {"max_metric_calls": 60},
}


def _view(cands: list[Candidate]) -> list[tuple]:
    return [(c.id, c.prompt, c.parent_id, c.train_score, c.val_score, c.meta.get("admitted")) for c in cands]


@pytest.mark.parametrize("method", BASELINES)
def test_resume_after_a_stop_repeats_no_request(tmp_path, method):
    """A run stopped midway and resumed from its checkpoint ends exactly like an uninterrupted run, and the
    two parts together send the server exactly the requests the uninterrupted run sent."""
    with LoopbackServer(reply=reply) as srv:
        task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "a.sqlite")
        ref = make_optimizer(method, SMALL[method]).optimize(make_task(WorldBench, task_llm), prompt_llm, seed=2,
                                                             checkpoint_dir=tmp_path / "a",
                                                             context=_metaspo_context(task_llm))
        n_ref = len(srv.requests)
    with LoopbackServer(reply=reply) as srv:
        task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "b.sqlite", budget=Budget(max_evaluations=14))
        first = make_optimizer(method, SMALL[method]).optimize(make_task(WorldBench, task_llm), prompt_llm, seed=2,
                                                               checkpoint_dir=tmp_path / "b",
                                                               context=_metaspo_context(task_llm))
        assert first.extra["stopped"] == "budget"
        task_llm, prompt_llm, _ = clients(srv.url, tmp_path / "b.sqlite")
        seen: list[Candidate] = []
        second = make_optimizer(method, SMALL[method]).optimize(make_task(WorldBench, task_llm), prompt_llm, seed=2,
                                                                checkpoint_dir=tmp_path / "b",
                                                                on_candidate=seen.append,
                                                                context=_metaspo_context(task_llm))
        assert len(srv.requests) == n_ref
    assert _view(second.candidates) == _view(ref.candidates)
    assert second.best.id == ref.best.id and second.extra["stopped"] is None
    assert {c.id for c in seen}.isdisjoint({c.id for c in first.candidates if c.train_score is not None
                                            or c.val_score is not None}) or method == "espl"


def test_journal_refuses_another_run_and_drops_a_torn_line(tmp_path):
    p = tmp_path / "j.jsonl"
    j = Journal(p, {"seed": 1})
    j.put("a", {"x": 1})
    with p.open("a") as f:
        f.write('{"key": "b", "val')  # a kill mid-write
    j2 = Journal(p, {"seed": 1})
    assert j2.entries == {"a": {"x": 1}} and j2.restored == {"a"}
    with pytest.raises(ValueError, match="different run"):
        Journal(p, {"seed": 2})


def test_parse_operations_is_lenient():
    assert parse_operations('x\n```json\n[{"operation": "add", "principle": "p \\frac{1}{2}"},]\n```') == [
        {"operation": "add", "principle": "p \\frac{1}{2}"}]
    assert parse_operations('[{"operation": "modify", "modified_from": "G1",  # the id\n "principle": "q"}]') == [
        {"operation": "modify", "modified_from": "G1", "principle": "q"}]
    assert parse_operations("no json here") == []


def test_a_rejected_proposer_request_fails_the_proposal_not_the_run(srv, tmp_path):
    from baselines.common import chat
    from harness.llm.client import LLMError
    from tests.loopback import Fault

    _, prompt_llm, _ = clients(srv.url, tmp_path / "c.sqlite")
    srv.inject(Fault(status=400))
    assert chat(prompt_llm, "a prompt over the context") == ""
    srv.inject(Fault(status=404))  # not a property of this request: the run must stop
    with pytest.raises(LLMError):
        chat(prompt_llm, "another prompt")
