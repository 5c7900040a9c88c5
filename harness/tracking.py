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

from harness import schema as S
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

TAG, KIND, CELL_KEY = S.PREFIX, S.KIND, S.CELL_KEY  # kept for importers of the old names
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


def _local_artifact(artifact_uri: str | None, path: str) -> Path | None:
    """The file of a run's artifact when the run's artifacts are on this machine (file:// URI), else None."""
    if not artifact_uri or not artifact_uri.startswith("file://"):
        return None
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(artifact_uri).path)) / path


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

    def _read_json(self, run_id: str, path: str, artifact_uri: str | None = None) -> Any | None:
        local = _local_artifact(artifact_uri, path)
        if local is not None:  # a local store: read in place (no get_run and copy per file)
            return json.loads(local.read_text(encoding="utf-8")) if local.is_file() else None
        with tempfile.TemporaryDirectory() as tmp:
            try:
                got = self.client.download_artifacts(run_id, path, tmp)
            except Exception:  # noqa: BLE001 (absent artifact)
                return None
            p = Path(got)
            if not p.is_file():
                return None
            return json.loads(p.read_text(encoding="utf-8"))

    def _read_json_dir(self, run_id: str, path: str, artifact_uri: str | None = None) -> list[Any]:
        local = _local_artifact(artifact_uri, path)
        if local is not None:
            return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(local.glob("*.json"))]
        with tempfile.TemporaryDirectory() as tmp:
            try:
                got = Path(self.client.download_artifacts(run_id, path, tmp))
            except Exception:  # noqa: BLE001 (absent folder)
                return []
            if not got.is_dir():
                return []
            return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(got.glob("*.json"))]

    # -- experiment level

    def _experiment_run(self) -> str:
        runs = self._search(f"tags.`{S.KIND}` = '{S.KIND_EXPERIMENT}'", max_results=5)
        if runs:
            return runs[0].info.run_id
        run = self.client.create_run(self.experiment_id(), run_name="experiment-settings",
                                     tags={S.KIND: S.KIND_EXPERIMENT})
        return run.info.run_id

    def log_experiment(self, config: dict, config_text: str, code_version: dict, *, simulated: bool | None = None,
                       paper_protocol: bool = False, protocol: str | None = None) -> None:
        """The experiment's config and code version: experiment tags and a settings run (idempotent; a
        changed config is kept as the current one, earlier ones under configs/). simulated defaults to the
        config's `simulated`; paper_protocol says the config follows a protocol of the paper, protocol which
        one (schema.PROTOCOL_PAPER, schema.PROTOCOL_SWAP)."""
        config = self.scrub(_jsonable(config))
        config_text = self.scrub.text(config_text)
        sha = hashlib.sha256(config_text.encode()).hexdigest()[:16]
        code = {str(k): str(v) for k, v in self.scrub(_jsonable(code_version)).items()}
        if simulated is None:
            simulated = bool(config.get("simulated"))
        tags = {S.CONFIG_SHA: sha, **{S.CODE + k: v for k, v in code.items()}, S.SIMULATED: S.bool_tag(simulated),
                S.PAPER_PROTOCOL: S.bool_tag(paper_protocol or bool(protocol)), S.PROTOCOL: protocol or ""}
        with self._lock:
            exp_id = self.experiment_id()
            run_id = self._experiment_run()
            prev = self.client.get_run(run_id).data.tags.get(S.CONFIG_SHA)
            exp_tags = dict(tags)
            if config.get("description"):
                exp_tags[S.NOTE] = str(config["description"])
            for k, v in exp_tags.items():
                self.client.set_experiment_tag(exp_id, _key(k), _truncate(self.scrub.text(v), MAX_TAG_VALUE))
            if prev != sha:
                self._log_text(run_id, config_text, "config.yaml")
                self._log_json(run_id, config, "config.json")
                self._log_json(run_id, code, "code_version.json")
                self._log_text(run_id, config_text, f"configs/{int(time.time())}-{sha}.yaml")
            self._log_batch(run_id, tags=tags)
            self.client.set_terminated(run_id, "FINISHED")

    # -- cells and stages

    def _find_finished(self, key_tag: str, key: str) -> dict | None:
        runs = self._search(f"tags.`{key_tag}` = {_filter_value(key)} and attributes.status = 'FINISHED'",
                            max_results=10)
        if not runs:
            return None
        run = runs[0]
        result = self._read_json(run.info.run_id, "result.json") or {}
        return {"run_id": run.info.run_id, "metrics": dict(run.data.metrics), "params": dict(run.data.params),
                "tags": dict(run.data.tags), "result": result}

    def find_finished_cell(self, cell_key: str) -> dict | None:
        """The newest FINISHED run of this cell: {"run_id", "metrics", "params", "tags", "result"} (result:
        the dict passed to CellRun.finish, {} if none), or None."""
        return self._find_finished(S.CELL_KEY, cell_key)

    def find_finished_stage(self, key: str) -> dict | None:
        """The newest FINISHED run of this stage: as find_finished_cell, plus "texts" ({name: text} passed
        to StageRun.finish), or None."""
        found = self._find_finished(S.STAGE_KEY, key)
        if found is not None:
            found["texts"] = self._read_json(found["run_id"], "stage/texts.json") or {}
        return found

    def _open_run(self, cls: type[RunHandle], key_tag: str, key: str, run_name: str, core_tags: dict[str, str],
                  params: Mapping[str, Any], tags: Mapping[str, Any]) -> Any:
        """The newest unfinished run with this key (RUNNING after a kill, FAILED, KILLED), reopened; else a
        new run. A finished run is never reopened."""
        all_tags = {**{k if k.startswith((S.PREFIX, "mlflow.")) else S.PREFIX + k: v
                       for k, v in flatten(tags).items()}, **core_tags}
        flat = {_key(self.scrub.text(k)): v for k, v in flatten(params).items()}
        with self._lock:
            runs = self._search(f"tags.`{key_tag}` = {_filter_value(key)}", max_results=50)
            open_runs = [r for r in runs if r.info.status != "FINISHED"]
            if open_runs:
                run = open_runs[0]
                run_id = run.info.run_id
                self.client.update_run(run_id, status="RUNNING")
                old = run.data.params
                changed = sorted(k for k, v in flat.items()
                                 if k in old and old[k] != _truncate(self.scrub.text(str(v)), MAX_PARAM_VALUE))
                extra = {S.RESUMED: str(int(run.data.tags.get(S.RESUMED, "0")) + 1)}
                if changed:
                    extra[S.PARAMS_CHANGED] = json.dumps(changed)
                self._log_batch(run_id, params={k: v for k, v in flat.items() if k not in old},
                                tags={**all_tags, **extra})
                handle = cls(self, run_id, key, resumed=True)
                handle._load_existing()
                return handle
            run = self.client.create_run(self.experiment_id(), run_name=_key(run_name),
                                         tags={_key(k): _truncate(self.scrub.text(str(v)), MAX_TAG_VALUE)
                                               for k, v in core_tags.items()})
            self._log_batch(run.info.run_id, params=flat, tags=all_tags)
            return cls(self, run.info.run_id, key, resumed=False)

    def start_cell(self, cell_key: str, *, method: str, benchmark: str, seed: int, params: dict, tags: dict,
                   family: str | None = None, ablation_of: str | None = None,
                   simulated: bool | None = None) -> CellRun:
        """A run for this cell: the newest unfinished one is reused, so a resumed cell keeps one run;
        otherwise a new run. Call find_finished_cell first to skip finished cells. family (schema.FAMILIES),
        ablation_of and simulated become tags (tags' keys without the sepo. prefix get it)."""
        core = {S.KIND: S.KIND_CELL, S.CELL_KEY: cell_key, S.METHOD: method, S.BENCHMARK: benchmark,
                S.SEED: str(seed)}
        extra: dict[str, str] = {}
        if family is not None:
            if family not in S.FAMILIES:
                raise ValueError(f"family must be one of {S.FAMILIES}, not {family!r}")
            extra[S.FAMILY] = family
        if ablation_of is not None or family is not None:
            extra[S.ABLATION_OF] = ablation_of or ""
        if simulated is not None:
            extra[S.SIMULATED] = S.bool_tag(simulated)
        params = {"method": method, "benchmark": benchmark, "seed": str(seed), **params}
        return self._open_run(CellRun, S.CELL_KEY, cell_key, f"{method}.{benchmark}.seed{seed}", core, params,
                              {**tags, **extra})

    def start_stage(self, key: str, kind: str, *, methods: Iterable[str], targets: Iterable[str],
                    params: dict | None = None, tags: dict | None = None,
                    simulated: bool | None = None) -> StageRun:
        """A run for a stage shared by cells (kind: schema.STAGE_PRETRAIN, STAGE_META_TRAIN), built once per
        key: reopened like a cell after a kill or failure. Call find_finished_stage first to reuse a finished
        one. methods / targets: the methods and target benchmarks it serves."""
        core = {S.KIND: S.KIND_STAGE, S.STAGE_KEY: key, S.STAGE_KIND: kind,
                S.STAGE_METHODS: json.dumps(sorted(set(methods))), S.STAGE_TARGETS: json.dumps(sorted(set(targets)))}
        extra = {S.SIMULATED: S.bool_tag(simulated)} if simulated is not None else {}
        return self._open_run(StageRun, S.STAGE_KEY, key, f"stage.{kind}.{key}"[:200], core,
                              {"stage_kind": kind, **(params or {})}, {**(tags or {}), **extra})

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
                if latest is not None and latest.template == text and latest.tags.get(S.RUN_ID) == run_id:
                    version = latest
                else:
                    version = self.client.register_prompt(name=name, template=text, tags=clean,
                                                          commit_message=f"run {run_id}")
            except Exception as exc:  # noqa: BLE001 (a store without a registry: say so on the run, go on)
                self._log_batch(run_id, tags={S.PROMPT_REGISTRY_ERROR: str(exc)[:500]})
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


# ---------------------------------------------------------------------------------------------- runs


def _truncated(records: Iterable[Record]) -> float:
    return float(sum(bool(r.truncated) for r in records))


class RunHandle:
    """An open run (a cell or a stage): candidates logged as they arrive, once each; ends with finish/fail."""

    def __init__(self, tracker: Tracker, run_id: str, key: str, *, resumed: bool) -> None:
        self.tracker = tracker
        self.run_id = run_id
        self.key = key
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
            hist = client.get_metric_history(self.run_id, S.CANDIDATE_BEST_TRAIN)
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
            metrics: dict[str, float] = {S.CANDIDATE_GENERATION: float(c.generation)}
            if c.train_score is not None:
                metrics[S.CANDIDATE_TRAIN] = c.train_score
                self._best = c.train_score if self._best is None else max(self._best, c.train_score)
            if c.val_score is not None:
                metrics[S.CANDIDATE_VAL] = c.val_score
            if self._best is not None:
                metrics[S.CANDIDATE_BEST_TRAIN] = self._best
            self.tracker._log_batch(self.run_id, metrics=metrics, step=order)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.tracker._log_batch(self.run_id, metrics=metrics, step=step or 0)

    def log_tags(self, tags: dict[str, Any]) -> None:
        self.tracker._log_batch(self.run_id, tags={k if k.startswith((S.PREFIX, "mlflow.")) else S.PREFIX + k: v
                                                   for k, v in flatten(tags).items()})

    def candidates(self) -> list[dict]:
        """Every candidate of this run (also those logged by an earlier, killed process), in arrival order."""
        docs = dict(self._docs)
        if len(docs) < len(self._logged):
            for d in self.tracker._read_json_dir(self.run_id, "candidates"):
                docs.setdefault(_artifact_name(d["id"]), d)
        return sorted(docs.values(), key=lambda d: d.get("order", 0))

    def _log_candidate_table(self) -> None:
        cols = ["id", "parent_id", "generation", "order", "stage", "admitted", "train_score", "val_score",
                "prompt", "example_ids", "val_example_ids", "cost", "meta"]
        self.tracker._log_json(self.run_id, {"columns": cols, "data": [[d.get(c) for c in cols]
                                                                       for d in self.candidates()]},
                               "candidates.json")

    def _end(self, status: str) -> None:
        t = self.tracker
        tags = {S.STATUS: S.STATUS_FINISHED if status == "FINISHED" else S.STATUS_FAILED}
        if status == "FINISHED" and self.resumed:  # a retried failure: its reason no longer applies
            tags |= {S.FAIL_REASON: "", S.NOTE: ""}
        t._log_batch(self.run_id, tags=tags)
        with t._lock:
            t.client.set_terminated(self.run_id, status)

    def fail(self, reason: str) -> None:
        """The run ends FAILED with its reason (tag and the run's description)."""
        self.tracker._log_batch(self.run_id, tags={S.FAIL_REASON: reason, S.NOTE: f"Failed: {reason}"})
        self._end("FAILED")


class CellRun(RunHandle):
    """The MLflow run of one cell."""

    @property
    def cell_key(self) -> str:
        return self.key

    def finish(self, *, metrics: dict[str, float], test_records: list[Record],
               initial_records: list[Record] | None = None, best_prompt: str,
               extra_prompts: dict[str, str] | None = None, register_as: str | None = None,
               result: dict | None = None, stopped: str | None = None, schedule_complete: bool | None = None,
               max_tokens: int | None = None, stage_keys: Iterable[str] | None = None) -> None:
        """Metrics (plus test_truncated / initial_truncated counted from the records, and the reply cap
        max_tokens), per-example tables, the candidate table, prompts (registered when register_as is set),
        an optional result dict (returned by find_finished_cell), the budget-stop reason and whether the
        method's schedule completed, the stages the cell used; then the run ends FINISHED."""
        t = self.tracker
        metrics = {**metrics, S.TEST_TRUNCATED: _truncated(test_records)}
        if initial_records is not None:
            metrics[S.INITIAL_TRUNCATED] = _truncated(initial_records)
        if max_tokens is not None:
            metrics[S.MAX_TOKENS] = float(max_tokens)
        tags: dict[str, str] = {}
        if stopped is not None or schedule_complete is not None:
            tags[S.STOPPED] = str(stopped)
        if schedule_complete is not None:
            tags[S.SCHEDULE_COMPLETE] = S.bool_tag(schedule_complete)
        if stage_keys is not None:
            tags[S.STAGE_KEYS] = json.dumps(sorted(set(stage_keys)))
        t._log_batch(self.run_id, metrics=metrics, tags=tags)
        t._log_json(self.run_id, _records_table(test_records, t.scrub), "records/test.json")
        if initial_records is not None:
            t._log_json(self.run_id, _records_table(initial_records, t.scrub), "records/initial.json")
        self._log_candidate_table()
        t._log_text(self.run_id, best_prompt, "prompts/best.txt")
        for key, text in (extra_prompts or {}).items():
            t._log_text(self.run_id, text, f"prompts/{_prompt_name(key)}.txt")
        if register_as:
            run = t.client.get_run(self.run_id)
            link = {S.RUN_ID: self.run_id, S.EXPERIMENT: t.experiment, S.CELL_KEY: self.key,
                    **{k: v for k, v in run.data.tags.items() if k in (S.METHOD, S.BENCHMARK, S.SEED)}}
            refs = {"best": t.register_prompt(register_as, best_prompt, {**link, S.ROLE: "task"}, self.run_id)}
            for key, text in (extra_prompts or {}).items():
                refs[key] = t.register_prompt(f"{register_as}.{key}", text, {**link, S.ROLE: key}, self.run_id)
            t._log_batch(self.run_id, tags={S.PROMPT_REF + k: v for k, v in refs.items() if v})
        if result is not None:
            t._log_json(self.run_id, result, "result.json")
        self._end("FINISHED")


class StageRun(RunHandle):
    """The MLflow run of a stage shared by cells (pre-training, meta-training)."""

    def finish(self, *, metrics: dict[str, float], texts: Mapping[str, str] | None = None,
               result: dict | None = None, stopped: str | None = None) -> None:
        """Cost metrics (schema.STAGE_METRICS: requests, tokens, usd, evaluations, wall_s), the stage's
        outputs as text artifacts (e.g. {"prompt_agent": p~*}), an optional result dict (both returned by
        find_finished_stage), the budget-stop reason (tag stopped), the candidate table; then the run ends
        FINISHED."""
        t = self.tracker
        t._log_batch(self.run_id, metrics=metrics, tags={S.STOPPED: str(stopped)})
        texts = dict(texts or {})
        for name, text in texts.items():
            t._log_text(self.run_id, text, f"stage/{_prompt_name(name)}.txt")
        t._log_json(self.run_id, texts, "stage/texts.json")
        if result is not None:
            t._log_json(self.run_id, result, "result.json")
        self._log_candidate_table()
        self._end("FINISHED")


# ---------------------------------------------------------------------------------------------- reading


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
