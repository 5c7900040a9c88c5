"""One evolution procedure over "a prompt and how to score it", used by both SePO stages.

Each step: pick a parent (archive sampling or, linear, the latest), let the proposer write a child,
score it on a minibatch, admit it if it is not worse than its parent beyond a tolerance. The state
is checkpointed atomically (JSON, tmp + os.replace) after every candidate. All randomness of a step
is derived from (seed, generation, child index), so a resumed run makes exactly the requests an
uninterrupted one makes, and the response cache answers those already paid for.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.llm.usage import BudgetExceeded
from sepo.archive import Archive, Entry, admits
from sepo.feedback import FeedbackItem, balance

ScoreFn = Callable[[str, int], tuple[float, list[FeedbackItem]]]  # (prompt, minibatch key)
ProposeFn = Callable[[Entry, Archive, int], str]  # (parent, archive, step seed) -> child text
EntrySink = Callable[[Entry], None]
CHECKPOINT_VERSION = 1


class EvolveSettings(BaseModel):
    """Search settings; defaults follow the paper (5 x 2 candidates, minibatch 16) and DGM (lam, alpha0)."""

    model_config = ConfigDict(extra="forbid")

    generations: int = Field(5, ge=0, description="G: evolution steps")
    children: int = Field(2, ge=1, description="K: children per generation")
    minibatch: int = Field(16, ge=1, description="examples a candidate is scored on")
    resample_minibatch: bool = Field(
        False, description="False: one fixed minibatch per run, so all scores are comparable and the "
        "cache makes re-scoring free; True: a fresh minibatch per generation, the parent re-scored on it "
        "for a paired admission test")
    lam: float = Field(10.0, description="DGM selection: sigmoid slope")
    alpha0: float = Field(0.5, description="DGM selection: sigmoid midpoint")
    tolerance: float | None = Field(
        0.0, ge=0.0, description="admit a child if score >= parent score - tolerance; 0 = must not be "
        "worse (ties enter); None = keep every child (DGM's default). SePO's value is unpublished")
    archive: bool = Field(True, description="False = linear search (no-archive ablation): G*K one-child "
                          "generations, each extending the latest admitted candidate; no archive shown")
    archive_top_n: int = Field(5, ge=0, description="other candidates shown to the prompt agent")
    feedback_per_side: int = Field(3, ge=0, description="failures and successes shown (1:1 each)")
    excerpt_chars: int = Field(800, ge=50, description="truncation of questions and responses")


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed from (seed, parts): stable across processes and Python versions."""
    blob = ":".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


@dataclass
class EvolveResult:
    archive: Archive
    stopped: str | None = None  # "budget" when a cap ended the run early
    new: list[Entry] = field(default_factory=list)  # candidates created by this call (not restored)

    @property
    def best(self) -> Entry:
        return self.archive.best()


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _State:
    def __init__(self, archive: Archive, gen: int = 1, k: int = 0, stopped: str | None = None) -> None:
        self.archive, self.gen, self.k, self.stopped = archive, gen, k, stopped

    def dump(self, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "run": fingerprint, "next": {"gen": self.gen, "k": self.k},
                "stopped": self.stopped, "archive": self.archive.to_dict()}


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def evolve(initial_prompt: str, score_fn: ScoreFn, propose_fn: ProposeFn, settings: EvolveSettings, *,
           seed: int, checkpoint: Path | None = None, on_candidate: EntrySink | None = None,
           id_prefix: str = "", run_key: dict[str, Any] | None = None) -> EvolveResult:
    """Run (or resume) G x K evolution steps from `initial_prompt`; stop cleanly on BudgetExceeded.

    `on_candidate` sees each candidate once, when it is created; candidates restored from a
    checkpoint are not reported again (they are in the result's archive). `run_key` holds whatever
    else identifies the run (task, prompt-agent prompt): a checkpoint of another run is refused.
    """
    s = settings
    fingerprint = {"seed": seed, "initial_prompt": initial_prompt, "id_prefix": id_prefix,
                   "settings": s.model_dump(exclude={"generations"}),  # G may grow on resume
                   "run_key": run_key or {}}
    saved = load_checkpoint(checkpoint) if checkpoint else None
    if saved is not None:
        if saved.get("version") != CHECKPOINT_VERSION or saved.get("run") != fingerprint:
            raise ValueError(f"The checkpoint {checkpoint} belongs to a different run (seed, prompt or "
                             "settings differ); delete it or use another checkpoint directory.")
        st = _State(Archive.from_dict(saved["archive"]), saved["next"]["gen"], saved["next"]["k"])
    else:
        st = _State(Archive(s.lam, s.alpha0, linear=not s.archive))
    result = EvolveResult(st.archive)

    def save() -> None:
        if checkpoint is not None:
            _write_atomic(checkpoint, st.dump(fingerprint))

    def key(gen: int) -> int:
        return gen if s.resample_minibatch else 0

    def created(entry: Entry) -> None:
        st.archive.add(entry)
        result.new.append(entry)
        save()
        if on_candidate is not None:
            on_candidate(entry)

    # Linear search has no population: its G x K candidates are G x K one-child generations.
    n_gen, n_kids = (s.generations, s.children) if s.archive else (s.generations * s.children, 1)
    try:
        if not st.archive.entries:
            score, items = score_fn(initial_prompt, key(0))
            created(Entry(f"{id_prefix}g0-0", initial_prompt, None, 0, score,
                          feedback=balance(items, s.feedback_per_side), meta={"depth": 0}))
        while st.gen <= n_gen:
            while st.k < n_kids:
                rng = random.Random(derive_seed(seed, "select", st.gen, st.k))
                parent = st.archive.select_parent(rng, before=st.gen)
                text = propose_fn(parent, st.archive, derive_seed(seed, "propose", st.gen, st.k))
                score, items = score_fn(text, key(st.gen))
                ref = score_fn(parent.text, key(st.gen))[0] if s.resample_minibatch else parent.score
                entry = Entry(f"{id_prefix}g{st.gen}-{st.k}", text, parent.id, st.gen, score,
                              admitted=admits(score, ref, s.tolerance),
                              feedback=balance(items, s.feedback_per_side),
                              meta={"depth": parent.meta.get("depth", 0) + 1, "parent_score_ref": ref})
                st.k += 1
                created(entry)
            st.gen, st.k = st.gen + 1, 0
            save()
    except BudgetExceeded:
        st.stopped = result.stopped = "budget"
        if st.archive.entries:
            save()
        else:  # not even the root was scored: return it unscored, and checkpoint nothing
            st.archive.entries.append(Entry(f"{id_prefix}g0-0", initial_prompt, None, 0, None))
    return result
