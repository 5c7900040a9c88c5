"""Usage accounting per role and per run, and budget caps that stop work cleanly.

The one usage counter: a ledger's `snapshot()` and `since(mark)` (or `snapshot_of(*ledgers)` over several,
each counted once) say what was spent between two points, e.g. to cost one candidate or one stage."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field

from harness.errors import UserError


class BudgetExceeded(UserError, RuntimeError):
    """Raised before a request that a budget cap forbids; finished work is kept by the caller."""


@dataclass
class Usage:
    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    retries: int = 0
    evaluations: int = 0  # examples scored (one per example per evaluate call): the budget unit shared by methods
    cached_tokens: int = 0  # tokens of the replies the cache answered (not paid)
    cached_usd: float = 0.0  # what those replies would have cost

    COUNTS = ("requests", "cache_hits", "tokens", "usd", "evaluations")

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, float]:
        out = {k: v for k, v in asdict(self).items() if not k.startswith("cached_")}
        return {**out, "tokens": self.tokens}

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in _FIELDS})

    def __sub__(self, other: Usage) -> Usage:
        return Usage(**{k: getattr(self, k) - getattr(other, k) for k in _FIELDS})

    def counts(self) -> dict[str, float]:
        """requests, cache_hits, tokens, usd, evaluations (as floats)."""
        return {k: float(getattr(self, k)) for k in self.COUNTS}

    def used(self) -> dict[str, float]:
        """Every reply, cached or not (a tuning trial's cost must not depend on what earlier runs cached):
        tokens, usd, requests and evaluations."""
        return {"tokens": float(self.tokens + self.cached_tokens), "usd": self.usd + self.cached_usd,
                "requests": float(self.requests + self.cache_hits), "evaluations": float(self.evaluations)}


_FIELDS = ("requests", "cache_hits", "prompt_tokens", "completion_tokens", "usd", "retries", "evaluations",
           "cached_tokens", "cached_usd")


def snapshot_of(*ledgers: Ledger) -> Usage:
    """The totals of several ledgers, each distinct ledger counted once (a child forwards to its parent, so
    pass ledgers that are not each other's ancestors)."""
    seen: list[Ledger] = []
    for led in ledgers:
        if all(led is not x for x in seen):
            seen.append(led)
    total = Usage()
    for led in seen:
        total = total + led.snapshot()
    return total


@dataclass
class Budget:
    max_requests: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None
    max_evaluations: int | None = None


@dataclass
class Ledger:
    """Shared by every client of a run: totals per role, checked against one budget.

    A child ledger (`child()`, one per experiment cell) has a budget of its own and forwards
    everything it records to its parent, so the run's totals and caps still hold.
    """

    budget: Budget = field(default_factory=Budget)
    by_role: dict[str, Usage] = field(default_factory=dict)
    started: int = 0
    parent: Ledger | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def role(self, name: str) -> Usage:
        with self._lock:
            return self.by_role.setdefault(name, Usage())

    @property
    def total(self) -> Usage:
        with self._lock:
            t = Usage()
            for u in self.by_role.values():
                for k in _FIELDS:
                    setattr(t, k, getattr(t, k) + getattr(u, k))
            return t

    def snapshot(self) -> Usage:
        """The totals now (a mark for `since`)."""
        return self.total

    def since(self, mark: Usage) -> Usage:
        """What was recorded after `mark` (a snapshot of this ledger)."""
        return self.total - mark

    def child(self, budget: Budget | None = None) -> Ledger:
        """A ledger for one part of the run (a cell) with its own caps; totals also reach this one."""
        return Ledger(budget or Budget(), parent=self)

    def start_evaluations(self, role: str, n: int) -> None:
        """Reserve n example evaluations, or raise BudgetExceeded if that would pass a cap."""
        for led in self._chain():
            led._check_evaluations(n)
        self._add(role, evaluations=n)

    def _check_evaluations(self, n: int) -> None:
        cap = self.budget.max_evaluations
        done = self.total.evaluations
        if cap is not None and done + n > cap:
            raise BudgetExceeded(f"budget reached: {done} example evaluations, {n} more would pass the cap {cap}")

    def evaluations_left(self) -> int | None:
        """Example evaluations this ledger and its parents still allow (None: no cap)."""
        left = [led.budget.max_evaluations - led.total.evaluations for led in self._chain()
                if led.budget.max_evaluations is not None]
        return min(left) if left else None

    def _chain(self) -> list[Ledger]:
        out, led = [], self
        while led is not None:
            out.append(led)
            led = led.parent
        return out

    def start_request(self) -> None:
        if self.parent is not None:
            self.parent.start_request()
        self._start_request()

    def _start_request(self) -> None:
        """Reserve one paid request, or raise BudgetExceeded if a cap has been reached.

        Requests are counted when they start, so concurrent calls never pass the request cap;
        token and dollar caps are checked against finished requests (in-flight ones may overshoot).
        """
        t, b = self.total, self.budget
        if b.max_tokens is not None and t.tokens >= b.max_tokens:
            raise BudgetExceeded(f"budget reached: {t.tokens} tokens (cap {b.max_tokens})")
        if b.max_usd is not None and t.usd >= b.max_usd:
            raise BudgetExceeded(f"budget reached: ${t.usd:.4f} (cap ${b.max_usd})")
        with self._lock:
            if b.max_requests is not None and self.started >= b.max_requests:
                raise BudgetExceeded(f"budget reached: {self.started} requests (cap {b.max_requests})")
            self.started += 1

    def _add(self, role: str, **amounts: float) -> None:
        """Add `amounts` (Usage fields) to `role` on this ledger and its parents; no cap is checked."""
        for led in self._chain():
            u = led.role(role)
            with led._lock:
                for k, v in amounts.items():
                    setattr(u, k, getattr(u, k) + v)

    def record(self, role: str, prompt_tokens: int, completion_tokens: int, usd: float) -> None:
        self._add(role, requests=1, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, usd=usd)

    def charge(self, role: str, spent: Usage) -> None:
        """Count work done before (a resumed cell's or stage's restored work) on this ledger and its
        parents, under `role`; no cap is checked (the next request or evaluation checks it)."""
        self._add(role, **{k: getattr(spent, k) for k in _FIELDS})

    def record_hit(self, role: str, tokens: int = 0, usd: float = 0.0) -> None:
        """A reply the cache answered: no request paid; its tokens and price are kept apart (Usage.used)."""
        self._add(role, cache_hits=1, cached_tokens=tokens, cached_usd=usd)

    def record_retry(self, role: str) -> None:
        self._add(role, retries=1)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {r: u.as_dict() for r, u in self.by_role.items()}
        out["total"] = self.total.as_dict()
        return out
