"""`sepo-bench optimize` end to end over the loopback server: a custom task, SePO, a resumable rerun."""

from __future__ import annotations

import json

from harness.cli import main
from tests.loopback import LoopbackServer
from tests.worlds import write_echo_task


def scripted(body):
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    if "prompt engineer" in system.lower():  # the prompt agent
        return "Analysis: answers lack care.\n<prompt>Be careful: answer with the number only.</prompt>"
    question = body["messages"][-1]["content"]
    number = question.split()[-1].rstrip("?")
    return f"Answer: {number}" if "careful" in system else "Answer: 0"


def test_optimize_runs_sepo_and_resumes_without_new_requests(tmp_path, capsys):
    data = write_echo_task(tmp_path / "echo.jsonl", 30)
    with LoopbackServer(reply=scripted) as srv:
        cfg = tmp_path / "exp.yaml"
        cfg.write_text(f"""
name: echo
output_dir: {tmp_path}/runs
system_prompt: Answer.
benchmarks:
  - {{name: custom, n_test: 6, options: {{path: {data}, scorer: exact}}}}
methods:
  sepo: {{self_improve: false, generations: 1, children: 2, minibatch: 4}}
llm:
  cache: {{path: {tmp_path}/cache.sqlite}}
  task: {{base_url: '{srv.url}', model: task}}
  prompt: {{base_url: '{srv.url}', model: agent}}
""")
        assert main(["optimize", "--config", str(cfg)]) == 0
        first = len(srv.requests)
        [row] = json.loads((tmp_path / "runs" / "echo" / "results.json").read_text())["results"]
        assert (row["initial_test"], row["best_test"]) == (0.0, 1.0)
        assert "careful" in row["best_prompt"]
        ids = {c["id"] for c in row["candidates"]}
        assert all(c["parent_id"] in ids for c in row["candidates"] if c["parent_id"] is not None)
        assert main(["optimize", "--config", str(cfg)]) == 0  # rerun: checkpoint + cache, nothing paid
        assert len(srv.requests) == first
    assert "test accuracy: initial 0.000 -> best 1.000" in capsys.readouterr().out


def test_bad_method_settings_named_before_any_work(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("benchmarks: [{name: gpqa}]\nmethods:\n  sepo: {generatoins: 3}\n"
                   "llm: {task: {base_url: 'http://127.0.0.1:9/v1', model: m},\n"
                   "     prompt: {base_url: 'http://127.0.0.1:9/v1', model: m}}\n")
    assert main(["optimize", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "methods.sepo" in err and "generatoins" in err
