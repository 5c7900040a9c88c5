"""An open MLflow run (RunHandle) and its two kinds, CellRun and StageRun: candidates logged once each as they
arrive, per-example tables, prompts, results; the run ends FINISHED or FAILED."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import schema as S
from harness.tracking.scrub import Scrubber
from harness.tracking.values import RECORD_COLUMNS, _artifact_name, _jsonable, _prompt_name, flatten

if TYPE_CHECKING:  # pragma: no cover
    from harness.evaluator import Record
    from harness.optimizer import Candidate


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


def _truncated(records: Iterable[Record]) -> float:
    return float(sum(bool(r.truncated) for r in records))


class RunHandle:
    """An open run (a cell or a stage): candidates logged as they arrive, once each; ends with finish/fail."""

    def __init__(self, tracker: Any, run_id: str, key: str, *, resumed: bool) -> None:
        # tracker: the harness.tracking.store.Tracker that opened the run (not imported: it imports this module)
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
