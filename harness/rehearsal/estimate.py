"""What the real run will cost, from a rehearsal's ledgers (results.json rows: per-cell `usage` and
`test_usage`, by role), at the config's prices and concurrency and a given endpoint latency.

Requests are the paid ones (cache hits excluded). Wall time is given two ways: the floor (each role's
requests x latency / its max_concurrency, the slower role) and the rehearsal's own wall time scaled by
endpoint latency / rehearsal latency, which keeps the run's sequential parts (a cell's proposer calls).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness.config import ExperimentConfig

ROLES = ("task", "prompt")


def _add(acc: dict[str, float], u: dict[str, Any] | None) -> None:
    for k in ("requests", "prompt_tokens", "completion_tokens", "evaluations"):
        acc[k] += float((u or {}).get(k, 0) or 0)


def tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """{"roles": role -> counts, "methods": method -> role -> counts, "cells"/"stopped": method -> n}."""
    roles: dict[str, dict[str, float]] = {r: defaultdict(float) for r in ROLES}
    methods: dict[str, dict[str, dict[str, float]]] = {}
    cells: dict[str, int] = defaultdict(int)
    stopped: dict[str, int] = defaultdict(int)
    for row in rows:
        m = str(row.get("method"))
        cells[m] += 1
        stopped[m] += bool(row.get("stopped"))
        per = methods.setdefault(m, {r: defaultdict(float) for r in ROLES})
        for key in ("usage", "test_usage"):
            for role in ROLES:
                u = (row.get(key) or {}).get(role)
                _add(roles[role], u)
                _add(per[role], u)
    return {"roles": roles, "methods": methods, "cells": dict(cells), "stopped": dict(stopped)}


def usd(cfg: ExperimentConfig, role: str, counts: dict[str, float]) -> float:
    ep = getattr(cfg.llm, role)
    return (counts["prompt_tokens"] * ep.price_input_per_m + counts["completion_tokens"] * ep.price_output_per_m) / 1e6


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


def render(cfg: ExperimentConfig, rows: list[dict[str, Any]], *, latency_s: float, rehearsal_wall_s: float,
           rehearsal_latency_s: float) -> str:
    t = tally(rows)
    lines = [f"Estimate of the real run ({len(rows)} cells, from the rehearsal's ledgers; prices from the config):"]
    total = 0.0
    for role in ROLES:
        c, ep = t["roles"][role], getattr(cfg.llm, role)
        cost = usd(cfg, role, c)
        total += cost
        lines.append(f"  {role:6s} {ep.model}: {int(c['requests']):,} requests, {int(c['prompt_tokens']):,} input + "
                     f"{int(c['completion_tokens']):,} output tokens, ${cost:,.2f}")
    unpriced = [r for r in ROLES if not (getattr(cfg.llm, r).price_input_per_m
                                         or getattr(cfg.llm, r).price_output_per_m)]
    note = f" (the config sets no prices for: {', '.join(unpriced)})" if unpriced else ""
    lines.append(f"  total ${total:,.2f}{note}")
    lines.append("  per method (requests task/prompt, tokens, $, cells stopped on budget):")
    for m, per in sorted(t["methods"].items()):
        tok = sum(per[r]["prompt_tokens"] + per[r]["completion_tokens"] for r in ROLES)
        cost = sum(usd(cfg, r, per[r]) for r in ROLES)
        lines.append(f"    {m:22s} {int(per['task']['requests']):>8,} / {int(per['prompt']['requests']):<6,} "
                     f"{int(tok):>13,} tok  ${cost:>9,.2f}  stopped {t['stopped'].get(m, 0)}/{t['cells'][m]}")
    floor = max(t["roles"][r]["requests"] * latency_s / getattr(cfg.llm, r).max_concurrency for r in ROLES)
    conc = ", ".join(f"{r} {getattr(cfg.llm, r).max_concurrency}" for r in ROLES)
    lines.append(f"  wall time at {latency_s:g} s per request (max_concurrency {conc}): at least {_h(floor)}"
                 + (f"; {_h(rehearsal_wall_s * latency_s / rehearsal_latency_s)} scaled from this rehearsal"
                    if rehearsal_latency_s > 0 else ""))
    return "\n".join(lines)
