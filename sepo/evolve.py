"""One evolution procedure over "a prompt and how to score it", used by both SePO stages.

Each generation g: its K parents are drawn from the archive as it stood when g started (DGM sampling; or,
linear, the latest candidate); the examples shown to the prompt agent as feedback on those parents are set
aside, and a fresh minibatch draw for g is made from the rest, so a child is never judged on the examples
its feedback showed. Each parent gets a child from the proposer; a child is scored on g's draw and admitted
if it is not worse than its parent re-scored on the same draw (paired) beyond a tolerance. Linear search
(the no-archive ablation) admits every child: the next step always extends the latest one, even when worse.

A proposal the prompt agent could not deliver (truncated or untagged twice) or that duplicates an archive
member is recorded as a skipped candidate: never scored, never admitted, never a parent.

The state is checkpointed atomically (JSON, harness.files.write_atomic) after every candidate. All randomness of a
step is derived from (seed, generation, child index), so a resumed run makes exactly the requests an
uninterrupted one makes, and the response cache answers those already paid for. A checkpoint written by a
run that differs in anything that changes results (its fingerprint) is refused with CheckpointMismatch.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.config import ConfigError
from harness.files import write_atomic
from harness.llm.usage import BudgetExceeded
from harness.optimizer import GenerationEnd, GenerationSink, StopCheck, StopRequested
from harness.seeds import derive_seed
from sepo.agent import Proposal
from sepo.archive import Archive, Entry, admits
from sepo.feedback import FeedbackItem

CHECKPOINT_VERSION = 2


class CheckpointMismatch(ConfigError):
    """A checkpoint written by a run that differs from this one (models, data, settings, ...)."""


@dataclass(frozen=True)
class Draw:
    """Which examples a score may use: generation g's fresh draw, minus the ids in `exclude` (the feedback
    examples shown to this generation's children)."""

    gen: int
    exclude: frozenset[str] = frozenset()


@dataclass
class Scored:
    score: float
    feedback: list[FeedbackItem]  # what a child of this candidate will be shown (already balanced)
    example_ids: list[str]  # what the score was judged on
    meta: dict[str, Any] = field(default_factory=dict)  # recorded with the candidate (e.g. per-task scores)


ScoreFn = Callable[[str, Draw], Scored]
ProposeFn = Callable[[Entry, Archive, int], Proposal]  # (parent, archive, step seed) -> the agent's proposal
EntrySink = Callable[[Entry], None]
Meter = Callable[[], dict[str, float]]  # a snapshot of what the run has spent so far


class EvolveSettings(BaseModel):
    """Search settings; defaults follow the paper (5 x 2 candidates, minibatch 16) and DGM (lam, alpha0)."""

    model_config = ConfigDict(extra="forbid")

    generations: int = Field(5, ge=0, description="G: evolution steps")
    children: int = Field(2, ge=1, description="K: children per generation")
    minibatch: int = Field(16, ge=1, description="examples a candidate is scored on (a fresh draw per "
                           "generation, without the examples its feedback showed)")
    paired_admission: bool = Field(
        True, description="True: a child is compared with its parent re-scored on the child's draw (paired, "
        "costs one parent evaluation per parent and generation); False: with the parent's own recorded score")
    lam: float = Field(10.0, description="DGM selection: sigmoid slope")
    alpha0: float = Field(0.5, description="DGM selection: sigmoid midpoint")
    tolerance: float | None = Field(
        0.0, ge=0.0, description="admit a child if score >= parent score - tolerance; 0 = must not be "
        "worse (ties enter); None = keep every child (DGM's default). SePO's value is unpublished")
    archive: bool = Field(True, description="False = linear search (no-archive ablation): G*K one-child "
                          "generations, each extending the latest child, even a worse one; no archive shown")
    archive_top_n: int = Field(5, ge=0, description="other candidates shown to the prompt agent")
    feedback_per_side: int = Field(3, ge=0, description="failures and successes shown (1:1 each)")
    excerpt_chars: int = Field(800, ge=50, description="truncation of questions and responses")

    @property
    def shape(self) -> tuple[int, int]:
        """(generations, children per generation) as the loop runs them."""
        return (self.generations, self.children) if self.archive else (self.generations * self.children, 1)


@dataclass
class EvolveResult:
    archive: Archive
    stopped: str | None = None  # "budget" when a cap ended the run early, else should_stop's reason
    new: list[Entry] = field(default_factory=list)  # candidates created by this call (not restored)

    @property
    def best(self) -> Entry:
        return self.archive.best()


class _State:
    def __init__(self, archive: Archive, gen: int = 1, k: int = 0, refs: dict[str, float] | None = None) -> None:
        self.archive, self.gen, self.k, self.refs = archive, gen, k, dict(refs or {})
        self.stopped: str | None = None

    def dump(self, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "run": fingerprint, "next": {"gen": self.gen, "k": self.k},
                "stopped": self.stopped, "refs": self.refs, "archive": self.archive.to_dict()}


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths where two JSON values differ (leaves, or a key present in one only)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{k}" if path else str(k)
            out += [sub] if (k in old) != (k in new) else differences(old[k], new[k], sub)
        return out
    return [] if old == new else [path or "(everything)"]


def check_checkpoint(saved: dict[str, Any], fingerprint: dict[str, Any], path: Path) -> None:
    """Raise CheckpointMismatch (one sentence saying what differs) unless `saved` is this run's checkpoint."""
    if saved.get("version") != CHECKPOINT_VERSION:
        raise CheckpointMismatch(f"The checkpoint {path} was written by another version of SePO (format "
                                 f"{saved.get('version')}, now {CHECKPOINT_VERSION}), so it cannot be resumed; "
                                 "start fresh or use another checkpoint directory.")
    diff = differences(saved.get("run"), fingerprint)
    if diff:
        shown = ", ".join(d.removeprefix("run_key.") for d in diff[:4]) + (" ..." if len(diff) > 4 else "")
        raise CheckpointMismatch(f"The checkpoint {path} belongs to a different run ({shown} changed), so "
                                 "resuming it would mix results; start fresh, or restore those settings to "
                                 "resume.")


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0), 6) for k in after}


def evolve(initial_prompt: str, score_fn: ScoreFn, propose_fn: ProposeFn, settings: EvolveSettings, *,
           seed: int, checkpoint: Path | None = None, on_candidate: EntrySink | None = None,
           id_prefix: str = "", run_key: dict[str, Any] | None = None, meter: Meter | None = None,
           stage: str = "", on_generation_end: GenerationSink | None = None,
           should_stop: StopCheck | None = None) -> EvolveResult:
    """Run (or resume) G x K evolution steps from `initial_prompt`; stop cleanly on BudgetExceeded, or when
    `should_stop()` (asked before each proposal) gives a reason: `stopped` is then that reason.

    `on_candidate` sees each candidate once, when it is created; candidates restored from a
    checkpoint are not reported again (they are in the result's archive); `on_generation_end` hears each
    generation this call finishes (the root's is 0). `run_key` holds whatever
    else identifies the run (task, models, data, prompt-agent prompt): a checkpoint of another run is
    refused with CheckpointMismatch. `meter` snapshots spending, to record each candidate's cost.
    """
    s = settings
    fingerprint = {"seed": seed, "initial_prompt": initial_prompt, "id_prefix": id_prefix, "stage": stage,
                   "settings": s.model_dump(exclude={"generations"}),  # G may grow on resume
                   "run_key": json.loads(json.dumps(run_key or {}, default=str))}
    saved = load_checkpoint(checkpoint) if checkpoint else None
    if saved is not None:
        check_checkpoint(saved, fingerprint, checkpoint)
        st = _State(Archive.from_dict(saved["archive"]), saved["next"]["gen"], saved["next"]["k"], saved["refs"])
    else:
        st = _State(Archive(s.lam, s.alpha0, linear=not s.archive))
    result = EvolveResult(st.archive)
    snap = meter or (lambda: {})

    def save() -> None:
        if checkpoint is not None:
            write_atomic(checkpoint, json.dumps(st.dump(fingerprint), ensure_ascii=False, indent=1), fsync=True)

    def created(entry: Entry) -> None:
        st.archive.add(entry)
        result.new.append(entry)
        save()
        if on_candidate is not None:
            on_candidate(entry)

    def parents_of(gen: int) -> tuple[list[Entry], Draw]:
        """Generation `gen`'s parents (the archive as it stood when it started) and its draw."""
        parents = [st.archive.select_parent(random.Random(derive_seed(seed, "select", gen, k)), before=gen)
                   for k in range(n_kids)]
        shown = {f.example_id for p in parents for f in p.feedback if f.kind == "example"}
        return parents, Draw(gen, frozenset(shown))

    def reference(parent: Entry, draw: Draw) -> float | None:
        """The parent's score to beat: re-scored on the child's draw (paired), once per generation."""
        if not s.paired_admission or parent.score is None:
            return parent.score
        key = f"{parent.id}@{draw.gen}"
        if key not in st.refs:
            st.refs[key] = score_fn(parent.text, draw).score
        return st.refs[key]

    def generation_end(gen: int) -> None:
        if on_generation_end is not None:
            on_generation_end(GenerationEnd(gen, stage))

    def check_stop() -> None:
        reason = should_stop() if should_stop is not None else None
        if reason:
            raise StopRequested(reason)

    n_gen, n_kids = s.shape
    try:
        if not st.archive.entries:
            t0 = snap()
            sc = score_fn(initial_prompt, Draw(0))
            created(Entry(f"{id_prefix}g0-0", initial_prompt, None, 0, sc.score, feedback=sc.feedback,
                          meta={"depth": 0, "stage": stage, "example_ids": sc.example_ids, "draw": 0,
                                **sc.meta, "cost": _delta(t0, snap())}))
            generation_end(0)
        while st.gen <= n_gen:
            parents, draw = parents_of(st.gen)
            while st.k < n_kids:
                check_stop()
                parent = parents[st.k]
                t0 = snap()
                prop = propose_fn(parent, st.archive, derive_seed(seed, "propose", st.gen, st.k))
                meta: dict[str, Any] = {"depth": parent.meta.get("depth", 0) + 1, "stage": stage,
                                        "agent_reply": prop.reply, "draw": st.gen}
                if len(prop.replies) > 1:
                    meta["agent_replies"] = prop.replies
                    meta["retried"] = prop.problems[0]
                dup = st.archive.find(prop.text) if prop.text is not None else None
                eid = f"{id_prefix}g{st.gen}-{st.k}"
                if prop.text is None or dup is not None:
                    meta["skipped"] = prop.skipped if prop.text is None else f"duplicate of {dup.id}"
                    meta["cost"] = _delta(t0, snap())
                    entry = Entry(eid, prop.text or "", parent.id, st.gen, None, admitted=False, meta=meta)
                else:
                    sc = score_fn(prop.text, draw)
                    if s.archive:
                        ref = reference(parent, draw)
                        admitted = admits(sc.score, ref, s.tolerance)
                    else:  # linear search extends the latest child, whatever its score
                        ref, admitted = parent.score, True
                    meta.update({"example_ids": sc.example_ids, "parent_score_ref": ref, **sc.meta,
                                 "cost": _delta(t0, snap())})
                    entry = Entry(eid, prop.text, parent.id, st.gen, sc.score, admitted=admitted,
                                  feedback=sc.feedback, meta=meta)
                st.k += 1
                created(entry)
            st.gen, st.k = st.gen + 1, 0
            save()
            generation_end(st.gen - 1)
    except (BudgetExceeded, StopRequested) as exc:
        st.stopped = result.stopped = exc.reason if isinstance(exc, StopRequested) else "budget"
        if st.archive.entries:
            save()
        else:  # not even the root was scored: return it unscored, and checkpoint nothing
            st.archive.entries.append(Entry(f"{id_prefix}g0-0", initial_prompt, None, 0, None,
                                            meta={"depth": 0, "stage": stage, "skipped": "budget"}))
    return result
