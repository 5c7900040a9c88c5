"""What the real run will cost, from a rehearsal: its paid requests per role (as the world saw them), its
cells' ledgers (results.json rows: `usage` and `test_usage` by role) and its shared stages' ledgers
(`shared/stages/*/usage.json`), at the config's prices and concurrency and a given endpoint latency.

Requests are the paid ones (cache hits never reach the world). Wall time is given two ways: the floor (each
role's requests x latency / its max_concurrency, the slower role) and the same at the mean number of
requests the rehearsal kept in flight per role, which keeps the run's sequential parts (a cell's proposer
calls); the latter is printed only when the rehearsal's latency dominated its harness CPU per request.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.config import ExperimentConfig

ROLES = ("task", "prompt")
COUNTS = ("requests", "prompt_tokens", "completion_tokens")


def _add(acc: dict[str, float], u: dict[str, Any] | None) -> None:
    for k in COUNTS:
        acc[k] += float((u or {}).get(k, 0) or 0)


def incomplete(row: dict[str, Any]) -> bool:
    """A finished cell that stopped on budget before its method's schedule ended."""
    if "schedule_complete" in row:
        return row["schedule_complete"] is False
    return bool(row.get("stopped"))


def by_method(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """method -> {role -> counts, "cells", "stopped", "failed"}."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        m = out.setdefault(str(row.get("method")), {**{r: defaultdict(float) for r in ROLES},
                                                     "cells": 0, "stopped": 0, "failed": 0})
        m["cells"] += 1
        if row.get("status", "finished") != "finished":
            m["failed"] += 1
            continue
        m["stopped"] += incomplete(row)
        for key in ("usage", "test_usage"):
            for role in ROLES:
                _add(m[role], (row.get(key) or {}).get(role))
    return out


def stage_usage(run_dir: Path) -> list[dict[str, Any]]:
    """The recorded ledgers of the run's shared stages (pre-training, meta-training), one per stage."""
    out = []
    for p in sorted((run_dir / "shared" / "stages").glob("*/usage.json")):
        try:
            out.append(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out


def usd(cfg: ExperimentConfig, role: str, counts: dict[str, float]) -> float:
    ep = getattr(cfg.llm, role)
    return (counts["prompt_tokens"] * ep.price_input_per_m + counts["completion_tokens"] * ep.price_output_per_m) / 1e6


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


def render(cfg: ExperimentConfig, rows: list[dict[str, Any]], world: dict[str, dict[str, float]], *,
           latency_s: float, in_flight: dict[str, float] | None = None) -> str:
    """The estimate as text; `world` is role -> paid requests and tokens the rehearsal sent."""
    lines = [f"Estimate of the real run at the config's prices ({len(rows)} cells; {cfg.run_dir}):"]
    total = 0.0
    for role in ROLES:
        c, ep = defaultdict(float, world.get(role, {})), getattr(cfg.llm, role)
        cost = usd(cfg, role, c)
        total += cost
        lines.append(f"  {role:6s} {ep.model}: {int(c['requests']):,} requests, {int(c['prompt_tokens']):,} input + "
                     f"{int(c['completion_tokens']):,} output tokens, ${cost:,.2f}")
    unpriced = [r for r in ROLES if not (getattr(cfg.llm, r).price_input_per_m
                                         or getattr(cfg.llm, r).price_output_per_m)]
    note = f" (the config sets no prices for: {', '.join(unpriced)})" if unpriced else ""
    lines.append(f"  total ${total:,.2f}{note}")
    stages = stage_usage(cfg.run_dir)
    if stages:
        req = sum(int(s.get("requests", 0)) for s in stages)
        tok = sum(int(s.get("prompt_tokens", 0)) + int(s.get("completion_tokens", 0)) for s in stages)
        lines.append(f"  shared stages (pre-training, meta-training; once each): {len(stages)} stages, {req:,} "
                     f"requests, {tok:,} tokens, ${sum(float(s.get('usd', 0)) for s in stages):,.2f}")
    lines.append("  per method, cells only (requests task / prompt, tokens, $, cells stopped on budget before "
                 "their schedule ended, failed):")
    for m, per in sorted(by_method(rows).items()):
        tok = sum(per[r]["prompt_tokens"] + per[r]["completion_tokens"] for r in ROLES)
        cost = sum(usd(cfg, r, per[r]) for r in ROLES)
        lines.append(f"    {m:22s} {int(per['task']['requests']):>8,} / {int(per['prompt']['requests']):<7,}"
                     f"{int(tok):>14,} tok ${cost:>10,.2f}  stopped {per['stopped']}/{per['cells']}"
                     + (f"  FAILED {per['failed']}" if per["failed"] else ""))
    floor = max(world.get(r, {}).get("requests", 0) * latency_s / getattr(cfg.llm, r).max_concurrency for r in ROLES)
    conc = ", ".join(f"{r} {getattr(cfg.llm, r).max_concurrency}" for r in ROLES)
    line = f"  wall time at {latency_s:g} s per request (max_concurrency {conc}): at least {_h(floor)}"
    if in_flight:
        paced = max(world.get(r, {}).get("requests", 0) * latency_s / max(in_flight.get(r, 0.0), 0.05) for r in ROLES)
        mean = ", ".join(f"{r} {in_flight.get(r, 0.0):.1f}" for r in ROLES)
        line += f"; about {_h(paced)} with as many requests in flight as this rehearsal kept ({mean})"
    lines.append(line)
    return "\n".join(lines)
