"""`sepo-bench export`: the best prompt of one finished cell (its text, scores and lineage), to a file or
stdout, or registered in MLflow's prompt registry under a name, optionally with an alias.

The cell is found in the run's results (results.jsonl / results.json), else in MLflow (its FINISHED cell
run's result.json), so an export works from either copy of the results. The seed defaults to the config's
first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config import ConfigError, ExperimentConfig


def _same_bench(a: str, b: str) -> bool:
    from harness.grid import canonical_name

    return canonical_name(a) == canonical_name(b)


def find_cell(cfg: ExperimentConfig, method: str, benchmark: str, seed: int) -> dict[str, Any]:
    """The finished cell's result row (as the runner writes it); ConfigError with the choices when absent."""
    from harness.sinks import ResultsFile

    rows = [r for r in ResultsFile(cfg.run_dir / "results.json").rows if r.get("status", "finished") == "finished"]
    for row in rows:
        if row.get("method") == method and _same_bench(row.get("benchmark", ""), benchmark) and row["seed"] == seed:
            return row
    row = _from_mlflow(cfg, method, benchmark, seed)
    if row is not None:
        return row
    have = sorted({f"{r.get('method')} on {r.get('benchmark')} seed {r.get('seed')}" for r in rows})
    raise ConfigError(f"No finished cell {method} on {benchmark}, seed {seed} in {cfg.run_dir} or its MLflow store; "
                      + (f"finished: {'; '.join(have)}." if have else "run `sepo-bench optimize` first."))


def _from_mlflow(cfg: ExperimentConfig, method: str, benchmark: str, seed: int) -> dict[str, Any] | None:
    if not cfg.tracking.enabled:
        return None
    from harness.experiment import open_tracker
    from harness.tracking import CELL_KEY, TAG

    tracker = open_tracker(cfg)
    if tracker.client.get_experiment_by_name(cfg.name) is None:
        return None
    runs = tracker._search(f"tags.`{TAG}method` = '{method}' and tags.`{TAG}seed` = '{seed}' and "
                           "attributes.status = 'FINISHED'")
    for run in runs:
        if _same_bench(run.data.tags.get(TAG + "benchmark", ""), benchmark) and run.data.tags.get(CELL_KEY):
            row = tracker._read_json(run.info.run_id, "result.json")
            if row:
                return {**row, "mlflow_run_id": run.info.run_id}
    return None


def lineage(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Root -> best: each ancestor's id, parent, generation, stage, scores and prompt."""
    by_id = {c["id"]: c for c in row.get("candidates", [])}
    chain, cur = [], by_id.get(row.get("best_id"))
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = by_id.get(cur.get("parent_id")) if cur.get("parent_id") else None
    keys = ("id", "parent_id", "generation", "train_score", "val_score", "prompt")
    return [{**{k: c.get(k) for k in keys}, "stage": (c.get("meta") or {}).get("stage")} for c in chain[::-1]]


def export_doc(cfg: ExperimentConfig, row: dict[str, Any]) -> dict[str, Any]:
    return {"experiment": cfg.name, "method": row["method"], "benchmark": row["benchmark"], "seed": row["seed"],
            "prompt": row["best_prompt"], "best_id": row.get("best_id"),
            "scores": {"train": row.get("best_train"), "val": row.get("best_val"), "test": row.get("best_test"),
                       "initial_test": row.get("initial_test")},
            "mlflow_run_id": row.get("mlflow_run_id"), "lineage": lineage(row)}


def register(cfg: ExperimentConfig, doc: dict[str, Any], name: str, alias: str | None) -> str:
    """Register the prompt (tags: experiment, method, benchmark, seed, run) and set the alias; its URI."""
    from harness.experiment import open_tracker
    from harness.tracking import TAG

    tracker = open_tracker(cfg)
    if tracker is None:
        raise ConfigError(f"{cfg.source}: tracking is off, so there is no prompt registry; drop --register or "
                          "turn tracking on.")
    tags = {TAG + "experiment": cfg.name, TAG + "method": doc["method"], TAG + "benchmark": doc["benchmark"],
            TAG + "seed": str(doc["seed"]), TAG + "run_id": str(doc.get("mlflow_run_id")),
            TAG + "test_accuracy": str(doc["scores"]["test"])}
    version = tracker.client.register_prompt(name=name, template=tracker.scrub.text(doc["prompt"]), tags=tags,
                                             commit_message=f"sepo-bench export of {doc['method']} on "
                                             f"{doc['benchmark']} seed {doc['seed']}")
    if alias:
        tracker.client.set_prompt_alias(name, alias, version.version)
    return f"prompts:/{name}/{version.version}" + (f" (alias {alias}: prompts:/{name}@{alias})" if alias else "")


def export(cfg: ExperimentConfig, method: str, benchmark: str, seed: int | None = None, *, out: str | None = None,
           register_as: str | None = None, alias: str | None = None) -> dict[str, Any]:
    if alias and not register_as:
        raise ConfigError("--alias needs --register NAME (the alias names a version of a registered prompt).")
    doc = export_doc(cfg, find_cell(cfg, method, benchmark, cfg.seeds[0] if seed is None else seed))
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str)
    if register_as:
        print(f"registered {register(cfg, doc, register_as, alias)}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {out}")
    elif not register_as:
        print(text)
    return doc
