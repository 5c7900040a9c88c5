"""The rehearsal's simulated world (harness/rehearsal/): answers in each benchmark's format scored by the real
scorers, prompt features that move accuracy, truncation at max_tokens, and every method's proposer format
parsed by the method's own parser (some through the method itself, over HTTP)."""

from __future__ import annotations

import pytest

from harness.benchmarks import get_benchmark
from harness.config import BenchmarkConfig, EndpointConfig, ExperimentConfig
from harness.evaluator import Evaluator
from harness.llm.cache import ResponseCache
from harness.llm.client import LLMClient
from harness.llm.usage import Ledger
from harness.optimizer import OptimizationTask
from harness.rehearsal import answers, features
from harness.rehearsal.prompt_agent import PromptAgent
from harness.rehearsal.world import World, build_index

GOOD = ("Reason step by step. Before you answer, verify the result. State the final answer exactly in the "
        "format the question asks for.")
BENCHES = {"aime": {}, "gpqa": {}, "arc": {}, "sudoku": {"size": 4}}


@pytest.fixture(scope="module")
def agent():
    cfg = ExperimentConfig(benchmarks=[BenchmarkConfig(name=n, options=o) for n, o in BENCHES.items()])
    return build_index(cfg, [0])


def body(bench, system, ex, max_tokens=100_000, temperature=0.0, seed=None):
    return {"messages": bench.to_messages(system, ex), "max_tokens": max_tokens, "temperature": temperature,
            "seed": seed}


@pytest.mark.parametrize("name", list(BENCHES))
def test_right_and_wrong_answers_score_through_the_real_scorer(name):
    b = get_benchmark(name, **BENCHES[name])
    for ex in b.load("test", 0)[:8] + b.load("train", 0)[:8]:
        assert b.score(ex, answers.answer(name, ex, True, 0.3)).correct
        wrong = b.score(ex, answers.answer(name, ex, False, 0.3))
        assert not wrong.correct and wrong.extracted is not None  # parseable, just wrong


def test_arc_tasks_with_several_outputs():
    b = get_benchmark("arc")
    multi = [e for e in b.load("test", 0) if len(e.answer) > 1][:3]
    assert multi
    for ex in multi:
        assert b.score(ex, answers.answer("arc", ex, True, 0.1)).value == 1.0
        assert b.score(ex, answers.answer("arc", ex, False, 0.1)).value == 0.0


def test_mbpp_reference_passes_and_broken_variant_fails_in_docker():
    from tests.sandbox_fixtures import open_docker

    sb = open_docker()
    try:
        b = get_benchmark("mbpp", sandbox=sb)
        refs = {str(r["task_id"]): r["code"] for r in b.rows()}
        exs = b.load("test", 0)[:6]
        right = b.score_many(exs, [answers.answer("mbpp", e, True, 0.5, refs[e.id]) for e in exs])
        wrong = b.score_many(exs, [answers.answer("mbpp", e, False, 0.5, refs[e.id]) for e in exs])
        assert all(s.correct for s in right), [s.reason for s in right]
        assert not any(s.correct for s in wrong)
    finally:
        sb.close()


@pytest.mark.parametrize("name", list(BENCHES))
def test_prompt_features_move_accuracy(agent, name):
    b = get_benchmark(name, **BENCHES[name])
    exs = b.load("train", 0) + b.load("test", 0)

    def acc(system):
        return sum(b.score(e, agent.reply(body(b, system, e)).text).correct for e in exs) / len(exs)

    bare, good = acc(""), acc(GOOD)
    assert features.p_correct(features.profile(GOOD, name), name) > features.p_correct(features.profile("", name), name)
    assert good > bare
    assert acc(GOOD) == good  # deterministic per prompt x example
    padded = GOOD + " Remember every detail of every consideration." * 60
    assert features.p_correct(features.profile(padded, name), name) < features.p_correct(
        features.profile(GOOD, name), name)


def test_truncation_at_max_tokens(agent):
    b = get_benchmark("aime")
    ex = b.load("test", 0)[0]
    full = agent.reply(body(b, GOOD, ex))
    assert full.finish_reason == "stop" and full.completion_tokens > 200
    cut = agent.reply(body(b, GOOD, ex, max_tokens=100))
    assert cut.finish_reason == "length" and cut.completion_tokens == 100
    assert b.score(ex, cut.text).reason == "no answer found"
    assert cut.prompt_tokens == len(GOOD + ex.question) // 4


def test_later_samples_differ_greedy_ones_repeat(agent):
    b = get_benchmark("arc")
    ex = b.load("test", 0)[0]
    assert len({agent.reply(body(b, "", ex)).text for _ in range(3)}) == 1
    hot = [agent.reply(body(b, "x", ex, temperature=0.7, seed=s)).completion_tokens for s in range(4)]
    assert len(set(hot)) > 1  # sampled attempts with their own seeds differ
    again = [agent.reply(body(b, "x", ex, temperature=0.7, seed=s)).completion_tokens for s in range(4)]
    assert again == hot  # the same request body gets the same reply, whatever was asked before


def test_user_prompt_wrapping_is_found_and_counts(agent):
    b = get_benchmark("gpqa")
    ex = b.load("val", 0)[0]
    item, around = agent.find("Reason step by step.\n" + ex.question)
    assert item.example.id == ex.id and "step by step" in around
    assert agent.find("something else entirely") is None


# ---- the prompt agent's formats, parsed by each method's own parser ---------------------------------------

def ask(system: str, user: str, seed: int = 0) -> tuple[str, str]:
    pa = PromptAgent()
    reply = pa.reply({"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
                      "seed": seed, "max_tokens": 100_000})
    return next(iter(pa.kinds)), reply.text


def test_sepo_task_and_self_rewrites_parse():
    from sepo.agent import PROMPT_TASK, SELF_TAG, initial_prompt_agent, tagged_prompt
    from sepo.agent import PromptAgent as SePOAgent

    gpqa = get_benchmark("gpqa")
    changed = set()
    for seed in range(12):
        user = SePOAgent.request("task_request.md", gpqa.description, "You are helpful.", "", [], 0.5)
        kind, text = ask(initial_prompt_agent(), user, seed)
        assert kind == "sepo-task" and tagged_prompt(text)
        changed.add(tagged_prompt(text) != "You are helpful.")
        user = SePOAgent.request("self_request.md", PROMPT_TASK, initial_prompt_agent(), "", [], None)
        kind, text = ask(initial_prompt_agent(), user, seed)
        assert kind == "sepo-self" and tagged_prompt(text, SELF_TAG).startswith(initial_prompt_agent()[:40])
    assert True in changed


def test_metaspo_formats_parse():
    from baselines import metaspo as m
    from baselines.common import extract_tag

    ex = "<Example>\nResponse: Answer: B\nGrader: wrong\n</Example>"
    kind, text = ask(m.USER_ANALYST, m.USER_ANALYSIS.format(system="S", user="{question}", examples=ex))
    assert kind == "metaspo-analysis" and extract_tag(text, "Analysis")
    kind, text = ask(m.USER_WRITER, m.USER_REWRITE.format(system="S", user="{question}", examples=ex, analysis="a"))
    new = extract_tag(text, "improved_instruction_prompt")
    assert kind == "metaspo-user" and new.count("{question}") == 1
    kind, text = ask(m.SYSTEM_ANALYST, m.SYSTEM_ANALYSIS.format(system="S", examples=ex))
    assert kind == "metaspo-analysis" and extract_tag(text, "Analysis")
    kind, text = ask(m.SYSTEM_WRITER, m.SYSTEM_REWRITE.format(system="Be good.", analysis="a"))
    assert kind == "metaspo-system" and extract_tag(text, "improved_system_prompt")


def test_espl_formats_parse():
    from baselines import espl as e
    from baselines.common import parse_operations

    kinds = set()
    for seed in range(6):
        kind, text = ask("", e.CRITIQUE.format(max_operations=2, problem="GPQA question", attempts="Answer: A",
                                               answer="B", principles="[G0]. Be careful."), seed)
        ops = parse_operations(text)
        assert kind == "espl-critique" and ops and ops[0]["operation"] == "add"
        kinds.add(kind)
    kind, text = ask("", e.BATCH_UPDATE.format(principles="[G0]. x", updates="[C1]. y"))
    assert kind == "espl-update" and parse_operations(text) == [] and "```json" in text
    kind, text = ask("", e.CROSSOVER_START + "Principle Set A\n[A.G0]. x\n\n" + e.CROSSOVER_ANALYSIS, 3)
    assert kind == "espl-crossover" and isinstance(parse_operations(text), list)


def test_gepa_reflection_parses():
    from gepa.strategies.instruction_proposal import InstructionProposalSignature as Sig

    cur = "Answer the question.\nState the final answer exactly in the format the question asks for."
    user = Sig.prompt_renderer({"current_instruction_doc": cur, "dataset_with_feedback": [
        {"Inputs": "q", "Generated Outputs": "```python\ndef f(): pass\n```", "Feedback": "Incorrect"}]})
    kind, text = ask("", user, 5)
    new = Sig.output_extractor(text)["new_instruction"]
    assert kind == "gepa-reflection" and new.startswith("Answer the question.")


def test_unknown_requests_get_a_generic_rewrite_and_are_counted():
    kind, text = ask("You are a poet.", "Write a haiku.")
    assert kind == "unknown" and "<prompt>" in text


@pytest.fixture(scope="module")
def world_llms(tmp_path_factory):
    """Both roles' clients on a running world (GPQA indexed), over HTTP."""
    cfg = ExperimentConfig(benchmarks=[BenchmarkConfig(name="gpqa")])
    with World.for_config(cfg, [0]) as world:
        ledger = Ledger()
        cache = ResponseCache(tmp_path_factory.mktemp("world") / "cache.sqlite")
        task = LLMClient(EndpointConfig(base_url=world.urls["task"], model="t", max_tokens=8192, max_concurrency=4),
                         role="task", ledger=ledger, cache=cache)
        prompt = LLMClient(EndpointConfig(base_url=world.urls["prompt"], model="p", max_tokens=4096),
                           role="prompt", ledger=ledger, cache=cache)
        yield world, task, prompt


def gpqa_task(task_llm):
    b = get_benchmark("gpqa")
    return OptimizationTask("gpqa", b, b.load("train", 0), b.load("val", 0), Evaluator(b, task_llm), "Be helpful.")


def test_textgrad_steps_through_the_world(world_llms):
    from baselines.textgrad import TextGrad

    world, task_llm, prompt_llm = world_llms
    res = TextGrad({"iterations": 2, "minibatch": 4, "val_size": 4}).optimize(gpqa_task(task_llm), prompt_llm, seed=0)
    steps = [c for c in res.candidates if c.id != "tg-0"]
    assert steps and all("no <IMPROVED_VARIABLE>" not in str(c.meta.get("skipped")) for c in steps)
    assert any(c.prompt != "Be helpful." for c in steps)
    assert {"textgrad-gradient", "textgrad-update"} <= set(world.prompt.kinds)


def test_gepa_runs_through_the_world(world_llms):
    from baselines.gepa import GEPA

    world, task_llm, prompt_llm = world_llms
    res = GEPA({"max_metric_calls": 40, "val_size": 4}).optimize(gpqa_task(task_llm), prompt_llm, seed=0)
    assert len(res.candidates) > 1 and world.prompt.kinds["gepa-reflection"] >= 1
    summary = world.summary(0.0, 1.0)
    assert summary["roles"]["task"]["requests"] > 0 and summary["unknown_prompt_requests"] == 0


def test_mlflow_peers_run_through_the_world(world_llms):
    from harness.methods import make_optimizer

    world, task_llm, prompt_llm = world_llms
    res = make_optimizer("mlflow-metaprompt", {"train_size": 4}).optimize(gpqa_task(task_llm), prompt_llm, seed=0)
    assert world.prompt.kinds["mlflow-metaprompt"] >= 1
    assert any(c.prompt != "Be helpful." for c in res.candidates)
    before = world.prompt.kinds["gepa-reflection"]
    res = make_optimizer("mlflow-gepa", {"max_metric_calls": 30, "val_size": 4}).optimize(
        gpqa_task(task_llm), prompt_llm, seed=0)
    assert world.prompt.kinds["gepa-reflection"] > before and len(res.candidates) > 1
    assert world.prompt.kinds.get("unknown", 0) == 0


def test_meter_levels_and_saturation():
    from harness.rehearsal.meter import Meter, timeline

    m = Meter(limit=2, events=[(0.0, 1), (0.5, 1), (1.0, -1), (1.5, -1)])
    means, saturated = m.levels(0.0, 2.0, bins=4)
    assert means == pytest.approx([1.0, 2.0, 1.0, 0.0]) and saturated == pytest.approx(0.25)
    assert timeline(means, 2, width=4).splitlines()[1] == "   25%  ####    2.0/2"
