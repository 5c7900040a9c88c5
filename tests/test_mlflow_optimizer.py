"""The README's MLflow example end to end: a registered prompt, a predict_fn over HTTP, a scorer,
`mlflow.genai.optimize_prompts(... optimizer=SePOPromptOptimizer(...))` against a real sqlite MLflow store; the
task and prompt models are the scripted loopback world (tests/api_world.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from harness.mlflow_optimizer import HarnessPromptOptimizer, SePOPromptOptimizer  # noqa: E402
from tests.api_world import SEED, Agent, kw, rows  # noqa: E402
from tests.loopback import LoopbackServer  # noqa: E402

SMALL_SEPO = {"self_improve": False, "generations": 2, "children": 2, "minibatch": 4, "val_top_n": 2}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("optimize-prompts")
    yield uri


def run_example(url: str, optimizer, name: str = "qa"):
    """The README example, with the loopback world's URL in place of the local model's."""
    import openai
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    prompt = mlflow.genai.register_prompt(name=name, template=SEED + "\n{{question}}")
    client = openai.OpenAI(base_url=url, api_key="none")

    def predict_fn(question: str) -> str:
        text = mlflow.genai.load_prompt(prompt.uri).format(question=question)
        reply = client.chat.completions.create(model="task", messages=[{"role": "user", "content": text}])
        return reply.choices[0].message.content

    @scorer
    def correct(outputs: str, expectations: dict) -> Feedback:
        ok = outputs.strip() == expectations["expected_response"]
        return Feedback(value=1.0 if ok else 0.0,
                        rationale="correct" if ok else f"expected {expectations['expected_response']}")

    data = [{"inputs": {"question": r["question"]}, "expectations": {"expected_response": f"ANSWER {r['answer']}"}}
            for r in rows(16)]
    with mlflow.start_run() as run:
        result = mlflow.genai.optimize_prompts(predict_fn=predict_fn, train_data=data, prompt_uris=[prompt.uri],
                                               optimizer=optimizer, scorers=[correct])
    return result, run.info.run_id


def prompt_llm(url: str) -> dict:
    return {"base_url": url, "model": "prompt", "max_tokens": 400, "backoff_base_s": 0.01}


def test_readme_example_end_to_end(store, tmp_path):
    with LoopbackServer(reply=Agent()) as srv:
        opt = SePOPromptOptimizer(prompt_llm=prompt_llm(srv.url), budget=60, settings=SMALL_SEPO)
        result, run_id = run_example(srv.url, opt)
    (best,) = result.optimized_prompts
    assert best.name == "qa" and int(best.version) == 2 and "{{question}}" in best.template
    assert kw("alpha") in best.template or kw("beta") in best.template
    assert result.final_eval_score > result.initial_eval_score == 0.0
    res = opt.results["qa"]
    assert res.usage["total"]["evaluations"] <= 60 and res.best_prompt == best.template

    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    assert run.data.metrics["final_eval_score"] == result.final_eval_score  # MLflow's own logging
    assert run.data.params["harness.method"] == "sepo" and run.data.metrics["evaluations"] <= 60
    logged = [json.loads(Path(client.download_artifacts(run_id, f.path, str(tmp_path))).read_text())
              for f in client.list_artifacts(run_id, "candidates")]
    assert sorted(d["id"] for d in logged) == sorted(c.id for c in res.candidates)
    ids = {d["id"] for d in logged}
    assert all(d["parent_id"] is None or d["parent_id"] in ids for d in logged)
    best_doc = next(d for d in logged if d["id"] == res.best.id)
    assert best_doc["prompt"] == best.template and best_doc["parent_id"] is not None
    table = json.loads(Path(client.download_artifacts(run_id, "candidates.json", str(tmp_path))).read_text())
    assert len(table["data"]) == len(logged)


def test_a_dropped_variable_never_reaches_the_registry(store):
    with LoopbackServer(reply=Agent("drop")) as srv:
        opt = HarnessPromptOptimizer("gepa", prompt_llm=prompt_llm(srv.url), budget=48,
                                     settings={"max_metric_calls": 48, "val_size": 4})
        result, _ = run_example(srv.url, opt, name="qa-drop")
    assert opt.results["qa-drop"].refused  # rewrites without {{question}} were made, and refused
    assert "{{question}}" in result.optimized_prompts[0].template


def test_needs_data_and_scorers():
    from harness.config import ConfigError

    with pytest.raises(ConfigError, match="unknown method"):
        HarnessPromptOptimizer("no-such-method")
    with pytest.raises(ConfigError, match="needs train_data and scorers"):
        SePOPromptOptimizer(prompt_llm="smollm2-135m").optimize(None, [], {"qa": "{{question}}"})


def test_two_prompts_are_optimized_in_turn(store, tmp_path):
    import openai
    from mlflow.entities import Feedback
    from mlflow.genai.scorers import scorer

    system = mlflow.genai.register_prompt(name="two-sys", template=SEED)
    user = mlflow.genai.register_prompt(name="two-user", template="Q: {{question}}")
    with LoopbackServer(reply=Agent()) as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="none")

        def predict_fn(question: str) -> str:
            msgs = [{"role": "system", "content": mlflow.genai.load_prompt(system.uri).template},
                    {"role": "user", "content": mlflow.genai.load_prompt(user.uri).format(question=question)}]
            return client.chat.completions.create(model="task", messages=msgs).choices[0].message.content

        @scorer
        def correct(outputs: str, expectations: dict) -> Feedback:
            return Feedback(value=float(outputs.strip() == expectations["expected_response"]), rationale="checked")

        data = [{"inputs": {"question": r["question"]}, "expectations": {"expected_response": f"ANSWER {r['answer']}"}}
                for r in rows(16)]
        opt = SePOPromptOptimizer(prompt_llm=prompt_llm(srv.url), budget=80, settings=SMALL_SEPO)
        with mlflow.start_run() as run:
            result = mlflow.genai.optimize_prompts(predict_fn=predict_fn, train_data=data, optimizer=opt,
                                                   prompt_uris=[system.uri, user.uri], scorers=[correct])
    assert list(opt.results) == ["two-sys", "two-user"]
    assert sum(r.usage["total"]["evaluations"] for r in opt.results.values()) <= 80
    by_name = {p.name: p.template for p in result.optimized_prompts}
    assert "{{question}}" in by_name["two-user"] and not tg_vars(by_name["two-sys"])
    assert result.final_eval_score == 1.0 > result.initial_eval_score
    files = [f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, "candidates")]
    assert len(files) == sum(len(r.candidates) for r in opt.results.values())


def tg_vars(text: str) -> set:
    from harness.template_guard import variables

    return set(variables(text))
