"""What every baseline shares: settings validation, a resume journal, spend accounting, minibatches,
candidate records and small text helpers.

Events. `optimize` takes `callbacks=Callbacks(...)` (harness.optimizer; `on_candidate=` still works): a
baseline's Reporter reports candidates and finished generations, checks `should_stop` before each step that
spends and, around the run, catches that stop as it catches a budget stop (`until_stop`).

Resume. A baseline's procedure is deterministic given its seed (all randomness is derived from
`(seed, step, ...)`) and the results of its paid steps (evaluations, proposer replies). The `Journal`
stores each finished step's result under a stable key, appended to a JSONL file and fsync'ed; a rerun
replays the procedure and takes every finished step from the journal, so no finished step is paid or
counted again, and a step that was cut off midway is redone (its requests answered by the response cache).

Budget. Every evaluation goes through `task.evaluator` (which reserves example evaluations on the
ledger), every proposer call through the harness `LLMClient`; `BudgetExceeded` ends a run cleanly with
its best-so-far and `extra["stopped"] = "budget"`; `extra["spent"]` records what the call spent.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from harness.aio import run_sync
from harness.benchmarks.base import Example
from harness.evaluator import EvalResult, Record
from harness.llm.client import LLMClient, LLMError
from harness.llm.usage import BudgetExceeded, Usage, snapshot_of
from harness.optimizer import (
    Callbacks,
    Candidate,
    CandidateSink,
    OptimizationTask,
    StopRequested,
    callbacks_of,
    check_stop,
)
from harness.seeds import derive_seed, rng  # noqa: F401 (derive_seed: metaspo still imports it from here)

T = TypeVar("T")
JOURNAL_VERSION = 1


class Settings(BaseModel):
    """Base of every baseline's settings: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def parse_settings(cls: type[Settings], settings: Settings | dict[str, Any] | None, overrides: dict[str, Any]):
    if settings is None or isinstance(settings, dict):
        return cls.model_validate({**(settings or {}), **overrides})
    if overrides:
        return cls.model_validate({**settings.model_dump(), **overrides})
    return settings


def minibatch(examples: Sequence[Example], size: int | None, seed: int, *parts: object) -> list[Example]:
    """A deterministic sample of `size` examples in a seeded order (all of them when there are fewer)."""
    ex = list(examples)
    if size is None or len(ex) <= size:
        return ex
    return rng(seed, "minibatch", *parts).sample(ex, size)


def head(examples: Sequence[Example], size: int | None) -> list[Example]:
    return list(examples) if size is None else list(examples)[:size]


def truncate(text: str, limit: int) -> str:
    """Keep the head and the tail of a long text (the ending often holds the final answer)."""
    text = str(text).strip()
    if limit <= 0 or len(text) <= limit:
        return text
    h = limit * 2 // 3
    return f"{text[:h]} [... {len(text) - limit} chars cut ...] {text[-(limit - h):]}"


# ---- the journal ---------------------------------------------------------------------------------

class Journal:
    """Finished steps of one run, by key; see the module docstring. `path=None` keeps them in memory."""

    def __init__(self, path: Path | None, fingerprint: dict[str, Any]) -> None:
        self.path = path
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        self.entries: dict[str, Any] = {}
        self.restored: set[str] = set()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            self._load(path)
        else:
            self._write_lines([{"version": JOURNAL_VERSION, "fingerprint": self.fingerprint}], "w")

    def _load(self, path: Path) -> None:
        good: list[str] = []
        with path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut off by a kill: everything before it is whole
                if not line.endswith("\n"):
                    break
                good.append(line)
                if len(good) == 1:
                    if rec.get("version") != JOURNAL_VERSION or rec.get("fingerprint") != self.fingerprint:
                        raise ValueError(f"The checkpoint {path} belongs to a different run (seed, task, prompt "
                                         "or settings differ); delete it or use another checkpoint directory.")
                    continue
                self.entries[rec["key"]] = rec["value"]
        if not good:  # not even a header: start afresh
            self._write_lines([{"version": JOURNAL_VERSION, "fingerprint": self.fingerprint}], "w")
            return
        with path.open("w", encoding="utf-8") as f:  # drop a torn tail
            f.writelines(good)
            f.flush()
            os.fsync(f.fileno())
        self.restored = set(self.entries)

    def _write_lines(self, recs: list[dict[str, Any]], mode: str) -> None:
        assert self.path is not None
        with self.path.open(mode, encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str, default: Any = None) -> Any:
        return self.entries.get(key, default)

    def put(self, key: str, value: Any) -> Any:
        value = json.loads(json.dumps(value, default=str))  # what a reload would see
        self.entries[key] = value
        if self.path is not None:
            self._write_lines([{"key": key, "value": value}], "a")
        return value

    def step(self, key: str, fn: Callable[[], T]) -> T:
        """The journaled result of `key`, else fn() journaled (an exception journals nothing)."""
        if key in self.entries:
            return self.entries[key]
        return self.put(key, fn())


# ---- spend -----------------------------------------------------------------------------------------

class Spend:
    """The ledgers' snapshot/since (harness.llm.usage) over the given clients' ledgers, each counted once,
    in the shapes the baselines record."""

    def __init__(self, *llms: LLMClient) -> None:
        self.ledgers = [llm.ledger for llm in llms]
        self.start = self.mark()

    def mark(self) -> Usage:
        return snapshot_of(*self.ledgers)

    def since(self, mark: Usage | None = None) -> dict[str, float]:
        d = self.mark() - (mark or self.start)
        return {"requests": d.requests, "cache_hits": d.cache_hits, "tokens": d.tokens, "usd": round(d.usd, 8),
                "evaluations": d.evaluations}

    def cost(self, mark: Usage) -> dict[str, float]:
        """The shared Candidate.meta["cost"] shape."""
        s = self.since(mark)
        return {"requests": s["requests"], "tokens": s["tokens"], "usd": s["usd"], "evaluations": s["evaluations"]}


# ---- evaluation and proposer calls -------------------------------------------------------------------

def record_dict(r: Record, question: str = "", excerpt_chars: int = 800) -> dict[str, Any]:
    """A graded example as JSON-friendly data (excerpts), for journals and proposer prompts."""
    return {"id": r.example_id, "question": truncate(question, excerpt_chars),
            "response": truncate(r.response, excerpt_chars), "score": r.score, "correct": r.correct,
            "feedback": truncate(r.feedback, excerpt_chars // 2)}


def evaluate(task: OptimizationTask, prompt: str, examples: Sequence[Example], label: str,
             excerpt_chars: int = 800) -> dict[str, Any]:
    """Score a prompt through the task's evaluator (counted against the budget); JSON-friendly result."""
    res: EvalResult = task.evaluator.evaluate(prompt, list(examples), label=label)
    by_id = {e.id: e for e in examples}
    return {"score": res.accuracy, "example_ids": [e.id for e in examples],
            "records": [record_dict(r, by_id[r.example_id].question, excerpt_chars) for r in res.records]}


def rejected(exc: BaseException) -> bool:
    """A proposer request the endpoint refused as such (HTTP 400, e.g. a prompt over the model's context):
    that proposal fails, the run goes on. Other LLM errors (keys, model names) still end the run."""
    return isinstance(exc, LLMError) and "rejected the request" in str(exc)


def chat(llm: LLMClient, user: str, *, system: str | None = None, temperature: float | None = None,
         max_tokens: int | None = None, seed: int | None = None) -> str:
    """One proposer call; "" when the endpoint rejects the request (see `rejected`)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    try:
        return run_sync(llm.chat(messages, temperature=temperature, max_tokens=max_tokens, seed=seed)).text
    except LLMError as exc:
        if rejected(exc):
            return ""
        raise


def extract_tag(text: str, tag: str) -> str | None:
    """The first non-empty <tag>...</tag> (case-insensitive), else the text after an unclosed <tag>."""
    found = [m.strip() for m in re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.DOTALL | re.IGNORECASE)]
    found = [m for m in found if m]
    if found:
        return found[0]
    low = text.lower()
    if f"<{tag.lower()}>" in low:
        rest = text[low.rindex(f"<{tag.lower()}>") + len(tag) + 2:].strip()
        return rest or None
    return None


_FENCE_JSON = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def _loads_lenient(blob: str) -> Any:
    for attempt in (blob, re.sub(r"(?m)\s+#[^\n\"]*$", "", blob)):
        # backslashes of LaTeX commands (\frac, \beta) and other invalid escapes are kept literally
        fixed = re.sub(r'\\(?=[a-zA-Z]{2,})(?!u[0-9a-fA-F]{4})|\\(?!["\\/bfnrtu])', r"\\\\", attempt)
        fixed = re.sub(r",\s*([\]}])", r"\1", fixed)  # trailing commas
        try:
            return json.loads(fixed)
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON")


def parse_operations(reply: str) -> list[dict[str, Any]]:
    """A JSON list of edit operations from a reply: the last fenced block, else the last [...] span;
    [] when nothing parses (a reply without usable edits changes nothing)."""
    blobs = _FENCE_JSON.findall(reply)
    if "[" in reply and "]" in reply:
        blobs.insert(0, reply[reply.find("["): reply.rindex("]") + 1])
    for blob in reversed(blobs):
        try:
            ops = _loads_lenient(blob.strip())
        except ValueError:
            continue
        if isinstance(ops, dict):
            ops = [ops]
        if isinstance(ops, list):
            return [o for o in ops if isinstance(o, dict) and isinstance(o.get("operation"), str)]
    return []


# ---- candidates ------------------------------------------------------------------------------------

class Reporter:
    """A run's side of the caller's callbacks: collects candidates in creation order and reports each once
    (restored ones are not re-reported), reports finished generations, checks and catches stops."""

    def __init__(self, on_candidate: CandidateSink | None = None, callbacks: Callbacks | None = None) -> None:
        self.callbacks = callbacks_of(callbacks, on_candidate)
        self.candidates: list[Candidate] = []
        self.by_id: dict[str, Candidate] = {}
        self.stopped: str | None = None  # "budget", or the caller's should_stop reason

    def add(self, cand: Candidate, *, restored: bool = False) -> Candidate:
        if cand.id in self.by_id:  # a replayed step: keep the first record
            return self.by_id[cand.id]
        self.candidates.append(cand)
        self.by_id[cand.id] = cand
        if not restored:
            self.callbacks.candidate(cand)
        return cand

    def generation_end(self, generation: int) -> None:
        self.callbacks.generation_end(generation)

    def check_stop(self) -> None:
        """Before a step that spends: raise StopRequested when the caller's should_stop gives a reason."""
        check_stop(self.callbacks)

    @contextmanager
    def until_stop(self) -> Iterator[None]:
        """The run's body: a budget cap or the caller's stop ends it early, and `stopped` says which."""
        try:
            yield
        except (BudgetExceeded, StopRequested) as exc:
            self.stopped = stop_label(exc)


def stop_label(exc: BaseException) -> str:
    """extra["stopped"] for a run ended by BudgetExceeded ("budget") or by the caller's should_stop (its reason)."""
    return exc.reason if isinstance(exc, StopRequested) else "budget"


def base_extra(spend: Spend, stopped: str | None, **more: Any) -> dict[str, Any]:
    return {"stopped": stopped, "spent": spend.since(), **more}
