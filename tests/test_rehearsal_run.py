"""`sepo-bench rehearse` end to end: configs/paper.yaml reduced (one seed, every method, MBPP through the
Docker sandbox plus GPQA, small splits and budgets) against the simulated world, through the CLI. Every cell
finishes, MLflow holds the runs, and the console and the report say the run is simulated. The bigger
variant (more benchmarks and budget) is marked slow."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.sandbox_fixtures import SKIP_DOCKER

ROOT = Path(__file__).resolve().parents[1]


def reduced_paper(tmp_path: Path, benchmarks: list[dict], budget: int, stage_budget: int) -> tuple[Path, list[str]]:
    """configs/paper.yaml with one seed, these benchmarks and small budgets, written to tmp_path."""
    data = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())
    data.update(seeds=[0], benchmarks=benchmarks, budget_per_cell={"max_evaluations": budget},
                output_dir=str(tmp_path / "runs"))
    data["stage_budget"] = {"max_evaluations": stage_budget}
    data["llm"].setdefault("cache", {})["path"] = str(tmp_path / "unused-cache.sqlite")
    path = tmp_path / "paper-reduced.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, list(data["methods"])


def rehearse(tmp_path: Path, capsys, benchmarks: list[dict], budget: int, stage_budget: int):
    import json

    from harness.cli import main

    if SKIP_DOCKER and any(b["name"] == "mbpp" for b in benchmarks):
        pytest.skip("SEPO_SKIP_DOCKER=1")
    cfg, methods = reduced_paper(tmp_path, benchmarks, budget, stage_budget)
    assert main(["rehearse", "--config", str(cfg), "--latency-ms", "0", "--estimate-latency-s", "30"]) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "runs" / "rehearsal" / "paper-rehearsal"
    rows = json.loads((run_dir / "results.json").read_text())["results"]
    return out, run_dir, rows, methods


def check(out: str, run_dir: Path, rows: list[dict], methods: list[str], n_benchmarks: int) -> None:
    assert out.startswith("SIMULATED")
    assert len(rows) == len(methods) * n_benchmarks
    assert all(r.get("status", "finished") == "finished" for r in rows), [r.get("error") for r in rows]
    assert {r["method"] for r in rows} == set(methods)
    assert "Estimate of the real run" in out and "unknown 0" in out and "matching no example 0" in out
    for m in methods:
        assert f"    {m} " in out  # a line per method in the estimate
    from harness.tracking import Tracker

    tracker = Tracker(f"sqlite:///{run_dir / 'mlflow.db'}", "paper-rehearsal")
    ids = {r["mlflow_run_id"] for r in rows}
    assert len(ids) == len(rows) and all(tracker.client.get_run(i).info.status == "FINISHED" for i in ids)
    report = (run_dir / "report" / "report.md").read_text()
    assert "simulated" in report.lower().split("\n\n", 1)[0]  # said in the report's opening


def test_reduced_paper_rehearsal(tmp_path, capsys):
    benchmarks = [{"name": "mbpp", "n_train": 12, "n_val": 6, "n_test": 6},
                  {"name": "gpqa", "n_train": 12, "n_val": 6, "n_test": 6}]
    out, run_dir, rows, methods = rehearse(tmp_path, capsys, benchmarks, budget=40, stage_budget=48)
    check(out, run_dir, rows, methods, 2)


@pytest.mark.slow
def test_bigger_paper_rehearsal(tmp_path, capsys):
    benchmarks = [{"name": "mbpp", "n_train": 32, "n_val": 16, "n_test": 24},
                  {"name": "gpqa", "n_train": 32, "n_val": 16, "n_test": 24},
                  {"name": "aime"}, {"name": "sudoku", "n_test": 12, "options": {"size": 4}}]
    out, run_dir, rows, methods = rehearse(tmp_path, capsys, benchmarks, budget=160, stage_budget=320)
    check(out, run_dir, rows, methods, 4)


def test_rehearsal_without_docker_when_no_benchmark_runs_code(tmp_path, capsys, monkeypatch):
    """A config without MBPP never touches Docker (any sandbox request would fail here)."""
    import json

    import sandboxes
    from harness.cli import main

    def no_docker(*a, **k):
        raise AssertionError("the rehearsal asked for a sandbox")

    monkeypatch.setattr(sandboxes, "make_sandbox", no_docker)
    cfg, _ = reduced_paper(tmp_path, [{"name": "gpqa", "n_train": 12, "n_val": 6, "n_test": 6}], 40, 48)
    data = yaml.safe_load(cfg.read_text())
    data["methods"] = {"manual-cot": {}, "gepa": {}}
    cfg.write_text(yaml.safe_dump(data))
    assert main(["rehearse", "--config", str(cfg), "--latency-ms", "0", "--no-report"]) == 0
    rows = json.loads((tmp_path / "runs" / "rehearsal" / "paper-rehearsal" / "results.json").read_text())["results"]
    assert sorted(r["method"] for r in rows) == ["gepa", "manual-cot"]
    assert capsys.readouterr().out.startswith("SIMULATED")
