"""Experiment tracking in MLflow: the only module of the harness that imports mlflow.

The runner feeds it (never the optimizers): one MLflow experiment per experiment file, one run per
cell (method x benchmark x seed), and everything the reports need, so MLflow alone is the source of
truth (`load_experiment` rebuilds cells, candidates with their lineage, and per-example records).

Layout of a store:

- an experiment-level run (tag ``sepo.kind=experiment``) holds the config (``config.yaml``,
  ``config.json``) and the code version; the experiment carries the same as tags;
- a cell run (tag ``sepo.kind=cell``, ``sepo.cell_key``) has flattened params (method settings,
  benchmark and options, seed, budgets, models, sampling, code version, data fingerprint), the cell's
  metrics, and per-candidate step metrics (``candidate.train_score`` ... at step = arrival order) for
  the UI's charts;
- candidates: one JSON artifact per candidate (``candidates/<id>.json``: full prompt text, parent id,
  generation, stage, admitted, example ids, scores, cost, the rest of ``meta``), written the moment it
  arrives so a kill mid-cell loses nothing, and consolidated into one ``candidates.json`` table when
  the cell finishes. Measured against one nested run per candidate (`tests/test_tracking_perf.py`, same
  content: prompt text as an artifact, parent, generation, stage, scores; 2 shared cores): a nested run
  costs four store calls per candidate (create, log_batch, log_text, terminate) and reading it back one
  artifact download per candidate. Local sqlite store, 50 / 200 candidates: nested runs 10.6 s / 61.6 s
  to write and 4.5 s / 20.1 s to read; artifacts 2.4 s / 13.4 s to write and 0.25 s / 0.39 s to read
  (4.4-4.6x faster writes, 18-52x faster reads). Against `mlflow server` on loopback, 50 candidates:
  nested 29.4 s write / 13.8 s read, artifacts 7.6 s / 1.1 s (3.9x / 12.8x). Nested runs would also put
  thousands of runs in the UI's run list of a paper-size grid, so candidates are artifacts;
- per-example tables ``records/test.json`` (and ``records/initial.json``: the initial prompt on the
  same test items), in MLflow's table format (columns + data): id, correct, score, extracted, reason,
  tokens, truncated, attempts, cached;
- the best prompt (``prompts/best.txt``) and extra prompts (e.g. ``prompts/prompt_agent.txt``: p~*),
  registered in MLflow's prompt registry with tags linking each version to its run (the run gets
  ``sepo.prompt.<name>`` = ``prompts:/<name>/<version>``).

Secrets: the values passed as `secrets` (API keys), and the values of environment variables whose names
look like keys (``*KEY``, ``*TOKEN``, ``*PASSWORD``, ``*SECRET*``), are replaced by ``***`` in
every param, tag, metric name, artifact, registered prompt and (with tracing) trace that goes through
here. `tests/test_tracking.py` scans the store and its artifacts for them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from harness.evaluator import Record
    from harness.optimizer import Candidate

# Before mlflow is imported: no usage telemetry leaves the machine, no download progress bars in the logs.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# mlflow's tracing pulls in litellm, which would otherwise fetch a cost map from the internet for seconds.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

TAG = "sepo."
KIND = TAG + "kind"
CELL_KEY = TAG + "cell_key"
DEFAULT_RUNS_DIR = "runs"
# MLflow's limits (mlflow.utils.validation), kept here so flattening does not depend on a private module.
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
PER_BATCH = 100  # params + tags per log_batch
METRICS_PER_BATCH = 1000
# Environment variables whose values are scrubbed unasked: names ending in KEY/TOKEN/PASSWORD/... or holding
# SECRET (OPENAI_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY; not TOKENIZERS_PARALLELISM).
SECRET_ENV = re.compile(r"(KEY|TOKEN|PASSWORD|PASSWD|CREDENTIALS?)$|SECRET", re.IGNORECASE)
RECORD_COLUMNS = ["example_id", "correct", "score", "extracted", "reason", "prompt_tokens", "completion_tokens",
                  "tokens", "truncated", "attempts", "cached"]


# ----------------------------------------------------------------------------------------------- helpers


class Scrubber:
    """Replaces secret values by *** in strings, recursively in dicts and lists."""

    def __init__(self, secrets: Iterable[str] = (), *, from_env: bool = True) -> None:
        values = {s for s in secrets if isinstance(s, str)}
        if from_env:
            values |= {v for k, v in os.environ.items() if SECRET_ENV.search(k)}
        # Very short values would blank out ordinary text; a real key is long.
        self.secrets = sorted((v for v in values if len(v) >= 6), key=len, reverse=True)

    def text(self, s: str) -> str:
        for v in self.secrets:
            if v in s:
                s = s.replace(v, "***")
        return s

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {self(str(k)): self(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple | set):
            return [self(v) for v in obj]
        return obj


def _key(name: str) -> str:
    """A name MLflow accepts for a param, metric or tag: [A-Za-z0-9_-. ], no path tricks, <= 250 chars."""
    k = re.sub(r"[^A-Za-z0-9_\-. ]", "_", str(name))
    k = re.sub(r"\.{2,}", ".", k).strip(". ") or "_"
    if len(k) > MAX_KEY:
        digest = hashlib.sha1(k.encode()).hexdigest()[:8]
        k = k[: MAX_KEY - 9] + "_" + digest
    return k


def _truncate(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    note = f"...[{len(value) - limit} more chars]"
    return value[: limit - len(note)] + note


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as dotted keys with string values (lists as JSON, None as 'None')."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        elif isinstance(v, Mapping):
            out[key] = "{}"
        elif isinstance(v, list | tuple | set):
            out[key] = json.dumps(_jsonable(v), sort_keys=True)
        elif isinstance(v, bool) or v is None or isinstance(v, str | int | float):
            out[key] = str(v)
        else:
            out[key] = json.dumps(_jsonable(v), sort_keys=True)
    return out


def _artifact_name(candidate_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_\-.]", "_", candidate_id)[:60].strip(".") or "c"
    return f"{safe}-{hashlib.sha1(candidate_id.encode()).hexdigest()[:8]}.json"


def _prompt_name(name: str) -> str:
    """MLflow prompt names: letters, digits, '-', '_', '.'."""
    return re.sub(r"[^A-Za-z0-9_\-.]", "-", name).strip(".-")[:200] or "prompt"


def _is_uri(s: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", s)) and not re.match(r"^[A-Za-z]:[\\/]", s)


def resolve_uri(uri: str | None) -> str:
    """A tracking URI: `uri` when it is one; else $MLFLOW_TRACKING_URI; else a sqlite store in the
    directory `uri` names (default runs/)."""
    if uri and _is_uri(uri):
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    d = Path(uri or DEFAULT_RUNS_DIR).resolve()
    return f"sqlite:///{d}/mlflow.db"


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:////") else Path(uri[len("sqlite://"):])


def _filter_value(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError(f"a cell key may not contain quotes or backslashes: {value!r}")
    return f"'{value}'"


def _records_table(records: Iterable[Record], scrub: Scrubber) -> dict[str, Any]:
    rows = []
    for r in records:
        extracted = r.extracted
        if extracted is not None and not isinstance(extracted, str):
            extracted = json.dumps(_jsonable(extracted))
        rows.append([r.example_id, bool(r.correct), float(r.score), extracted, r.reason, int(r.prompt_tokens),
                     int(r.completion_tokens), int(r.prompt_tokens + r.completion_tokens), bool(r.truncated),
                     int(r.attempts), bool(r.cached)])
    return scrub({"columns": RECORD_COLUMNS, "data": rows})


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, int | float) and math.isfinite(float(v)):
            out[k] = float(v)
    return out


# ------------------------------------------------------------------------------------------------ tracker


class Tracker:
    """One MLflow experiment; thread-safe (cells may run concurrently: writes are serialized)."""

    def __init__(self, uri: str | None, experiment: str, *, trace: bool = False, secrets: Iterable[str] = ()) -> None:
        self.uri = resolve_uri(uri)
        self.experiment = experiment
        self.trace = trace
        self.scrub = Scrubber(secrets)
        self._lock = threading.RLock()
        self._client: Any = None
        self._experiment_id: str | None = None
        self._tracing_on = False

    # -- store

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from mlflow.tracking import MlflowClient

                path = _sqlite_path(self.uri)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            return self._client

    def check_reachable(self, timeout_s: float = 5.0) -> None:
        """Raise ConfigError (one sentence) when the store cannot be used; also creates the experiment, so
        a new sqlite store spends its table-creation seconds here, before any paid request."""
        fix = "start it, or set tracking.uri (or MLFLOW_TRACKING_URI) to a reachable one"
        if self.is_server:
            url = self.uri.rstrip("/") + "/health"
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (http/https only)
                    resp.read(64)
            except urllib.error.HTTPError as exc:
                if exc.code >= 500:
                    raise ConfigError(f"The MLflow tracking server {self.uri} answered {exc.code} to a health "
                                      f"check; {fix}.") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise ConfigError(f"The MLflow tracking server {self.uri} is not reachable ({reason}); "
                                  f"{fix}.") from None
        path = _sqlite_path(self.uri)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"The MLflow store {path} cannot be created ({exc.strerror}); choose another "
                                  "tracking.uri or output directory.") from None
        try:
            self.experiment_id()
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 (any store failure is one sentence for the user)
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc.__class__.__name__
            raise ConfigError(f"The MLflow store {self.uri} cannot be used ({first}); {fix}.") from None

    def experiment_id(self) -> str:
        with self._lock:
            if self._experiment_id is None:
                from mlflow.exceptions import MlflowException

                exp = self.client.get_experiment_by_name(self.experiment)
                if exp is None:
                    location = None
                    path = _sqlite_path(self.uri)
                    if path is not None:  # keep artifacts beside the store, not in the working directory
                        location = (path.parent.resolve() / "mlartifacts" / _prompt_name(self.experiment)).as_uri()
                    try:
                        self._experiment_id = self.client.create_experiment(self.experiment,
                                                                            artifact_location=location)
                    except MlflowException:  # created meanwhile by another process
                        exp = self.client.get_experiment_by_name(self.experiment)
                        if exp is None:
                            raise
                        self._experiment_id = exp.experiment_id
                else:
                    if exp.lifecycle_stage == "deleted":
                        self.client.restore_experiment(exp.experiment_id)
                    self._experiment_id = exp.experiment_id
                self._start_tracing()
            return self._experiment_id

    def _start_tracing(self) -> None:
        """OpenAI autolog into this experiment (process-wide: MLflow's tracing is global)."""
        if not self.trace or self._tracing_on:
            return
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(experiment_id=self._experiment_id)
        scrub = self.scrub

        def _mask(span: Any) -> None:
            try:
                for get, put in ((span.inputs, span.set_inputs), (span.outputs, span.set_outputs)):
                    if get is not None and any(v in json.dumps(get, default=str) for v in scrub.secrets):
                        put(scrub(_jsonable(get)))
                for k, v in list((span.attributes or {}).items()):
                    text = v if isinstance(v, str) else json.dumps(v, default=str)
                    if any(s in text for s in scrub.secrets):
                        span.set_attribute(k, scrub.text(text))
            except Exception:  # noqa: BLE001 (masking must never break a request)
                pass

        try:
            mlflow.tracing.configure(span_processors=[_mask])
        except Exception:  # noqa: BLE001 (older MLflow: no span processors; keys are not in OpenAI inputs)
            pass
        mlflow.openai.autolog(log_traces=True)
        self._tracing_on = True

    def stop_tracing(self) -> None:
        if self._tracing_on:
            import mlflow

            mlflow.openai.autolog(disable=True)
            self._tracing_on = False

    def _search(self, filter_string: str, max_results: int = 1000) -> list[Any]:
        from mlflow.entities import ViewType

        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id()], filter_string=filter_string,
                                           run_view_type=ViewType.ACTIVE_ONLY, max_results=max_results,
                                           order_by=["attributes.start_time DESC"], page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _log_batch(self, run_id: str, *, params: Mapping[str, str] | None = None,
                   tags: Mapping[str, str] | None = None, metrics: Mapping[str, float] | None = None,
                   step: int = 0) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        ps = [Param(_key(self.scrub.text(k)), _truncate(self.scrub.text(str(v)), MAX_PARAM_VALUE))
              for k, v in (params or {}).items()]
        ts = [RunTag(_key(self.scrub.text(k)), _truncate(self.scrub.text(str(v)), MAX_TAG_VALUE))
              for k, v in (tags or {}).items()]
        ms = [Metric(_key(self.scrub.text(k)), v, now, step) for k, v in _finite(metrics or {}).items()]
        with self._lock:
            for i in range(0, max(len(ps), len(ts), 1), PER_BATCH):
                if ps[i:i + PER_BATCH] or ts[i:i + PER_BATCH]:
                    self.client.log_batch(run_id, params=ps[i:i + PER_BATCH], tags=ts[i:i + PER_BATCH])
            for i in range(0, len(ms), METRICS_PER_BATCH):
                self.client.log_batch(run_id, metrics=ms[i:i + METRICS_PER_BATCH])

    def _log_text(self, run_id: str, text: str, path: str) -> None:
        with self._lock:
            self.client.log_text(run_id, self.scrub.text(text), path)

    def _log_json(self, run_id: str, obj: Any, path: str) -> None:
        self._log_text(run_id, json.dumps(self.scrub(_jsonable(obj)), indent=1, ensure_ascii=False), path)

    def _read_json(self, run_id: str, path: str) -> Any | None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = self.client.download_artifacts(run_id, path, tmp)
            except Exception:  # noqa: BLE001 (absent artifact)
                return None
            p = Path(local)
            if not p.is_file():
                return None
            return json.loads(p.read_text(encoding="utf-8"))

    def _read_json_dir(self, run_id: str, path: str) -> list[Any]:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                local = Path(self.client.download_artifacts(run_id, path, tmp))
            except Exception:  # noqa: BLE001 (absent folder)
                return []
            if not local.is_dir():
                return []
            return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(local.glob("*.json"))]

    # -- experiment level

    def _experiment_run(self) -> str:
        runs = self._search(f"tags.`{KIND}` = 'experiment'", max_results=5)
        if runs:
            return runs[0].info.run_id
        run = self.client.create_run(self.experiment_id(), run_name="experiment-settings",
                                     tags={KIND: "experiment"})
        return run.info.run_id

    def log_experiment(self, config: dict, config_text: str, code_version: dict) -> None:
        """The experiment's config and code version: experiment tags and a settings run (idempotent; a
        changed config is kept as the current one, earlier ones under configs/)."""
        config = self.scrub(_jsonable(config))
        config_text = self.scrub.text(config_text)
        sha = hashlib.sha256(config_text.encode()).hexdigest()[:16]
        code = {str(k): str(v) for k, v in self.scrub(_jsonable(code_version)).items()}
        with self._lock:
            exp_id = self.experiment_id()
            run_id = self._experiment_run()
            prev = self.client.get_run(run_id).data.tags.get(TAG + "config_sha")
            exp_tags = {TAG + "config_sha": sha, **{TAG + "code." + k: v for k, v in code.items()}}
            if config.get("description"):
                exp_tags["mlflow.note.content"] = str(config["description"])
            for k, v in exp_tags.items():
                self.client.set_experiment_tag(exp_id, _key(k), _truncate(self.scrub.text(v), MAX_TAG_VALUE))
            if prev != sha:
                self._log_text(run_id, config_text, "config.yaml")
                self._log_json(run_id, config, "config.json")
                self._log_json(run_id, code, "code_version.json")
                self._log_text(run_id, config_text, f"configs/{int(time.time())}-{sha}.yaml")
            self._log_batch(run_id, tags={TAG + "config_sha": sha, **{TAG + "code." + k: v for k, v in code.items()}})
            self.client.set_terminated(run_id, "FINISHED")

    # -- cells

    def find_finished_cell(self, cell_key: str) -> dict | None:
        """The newest FINISHED run of this cell: {"run_id", "metrics", "params", "tags", "result"} (result:
        the dict passed to CellRun.finish, {} if none), or None."""
        runs = self._search(f"tags.`{CELL_KEY}` = {_filter_value(cell_key)} and attributes.status = 'FINISHED'",
                            max_results=10)
        if not runs:
            return None
        run = runs[0]
        result = self._read_json(run.info.run_id, "result.json") or {}
        return {"run_id": run.info.run_id, "metrics": dict(run.data.metrics), "params": dict(run.data.params),
                "tags": dict(run.data.tags), "result": result}

    def start_cell(self, cell_key: str, *, method: str, benchmark: str, seed: int, params: dict,
                   tags: dict) -> CellRun:
        """A run for this cell: the newest unfinished one (RUNNING after a kill, FAILED, KILLED) is reused,
        so a resumed cell keeps one run; otherwise a new run. Call find_finished_cell first to skip
        finished cells (a finished run is never reopened)."""
        core_tags = {KIND: "cell", CELL_KEY: cell_key, TAG + "method": method, TAG + "benchmark": benchmark,
                     TAG + "seed": str(seed)}
        all_tags = {**{k if k.startswith(("sepo.", "mlflow.")) else TAG + k: v for k, v in flatten(tags).items()},
                    **core_tags}
        flat = {"method": method, "benchmark": benchmark, "seed": str(seed), **flatten(params)}
        flat = {_key(self.scrub.text(k)): v for k, v in flat.items()}
        with self._lock:
            runs = self._search(f"tags.`{CELL_KEY}` = {_filter_value(cell_key)}", max_results=50)
            open_runs = [r for r in runs if r.info.status != "FINISHED"]
            if open_runs:
                run = open_runs[0]
                run_id = run.info.run_id
                self.client.update_run(run_id, status="RUNNING")
                old = run.data.params
                changed = sorted(k for k, v in flat.items()
                                 if k in old and old[k] != _truncate(self.scrub.text(str(v)), MAX_PARAM_VALUE))
                resumed = int(run.data.tags.get(TAG + "resumed", "0")) + 1
                extra = {TAG + "resumed": str(resumed)}
                if changed:
                    extra[TAG + "params_changed_on_resume"] = json.dumps(changed)
                self._log_batch(run_id, params={k: v for k, v in flat.items() if k not in old},
                                tags={**all_tags, **extra})
                cell = CellRun(self, run_id, cell_key, resumed=True)
                cell._load_existing()
                return cell
            run = self.client.create_run(self.experiment_id(), run_name=_key(f"{method}.{benchmark}.seed{seed}"),
                                         tags={_key(k): _truncate(self.scrub.text(str(v)), MAX_TAG_VALUE)
                                               for k, v in core_tags.items()})
            self._log_batch(run.info.run_id, params=flat, tags=all_tags)
            return CellRun(self, run.info.run_id, cell_key, resumed=False)

    # -- prompt registry

    def register_prompt(self, name: str, text: str, tags: Mapping[str, str], run_id: str) -> str | None:
        """Register text under name (a new version unless the latest already holds this text for this run);
        returns 'prompts:/<name>/<version>', or None when the store has no prompt registry."""
        name = _prompt_name(name)
        text = self.scrub.text(text)
        clean = {_key(k): _truncate(self.scrub.text(str(v)), 5000) for k, v in tags.items()}
        with self._lock:
            try:
                latest = self._latest_prompt(name)
                if latest is not None and latest.template == text and latest.tags.get(TAG + "run_id") == run_id:
                    version = latest
                else:
                    version = self.client.register_prompt(name=name, template=text, tags=clean,
                                                          commit_message=f"run {run_id}")
            except Exception as exc:  # noqa: BLE001 (a store without a registry: say so on the run, go on)
                self._log_batch(run_id, tags={TAG + "prompt_registry_error": str(exc)[:500]})
                return None
            ref = f"prompts:/{name}/{version.version}"
            try:
                self.client.link_prompt_version_to_run(run_id, version)
            except Exception:  # noqa: BLE001 (older MLflow: the tags below still link them)
                pass
            return ref

    def _latest_prompt(self, name: str) -> Any | None:
        try:
            versions = self.client.search_prompt_versions(name).prompt_versions
        except Exception:  # noqa: BLE001 (no such prompt yet)
            return None
        return max(versions, key=lambda v: int(v.version)) if versions else None


# --------------------------------------------------------------------------------------------------- cell


class CellRun:
    """The MLflow run of one cell; candidates are logged as they arrive, once each."""

    def __init__(self, tracker: Tracker, run_id: str, cell_key: str, *, resumed: bool) -> None:
        self.tracker = tracker
        self.run_id = run_id
        self.cell_key = cell_key
        self.resumed = resumed
        self._logged: set[str] = set()  # artifact names already written
        self._docs: dict[str, dict] = {}  # this process's candidates, by artifact name
        self._best: float | None = None
        self._lock = threading.Lock()

    def _load_existing(self) -> None:
        client = self.tracker.client
        try:
            files = client.list_artifacts(self.run_id, "candidates")
        except Exception:  # noqa: BLE001
            files = []
        self._logged = {Path(f.path).name for f in files if not f.is_dir}
        try:
            hist = client.get_metric_history(self.run_id, "candidate.best_train_score")
        except Exception:  # noqa: BLE001
            hist = []
        if hist:
            self._best = max(m.value for m in hist)

    def log_candidate(self, c: Candidate) -> None:
        name = _artifact_name(c.id)
        with self._lock:
            if name in self._logged:
                return
            order = len(self._logged)
            meta = dict(c.meta or {})
            cost = meta.pop("cost", None) or {}
            doc = {
                "id": c.id, "parent_id": c.parent_id, "generation": c.generation, "order": order,
                "train_score": c.train_score, "val_score": c.val_score, "prompt": c.prompt,
                "stage": meta.pop("stage", None), "admitted": meta.pop("admitted", None),
                "example_ids": meta.pop("example_ids", None), "val_example_ids": meta.pop("val_example_ids", None),
                "cost": cost, "logged_at": time.time(), "meta": meta,
            }
            self.tracker._log_json(self.run_id, doc, f"candidates/{name}")
            self._logged.add(name)
            self._docs[name] = doc
            metrics: dict[str, float] = {"candidate.generation": float(c.generation)}
            if c.train_score is not None:
                metrics["candidate.train_score"] = c.train_score
                self._best = c.train_score if self._best is None else max(self._best, c.train_score)
            if c.val_score is not None:
                metrics["candidate.val_score"] = c.val_score
            if self._best is not None:
                metrics["candidate.best_train_score"] = self._best
            self.tracker._log_batch(self.run_id, metrics=metrics, step=order)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.tracker._log_batch(self.run_id, metrics=metrics, step=step or 0)

    def log_tags(self, tags: dict[str, Any]) -> None:
        self.tracker._log_batch(self.run_id, tags={k if k.startswith(("sepo.", "mlflow.")) else TAG + k: v
                                                   for k, v in flatten(tags).items()})

    def candidates(self) -> list[dict]:
        """Every candidate of this run (also those logged by an earlier, killed process), in arrival order."""
        docs = dict(self._docs)
        if len(docs) < len(self._logged):
            for d in self.tracker._read_json_dir(self.run_id, "candidates"):
                docs.setdefault(_artifact_name(d["id"]), d)
        return sorted(docs.values(), key=lambda d: d.get("order", 0))

    def finish(self, *, metrics: dict[str, float], test_records: list[Record],
               initial_records: list[Record] | None = None, best_prompt: str,
               extra_prompts: dict[str, str] | None = None, register_as: str | None = None,
               result: dict | None = None) -> None:
        """Metrics, per-example tables, the candidate table, prompts (registered when register_as is set),
        an optional result dict (returned by find_finished_cell), then the run ends FINISHED."""
        t = self.tracker
        t._log_batch(self.run_id, metrics=metrics)
        t._log_json(self.run_id, _records_table(test_records, t.scrub), "records/test.json")
        if initial_records is not None:
            t._log_json(self.run_id, _records_table(initial_records, t.scrub), "records/initial.json")
        cands = self.candidates()
        cols = ["id", "parent_id", "generation", "order", "stage", "admitted", "train_score", "val_score",
                "prompt", "example_ids", "val_example_ids", "cost", "meta"]
        t._log_json(self.run_id, {"columns": cols, "data": [[d.get(c) for c in cols] for d in cands]},
                    "candidates.json")
        t._log_text(self.run_id, best_prompt, "prompts/best.txt")
        for key, text in (extra_prompts or {}).items():
            t._log_text(self.run_id, text, f"prompts/{_prompt_name(key)}.txt")
        if register_as:
            run = t.client.get_run(self.run_id)
            link = {TAG + "run_id": self.run_id, TAG + "experiment": t.experiment, CELL_KEY: self.cell_key,
                    **{k: v for k, v in run.data.tags.items()
                       if k in (TAG + "method", TAG + "benchmark", TAG + "seed")}}
            refs = {"best": t.register_prompt(register_as, best_prompt, {**link, TAG + "role": "task"},
                                              self.run_id)}
            for key, text in (extra_prompts or {}).items():
                refs[key] = t.register_prompt(f"{register_as}.{key}", text, {**link, TAG + "role": key}, self.run_id)
            t._log_batch(self.run_id, tags={f"{TAG}prompt.{k}": v for k, v in refs.items() if v})
        if result is not None:
            t._log_json(self.run_id, result, "result.json")
        with t._lock:
            t.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, reason: str) -> None:
        t = self.tracker
        t._log_batch(self.run_id, tags={TAG + "fail_reason": reason})
        with t._lock:
            t.client.set_terminated(self.run_id, "FAILED")


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class ExperimentData:
    """An experiment as MLflow holds it. cells: one row per cell run (run_id, cell_key, method, benchmark,
    seed, status, metrics by name, tags by key, params as 'param.<key>'); candidates: one row per candidate
    (run_id, cell_key, method, benchmark, seed + the candidate's fields); records: one row per test example
    (run_id, ..., split 'test'/'initial', RECORD_COLUMNS); settings: config, code version, tags."""

    uri: str
    experiment: str
    experiment_id: str
    cells: pd.DataFrame
    candidates: pd.DataFrame
    records: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)


def _cell_row(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    row: dict[str, Any] = {
        "run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status,
        "start_time": run.info.start_time, "end_time": run.info.end_time, "cell_key": tags.get(CELL_KEY),
        "method": tags.get(TAG + "method"), "benchmark": tags.get(TAG + "benchmark"),
        "seed": int(tags[TAG + "seed"]) if tags.get(TAG + "seed", "").lstrip("-").isdigit() else tags.get(TAG + "seed"),
    }
    row.update({k: v for k, v in tags.items() if not k.startswith("mlflow.") and k not in row})
    row.update({f"param.{k}": v for k, v in run.data.params.items()})
    row.update(dict(run.data.metrics))
    return row


def _cell_artifacts(tracker: Tracker, run_id: str, finished: bool) -> tuple[list[dict], dict[str, Any]]:
    cands: list[dict] = []
    table = tracker._read_json(run_id, "candidates.json") if finished else None
    if table is not None:
        cands = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    else:
        cands = sorted(tracker._read_json_dir(run_id, "candidates"), key=lambda d: d.get("order", 0))
    records = {}
    for split in ("test", "initial"):
        tab = tracker._read_json(run_id, f"records/{split}.json")
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
    runs = tracker._search(f"tags.`{KIND}` = 'cell'")
    cells = pd.DataFrame([_cell_row(r) for r in runs])
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        arts = list(pool.map(lambda r: _cell_artifacts(tracker, r.info.run_id, r.info.status == "FINISHED"), runs))
    cand_rows, rec_rows = [], []
    for run, (cands, records) in zip(runs, arts, strict=True):
        base = {"run_id": run.info.run_id, "cell_key": run.data.tags.get(CELL_KEY),
                "method": run.data.tags.get(TAG + "method"), "benchmark": run.data.tags.get(TAG + "benchmark"),
                "seed": _cell_row(run)["seed"]}
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
    settings: dict[str, Any] = {"experiment_tags": dict(exp.tags)}
    exp_runs = tracker._search(f"tags.`{KIND}` = 'experiment'", max_results=5)
    if exp_runs:
        rid = exp_runs[0].info.run_id
        settings["config"] = tracker._read_json(rid, "config.json") or {}
        settings["code_version"] = tracker._read_json(rid, "code_version.json") or {}
        with tempfile.TemporaryDirectory() as tmp:
            try:
                settings["config_text"] = Path(tracker.client.download_artifacts(rid, "config.yaml", tmp)).read_text()
            except Exception:  # noqa: BLE001
                settings["config_text"] = ""
    if cells.empty:
        cells = pd.DataFrame(columns=["run_id", "run_name", "status", "cell_key", "method", "benchmark", "seed"])
    return ExperimentData(tracker.uri, experiment, exp.experiment_id, cells, candidates, records, settings)
