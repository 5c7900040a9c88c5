"""The README's MLflow example: SePO optimizes a registered prompt through mlflow.genai.optimize_prompts, with
the task agent (predict_fn) and the prompt agent on the embedded local models. Run it from the project folder:

    .venv/bin/python scripts/mlflow_sepo_example.py        # then: make ui (runs/mlflow-example.db: see below)
"""

import time
from pathlib import Path

import mlflow
import openai
from mlflow.entities import Feedback
from mlflow.genai.scorers import scorer

from harness.llm.local import LlamaServer
from harness.mlflow_optimizer import SePOPromptOptimizer

mlflow.set_tracking_uri("sqlite:///runs/mlflow-example.db")
mlflow.set_registry_uri("sqlite:///runs/mlflow-example.db")
if mlflow.get_experiment_by_name("sepo-mlflow-example") is None:  # artifacts beside the store, not in the cwd
    mlflow.create_experiment("sepo-mlflow-example", artifact_location=Path("runs/mlflow-example").resolve().as_uri())
mlflow.set_experiment("sepo-mlflow-example")
prompt = mlflow.genai.register_prompt(name="arithmetic", template="Answer the question.\n\n{{question}}")

data = [{"inputs": {"question": f"What is {a} {op} {b}?"}, "expectations": {"expected_response": str(ans)}}
        for a, op, b, ans in [(17, "+", 25, 42), (9, "*", 8, 72), (100, "-", 37, 63), (144, "/", 12, 12),
                              (23, "+", 58, 81), (7, "*", 13, 91), (250, "-", 99, 151), (81, "/", 9, 9)]]


@scorer
def exact_number(outputs: str, expectations: dict) -> Feedback:
    """1 when the reply is exactly the number; the rationale says what was wrong (the prompt agent reads it)."""
    want, got = expectations["expected_response"], str(outputs).strip().rstrip(".")
    if got == want:
        return Feedback(value=1.0, rationale="correct: the reply is exactly the number")
    return Feedback(value=0.0, rationale=f"expected exactly {want!r} and nothing else, got {got[:120]!r}")


with LlamaServer("qwen2.5-coder-0.5b") as task_model:  # the embedded task model, OpenAI-compatible
    client = openai.OpenAI(base_url=task_model.base_url, api_key="none")

    def predict_fn(question: str) -> str:
        text = mlflow.genai.load_prompt(prompt.uri).format(question=question)
        reply = client.chat.completions.create(model=task_model.name, messages=[{"role": "user", "content": text}],
                                               max_tokens=128, temperature=0)
        return reply.choices[0].message.content

    optimizer = SePOPromptOptimizer(
        # the prompt agent: any OpenAI-compatible endpoint, here the same local server (None: the embedded 1.5B)
        prompt_llm={"base_url": task_model.base_url, "model": task_model.name, "max_tokens": 500},
        budget=24,  # example evaluations, as budget_per_cell.max_evaluations in the grid
        # the hand-written p~ (pre-training p~* on these rows costs ~16 more evaluations: drop self_improve and
        # set pretrain_generations/pretrain_children/pretrain_minibatch; or load one: prompt_agent_path=...)
        settings={"self_improve": False, "generations": 2, "children": 1, "minibatch": 3, "val_top_n": 2,
                  "agent_max_tokens": 500, "lenient_tags": True})
    t0 = time.monotonic()
    with mlflow.start_run(run_name="sepo") as run:
        result = mlflow.genai.optimize_prompts(predict_fn=predict_fn, train_data=data, prompt_uris=[prompt.uri],
                                               optimizer=optimizer, scorers=[exact_number])

res = optimizer.results["arithmetic"]
print(f"wall {time.monotonic() - t0:.0f} s; score on the 8 examples {result.initial_eval_score:.3f} -> "
      f"{result.final_eval_score:.3f}; {res.usage['total']['evaluations']:.0f} evaluations, "
      f"{res.usage['total']['requests']:.0f} requests; MLflow run {run.info.run_id}, "
      f"{len(res.candidates)} candidates; registered {result.optimized_prompts[0].uri}")
print("lineage:", " -> ".join(f"{c.id} ({c.train_score})" for c in res.lineage()))
print("best prompt:\n" + result.optimized_prompts[0].template)
