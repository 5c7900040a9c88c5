"""The archive of candidates and DGM-style parent selection.

Selection (as in the Darwin Goedel Machine, jennyzzt/dgm, which SePO follows): an admitted candidate
is drawn with probability proportional to sigmoid(lam * (score - alpha0)) / (1 + children).
`children` counts every child proposed from a candidate, admitted or not (DGM counts only the
archived ones; counting all attempts keeps a high-scoring node whose children keep failing from
monopolising the search). As in DGM, the K parents of generation g are drawn from the archive as it
stood when g started, so siblings never parent each other. Linear mode (the no-archive ablation) never
samples: the parent is always the latest admitted candidate, and the loop admits every scored child there,
so that is the latest child even when it is worse. Skipped proposals (unusable replies, duplicates) are
kept for the record with admitted=False and no score.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from sepo.feedback import FeedbackItem, truncate


@dataclass
class Entry:
    id: str
    text: str
    parent_id: str | None
    generation: int  # the evolution step that produced it (root: 0)
    score: float | None  # None only for a root that could not be scored (budget)
    admitted: bool = True
    children: int = 0
    feedback: list[FeedbackItem] = field(default_factory=list)  # balanced, on its scoring minibatch
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["feedback"] = [f.to_dict() for f in self.feedback]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        d = dict(d)
        d["feedback"] = [FeedbackItem.from_dict(f) for f in d.get("feedback", [])]
        return cls(**d)


def admits(child_score: float, parent_score: float | None, tolerance: float | None) -> bool:
    """A child enters if score >= parent_score - tolerance (tolerance None: keep every child).

    A 1e-9 slack absorbs float error, so a child exactly at the boundary is admitted.
    """
    if tolerance is None or parent_score is None:
        return True
    return child_score >= parent_score - tolerance - 1e-9


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@dataclass
class Archive:
    lam: float = 10.0
    alpha0: float = 0.5
    linear: bool = False
    entries: list[Entry] = field(default_factory=list)  # every candidate, in creation order

    def __getitem__(self, cid: str) -> Entry:
        for e in self.entries:
            if e.id == cid:
                return e
        raise KeyError(cid)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def admitted(self) -> list[Entry]:
        return [e for e in self.entries if e.admitted]

    def find(self, text: str) -> Entry | None:
        """The earliest non-skipped candidate with this text (whitespace at the ends ignored)."""
        want = text.strip()
        return next((e for e in self.entries if not e.meta.get("skipped") and e.text.strip() == want), None)

    def add(self, entry: Entry) -> None:
        if entry.parent_id is not None:
            self[entry.parent_id].children += 1
        self.entries.append(entry)

    def weights(self, before: int | None = None) -> list[tuple[Entry, float]]:
        """Selection weights of admitted candidates; with `before`, the archive as it stood when
        generation `before` started (only earlier candidates, and children counted among them)."""
        pool = [e for e in self.entries if before is None or e.generation < before]
        kids: dict[str, int] = {}
        for e in pool:
            if e.parent_id is not None:
                kids[e.parent_id] = kids.get(e.parent_id, 0) + 1
        return [(e, sigmoid(self.lam * ((e.score or 0.0) - self.alpha0)) / (1 + kids.get(e.id, 0)))
                for e in pool if e.admitted]

    def select_parent(self, rng: random.Random, before: int | None = None) -> Entry:
        """DGM sampling (see the module docstring); linear mode: the latest admitted candidate."""
        if self.linear:
            if not self.admitted:
                raise ValueError("the archive has no admitted candidate to select")
            return self.admitted[-1]
        pairs = self.weights(before)
        if not pairs:
            raise ValueError("the archive has no admitted candidate to select")
        return rng.choices([e for e, _ in pairs], weights=[w for _, w in pairs], k=1)[0]

    def best(self) -> Entry:
        """Highest score among admitted candidates; ties go to the earliest."""
        pool = [e for e in self.admitted if e.score is not None] or self.entries[:1]
        return max(pool, key=lambda e: (e.score if e.score is not None else -1.0, -self.entries.index(e)))

    def ranked(self) -> list[Entry]:
        """Admitted and scored candidates, best first (ties: earlier first)."""
        scored = [(i, e) for i, e in enumerate(self.admitted) if e.score is not None]
        return [e for _, e in sorted(scored, key=lambda p: (-(p[1].score or 0.0), p[0]))]

    def summary(self, exclude: str | None = None, top_n: int = 5, max_chars: int = 1200) -> str:
        """The top-N other admitted candidates with scores, for the prompt agent to read."""
        if self.linear:
            return "(no archive in this run)"
        rows = [e for e in self.ranked() if e.id != exclude][:top_n]
        if not rows:
            return "(no other candidates yet)"
        return "\n\n".join(f"## {e.id} (score {e.score:.3f}, generation {e.generation})\n"
                           f"<candidate>\n{truncate(e.text, max_chars)}\n</candidate>" for e in rows)

    def to_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "alpha0": self.alpha0, "linear": self.linear,
                "entries": [e.to_dict() for e in self.entries]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Archive:
        return cls(d["lam"], d["alpha0"], d["linear"], [Entry.from_dict(e) for e in d["entries"]])
