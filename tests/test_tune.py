"""`sepo-bench tune` over the loopback server: a tiny study that prunes, tracks and writes its best file;
config errors named by key; trials never load a test split; a two-objective study's Pareto front."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config import ConfigError, load_config
from harness.tune import prepare, tune
from tests.loopback import LoopbackServer
from tests.worlds import write_echo_task


def scripted(body):
    """Prompt agent: a careful prompt below temperature 0.5, one careful with even numbers only up to 1.0, a
    sloppy one above. Task agent: right under a careful prompt (even numbers only, when it says so). So
    trials with a hot prompt agent lag from generation 1 on, and lukewarm ones score about half."""
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    if "prompt engineer" in system.lower():
        t = body.get("temperature", 0)
        if t >= 1.0:
            return "Analysis: be quick.\n<prompt>Be sloppy: reply with zero.</prompt>"
        if t >= 0.5:
            return "Analysis: even ones fail.\n<prompt>Be careful with even numbers: answer with the number.</prompt>"
        return "Analysis: answers lack care.\n<prompt>Be careful: answer with the number only.</prompt>"
    number = body["messages"][-1]["content"].split()[-1].rstrip("?")
    right = "careful" in system and ("even numbers" not in system or int(number) % 2 == 0)
    return f"Answer: {number}" if right else "Answer: 0"


def write_data(tmp_path: Path, n: int = 40) -> Path:
    return write_echo_task(tmp_path / "echo.jsonl", n)


def write_config(tmp_path: Path, url: str, tune_yaml: str, *, tracking: bool = True, name: str = "echo") -> Path:
    data = write_data(tmp_path)
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"""
name: {name}
output_dir: {tmp_path}/runs
system_prompt: Answer.
benchmarks:
  - {{name: custom, options: {{path: {data}, scorer: exact}}}}
methods:
  sepo: {{self_improve: false, generations: 2, children: 2, minibatch: 4, feedback_per_side: 1, temperature: 0.7}}
llm:
  cache: {{path: {tmp_path}/cache.sqlite}}
  task: {{base_url: '{url}', model: task}}
  prompt: {{base_url: '{url}', model: agent}}
tracking: {{enabled: {str(tracking).lower()}, uri: 'sqlite:///{tmp_path}/mlflow.db'}}
tune:
{tune_yaml}
""")
    return cfg


TINY = """
  n_trials: 4
  space:
    temperature: {type: float, low: 0.1, high: 1.5}
  enqueue_defaults: false
  enqueue: [{temperature: 0.2}, {temperature: 0.6}, {temperature: 1.4}, {temperature: 0.3}]
  pruner: median
  pruner_startup_trials: 2
"""


def test_tiny_study_prunes_tracks_and_writes_the_best_experiment(tmp_path, monkeypatch, capsys):
    from harness.benchmarks.custom import Custom

    loaded = []
    real_load = Custom.load
    monkeypatch.setattr(Custom, "load", lambda self, split, seed: loaded.append(split) or real_load(self, split, seed))
    with LoopbackServer(reply=scripted) as srv:
        cfg = load_config(write_config(tmp_path, srv.url, TINY))
        summary = tune(cfg)
    assert set(loaded) <= {"train", "val"}, f"a trial loaded {set(loaded) - {'train', 'val'}}"

    assert summary["states"] == {"COMPLETE": 3, "PRUNED": 1}
    import optuna

    study = optuna.load_study(study_name="echo-tune", storage=f"sqlite:///{tmp_path}/runs/echo/tune/optuna.db")
    by_number = {t.number: t for t in study.trials}
    assert sorted(by_number) == [0, 1, 2, 3]
    pruned = by_number[2]
    assert pruned.state.name == "PRUNED" and pruned.params["temperature"] == 1.4
    assert pruned.intermediate_values == {0: 0.0, 1: 0.0}  # root, then its sloppy children: pruned after gen 1
    assert by_number[0].intermediate_values == {0: 0.0, 1: 1.0, 2: 1.0}
    assert [by_number[i].value for i in (0, 3)] == [1.0, 1.0] and 0.0 < by_number[1].value < 1.0

    # every trial is an MLflow run of the experiment, with its state, params and value
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("echo")
    runs = client.search_runs([exp.experiment_id], "tags.`sepo.kind` = 'trial'")
    assert len(runs) == 4
    states = sorted(r.data.tags["sepo.trial_state"] for r in runs)
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    assert sorted(r.data.tags["sepo.trial"] for r in runs) == ["0", "1", "2", "3"]
    done = [r for r in runs if r.data.tags["sepo.trial_state"] == "COMPLETE"]
    assert sorted(r.data.metrics["val_accuracy"] for r in done) == sorted(by_number[i].value for i in (0, 1, 3))
    assert all("tuned.temperature" in r.data.params for r in done)
    assert not client.search_runs([exp.experiment_id], "tags.`sepo.kind` = 'cell'")  # reports see no trials
    # started as trials (not cells retagged): a trial key, no cell key, named after the study and trial
    assert all(r.data.tags.get("sepo.trial_key") and "sepo.cell_key" not in r.data.tags for r in runs)
    assert sorted(r.info.run_name.rsplit("-", 1)[1] for r in runs) == ["0", "1", "2", "3"]

    # the best experiment file: ready to run, the best trial's settings, no tune section
    best = tmp_path / "runs" / "echo" / "tune" / "best.yaml"
    raw = yaml.safe_load(best.read_text())
    assert "tune" not in raw and raw["name"] == "echo-tuned"
    assert raw["methods"]["sepo"]["temperature"] == 0.2 and raw["methods"]["sepo"]["generations"] == 2
    tuned = load_config(best)
    from harness.checks import check

    check(tuned)
    assert summary["best"]["trial"] == 0
    for name in ("optimization_history", "param_importances", "intermediate_values"):
        assert Path(summary["plots"][name]).is_file(), summary["plots"][name]
    assert (tmp_path / "runs" / "echo" / "tune" / "trials.csv").is_file()
    out = capsys.readouterr().out
    assert "best (trial 0): val accuracy 1.0000" in out and "PRUNED" in out

    # rerun: the study is full, nothing more runs
    with LoopbackServer(reply=scripted) as srv:
        cfg = load_config(write_config(tmp_path, srv.url, TINY))
        again = tune(cfg, quiet=True)
        assert not srv.requests
    assert again["states"] == summary["states"]


def test_two_objectives_report_a_pareto_front(tmp_path):
    space = """
  n_trials: 3
  objectives: [val_accuracy, tokens]
  sampler: random
  space:
    minibatch: {type: int, low: 2, high: 6, step: 2}
  enqueue_defaults: false
  enqueue: [{minibatch: 2}, {minibatch: 6}, {minibatch: 4}]
"""
    with LoopbackServer(reply=scripted) as srv:
        summary = tune(load_config(write_config(tmp_path, srv.url, space, tracking=False)), quiet=True)
    assert summary["states"] == {"COMPLETE": 3}
    front = summary["pareto_front"]
    assert [p["params"]["minibatch"] for p in front] == [2]  # same accuracy, fewest tokens
    assert Path(summary["plots"]["pareto_front"]).is_file()


@pytest.mark.parametrize("tune_yaml, words", [
    ("  space: {generatons: {type: int, low: 1, high: 3}}", ["tune.space.generatons", "did you mean 'generations'"]),
    ("  space: {generations: {type: int, low: -2, high: 3}}", ["tune.space.generations", "-2"]),
    ("  space: {temperature: {type: float, low: 0.5, high: 0.1}}", ["tune.space.temperature", "below high"]),
    ("  method: gepa\n  space: {generations: {type: int, low: 1, high: 3}}", ["tune.method", "'gepa'"]),
    ("  space: {generations: {type: int, low: 1, high: 3}}\n  objectives: [val_accuracy, tokens]\n  pruner: median",
     ["'tune'", "pruner"]),
    ("  space: {generations: {type: int, low: 1, high: 3}}\n  storage: redis://x", ["'tune'", "redis://x"]),
    ("  space: {generations: {type: int, low: 1, high: 3}}\n  enqueue: [{children: 2}]", ["enqueue.0", "children"]),
])
def test_tune_config_errors_name_the_key(tmp_path, tune_yaml, words):
    path = write_config(tmp_path, "http://127.0.0.1:9/v1", tune_yaml)
    with pytest.raises(ConfigError) as exc:
        prepare(load_config(path))
    msg = str(exc.value)
    assert len(msg.splitlines()) == 1 and all(w in msg for w in words), msg


def test_no_tune_section_is_one_sentence(tmp_path, capsys):
    from harness.tune.__main__ import main

    cfg = tmp_path / "x.yaml"
    cfg.write_text("benchmarks: [{name: gpqa}]\n")
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "has no 'tune' section" in err and len(err.strip().splitlines()) == 1
