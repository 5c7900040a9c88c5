"""Reading an experiment back from MLflow alone: load_experiment returns ExperimentData (cells, candidates,
per-example records, settings and stages as pandas DataFrames)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import schema as S
from harness.config import ConfigError
from harness.tracking.store import Tracker
from harness.tracking.values import RECORD_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass
class ExperimentData:
    """An experiment as MLflow holds it. cells: one row per cell run (run_id, cell_key, method, benchmark,
    seed, status, metrics by name, tags by key, params as 'param.<key>'); candidates: one row per candidate
    (run_id, cell_key, method, benchmark, seed + the candidate's fields); records: one row per test example
    (run_id, ..., split 'test'/'initial', RECORD_COLUMNS); settings: config, code version, experiment tags,
    the settings run's tags ("run_tags"); stages: one row per stage run (run_id, status, key, kind,
    methods and targets as lists, metrics, tags)."""

    uri: str
    experiment: str
    experiment_id: str
    cells: pd.DataFrame
    candidates: pd.DataFrame
    records: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    stages: pd.DataFrame | None = None


def _seed(tags: Mapping[str, str]) -> Any:
    s = tags.get(S.SEED, "")
    return int(s) if s.lstrip("-").isdigit() else tags.get(S.SEED)


def _cell_row(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    row: dict[str, Any] = {
        "run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
        "start_time": run.info.start_time, "end_time": run.info.end_time, "cell_key": tags.get(S.CELL_KEY),
        "method": tags.get(S.METHOD), "benchmark": tags.get(S.BENCHMARK), "seed": _seed(tags),
    }
    row.update({k: v for k, v in tags.items() if not k.startswith("mlflow.") and k not in row})
    row.update({f"param.{k}": v for k, v in run.data.params.items()})
    row.update(dict(run.data.metrics))
    return row


def _json_list(value: str | None) -> list[str]:
    try:
        got = json.loads(value or "[]")
    except ValueError:
        return [value] if value else []
    return [str(x) for x in got] if isinstance(got, list) else [str(got)]


def _stage_row(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    row: dict[str, Any] = {"run_id": run.info.run_id, "status": run.info.status, "start_time": run.info.start_time,
                           "key": tags.get(S.STAGE_KEY), "kind": tags.get(S.STAGE_KIND),
                           "methods": _json_list(tags.get(S.STAGE_METHODS)),
                           "targets": _json_list(tags.get(S.STAGE_TARGETS)),
                           "fail_reason": tags.get(S.FAIL_REASON, "")}
    row.update({k: v for k, v in tags.items() if not k.startswith("mlflow.") and k not in row})
    row.update(dict(run.data.metrics))
    return row


STAGE_COLUMNS = ["run_id", "status", "start_time", "key", "kind", "methods", "targets", "fail_reason"]


def _cell_artifacts(tracker: Tracker, run: Any) -> tuple[list[dict], dict[str, Any]]:
    run_id, uri = run.info.run_id, run.info.artifact_uri
    cands: list[dict] = []
    table = tracker._read_json(run_id, "candidates.json", uri) if run.info.status == "FINISHED" else None
    if table is not None:
        cands = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    else:
        cands = sorted(tracker._read_json_dir(run_id, "candidates", uri), key=lambda d: d.get("order", 0))
    records = {}
    for split in ("test", "initial"):
        tab = tracker._read_json(run_id, f"records/{split}.json", uri)
        if tab is not None:
            records[split] = tab
    return cands, records


def load_experiment(uri: str | None, experiment: str, *, workers: int = 8) -> ExperimentData:
    """Everything of an experiment from MLflow alone (pandas DataFrames); ConfigError if it does not exist."""
    import pandas as pd

    tracker = Tracker(uri, experiment)
    tracker.check_reachable() if tracker.is_server else None
    exp = tracker.client.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError(f"No experiment named {experiment!r} in the MLflow store {tracker.uri}; run it first "
                          "or check the name and tracking URI.")
    tracker._experiment_id = exp.experiment_id
    runs = tracker._search(f"tags.`{S.KIND}` = '{S.KIND_CELL}'")
    cells = pd.DataFrame([_cell_row(r) for r in runs])
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        arts = list(pool.map(lambda r: _cell_artifacts(tracker, r), runs))
    cand_rows, rec_rows = [], []
    for run, (cands, records) in zip(runs, arts, strict=True):
        tags = run.data.tags
        base = {"run_id": run.info.run_id, "cell_key": tags.get(S.CELL_KEY), "method": tags.get(S.METHOD),
                "benchmark": tags.get(S.BENCHMARK), "seed": _seed(tags)}
        for d in cands:
            cost = d.get("cost") or {}
            cand_rows.append({**base, **{k: v for k, v in d.items() if k != "cost"},
                              **{f"cost_{k}": v for k, v in cost.items()}})
        for split, tab in records.items():
            for row in tab["data"]:
                rec_rows.append({**base, "split": split, **dict(zip(tab["columns"], row, strict=True))})
    cand_cols = ["run_id", "cell_key", "method", "benchmark", "seed", "id", "parent_id", "generation", "order",
                 "stage", "admitted", "train_score", "val_score", "prompt", "example_ids"]
    rec_cols = ["run_id", "cell_key", "method", "benchmark", "seed", "split", *RECORD_COLUMNS]
    candidates = pd.DataFrame(cand_rows) if cand_rows else pd.DataFrame(columns=cand_cols)
    # roots keep parent_id None (pandas would make it NaN in a string column)
    candidates["parent_id"] = pd.Series([r.get("parent_id") for r in cand_rows], dtype=object, index=candidates.index)
    records = pd.DataFrame(rec_rows) if rec_rows else pd.DataFrame(columns=rec_cols)
    stage_runs = tracker._search(f"tags.`{S.KIND}` = '{S.KIND_STAGE}'")
    stages = pd.DataFrame([_stage_row(r) for r in stage_runs]) if stage_runs else pd.DataFrame(columns=STAGE_COLUMNS)
    settings: dict[str, Any] = {"experiment_tags": dict(exp.tags), "run_tags": {}}
    exp_runs = tracker._search(f"tags.`{S.KIND}` = '{S.KIND_EXPERIMENT}'", max_results=5)
    if exp_runs:
        rid = exp_runs[0].info.run_id
        settings["run_tags"] = dict(exp_runs[0].data.tags)
        settings["config"] = tracker._read_json(rid, "config.json") or {}
        settings["code_version"] = tracker._read_json(rid, "code_version.json") or {}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                settings["config_text"] = Path(tracker.client.download_artifacts(rid, "config.yaml", tmp)).read_text()
            except Exception:  # noqa: BLE001
                settings["config_text"] = ""
    if cells.empty:
        cells = pd.DataFrame(columns=["run_id", "run_name", "status", "cell_key", "method", "benchmark", "seed"])
    return ExperimentData(tracker.uri, experiment, exp.experiment_id, cells, candidates, records, settings, stages)
