"""The Tracker: one MLflow experiment in a store (connection, reachability, tracing, search, batched
logging, artifact reads), its settings run, finding finished cells and stages, opening their runs, and the
prompt registry."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness import schema as S
from harness.config import ConfigError
from harness.tracking.runs import CellRun, RunHandle, StageRun
from harness.tracking.scrub import Scrubber
from harness.tracking.uris import _local_artifact, _sqlite_path, resolve_uri
from harness.tracking.values import (
    MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
    METRICS_PER_BATCH,
    PER_BATCH,
    _filter_value,
    _finite,
    _jsonable,
    _key,
    _prompt_name,
    _truncate,
    flatten,
)

# Before mlflow is imported: no usage telemetry leaves the machine, no download progress bars in the logs.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# mlflow's tracing pulls in litellm, which would otherwise fetch a cost map from the internet for seconds.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


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
        self._env_before: str | None = None  # $MLFLOW_TRACKING_URI before tracing set it

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

        # set_tracking_uri also sets $MLFLOW_TRACKING_URI (inherited by later trackers of this process and by
        # subprocesses): remember it, stop_tracing puts it back
        self._env_before = os.environ.get("MLFLOW_TRACKING_URI")
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
            mlflow.set_tracking_uri(self._env_before)  # None clears $MLFLOW_TRACKING_URI again

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

    def start_trial(self, key: str, *, study: str, number: int, method: str, benchmark: str, seed: int,
                    params: dict, tags: dict | None = None) -> CellRun:
        """A run for one Optuna trial of `sepo-bench tune` (kind trial, so reports never read it as a cell):
        reopened like a cell's after a kill; candidates and finish as a cell's. State tag TRIAL_RUNNING until
        the trial sets another."""
        core = {S.KIND: S.KIND_TRIAL, S.TRIAL_KEY: key, S.STUDY: study, S.TRIAL: str(number),
                S.TRIAL_STATE: S.TRIAL_RUNNING, S.METHOD: method, S.BENCHMARK: benchmark, S.SEED: str(seed)}
        params = {"method": method, "benchmark": benchmark, "seed": str(seed), **params}
        return self._open_run(CellRun, S.TRIAL_KEY, key, f"{study}-trial-{number}", core, params, tags or {})

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
