"""Experiment tracking in MLflow: the only module of the harness that imports mlflow.

The runner feeds it (never the optimizers): one MLflow experiment per experiment file, one run per
cell (method x benchmark x seed), and everything the reports need, so MLflow alone is the source of
truth (`load_experiment` rebuilds cells, candidates with their lineage, and per-example records).

Layout of a store (every name in harness/schema.py):

- an experiment-level run (tag ``sepo.kind=experiment``) holds the config (``config.yaml``,
  ``config.json``), the code version and the tags simulated / paper_protocol; the experiment carries the
  same as tags;
- a cell run (tag ``sepo.kind=cell``, ``sepo.cell_key``) has flattened params (method settings,
  benchmark and options, seed, budgets, models, sampling, code version, data fingerprint), the cell's
  metrics, and per-candidate step metrics (``candidate.train_score`` ... at step = arrival order) for
  the UI's charts;
- candidates: one JSON artifact per candidate (``candidates/<id>.json``: full prompt text, parent id,
  generation, stage, admitted, example ids, scores, cost, the rest of ``meta``), written the moment it
  arrives so a kill mid-cell loses nothing, and consolidated into one ``candidates.json`` table when
  the cell finishes (artifacts, not nested runs: several times faster to write and far faster to read,
  and no thousands of runs in the UI; `tests/test_tracking_perf.py` measures both);
- per-example tables ``records/test.json`` (and ``records/initial.json``: the initial prompt on the
  same test items), in MLflow's table format (columns + data): id, correct, score, extracted, reason,
  tokens, truncated, attempts, cached;
- a stage run (tag ``sepo.kind=stage``, ``sepo.stage_key``): a stage several cells share (SePO's
  pre-trained p~*, MetaSPO's meta-trained system prompt), built once per key with its own budget: its cost
  metrics, the methods and targets it serves, its candidates and its outputs (``stage/<name>.txt``);
- the best prompt (``prompts/best.txt``) and extra prompts (e.g. ``prompts/prompt_agent.txt``: p~*),
  registered in MLflow's prompt registry with tags linking each version to its run (the run gets
  ``sepo.prompt.<name>`` = ``prompts:/<name>/<version>``).

Secrets: the values passed as `secrets` (API keys), and the values of environment variables whose names
look like keys (``*KEY``, ``*TOKEN``, ``*PASSWORD``, ``*SECRET*``), are replaced by ``***`` in
every param, tag, metric name, artifact, registered prompt and (with tracing) trace that goes through
here. `tests/test_tracking.py` scans the store and its artifacts for them.

Modules: scrub (Scrubber), values (MLflow's limits, keys, flattening, names), uris (tracking URIs and local
artifact files), store (Tracker), runs (RunHandle, CellRun, StageRun), read (load_experiment, ExperimentData).
This package re-exports their public names.
"""

from __future__ import annotations

from harness import schema as S
from harness.tracking.read import STAGE_COLUMNS, ExperimentData, load_experiment
from harness.tracking.runs import CellRun, RunHandle, StageRun
from harness.tracking.scrub import SECRET_ENV, Scrubber
from harness.tracking.store import Tracker
from harness.tracking.uris import DEFAULT_RUNS_DIR, resolve_uri
from harness.tracking.values import (
    MAX_KEY,
    MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
    METRICS_PER_BATCH,
    PER_BATCH,
    RECORD_COLUMNS,
    flatten,
)

TAG, KIND, CELL_KEY = S.PREFIX, S.KIND, S.CELL_KEY  # kept for importers of the old names

__all__ = [
    "CELL_KEY", "DEFAULT_RUNS_DIR", "KIND", "MAX_KEY", "MAX_PARAM_VALUE", "MAX_TAG_VALUE", "METRICS_PER_BATCH",
    "PER_BATCH", "RECORD_COLUMNS", "SECRET_ENV", "STAGE_COLUMNS", "TAG", "CellRun", "ExperimentData", "RunHandle",
    "Scrubber", "StageRun", "Tracker", "flatten", "load_experiment", "resolve_uri",
]
