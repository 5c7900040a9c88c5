"""Requests in flight over time, per role: saturation, a text timeline, and the world's own CPU time."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Meter:
    """Events (time, +1 at start / -1 at end) of one server; `limit` is the role's max_concurrency."""

    limit: int
    events: list[tuple[float, int]] = field(default_factory=list)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    busy_s: float = 0.0  # sum of request durations (the latency the endpoint would add)
    world_cpu_s: float = 0.0  # CPU the simulated server itself spent (not the harness's)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> float:
        now = time.monotonic()
        with self.lock:
            self.events.append((now, 1))
            self.requests += 1
        return now

    def end(self, started: float, cpu_s: float, tokens: tuple[int, int] = (0, 0)) -> None:
        now = time.monotonic()
        with self.lock:
            self.prompt_tokens += tokens[0]
            self.completion_tokens += tokens[1]
            self.events.append((now, -1))
            self.busy_s += now - started
            self.world_cpu_s += cpu_s

    def levels(self, t0: float, t1: float, bins: int = 20) -> tuple[list[float], float]:
        """(mean in flight per bin, fraction of [t0, t1] with in flight >= limit)."""
        span = max(t1 - t0, 1e-9)
        width = span / bins
        area = [0.0] * bins
        saturated = 0.0
        level, last = 0, t0
        with self.lock:
            events = sorted(self.events)
        for t, d in [*events, (t1, 0)]:
            t = min(max(t, t0), t1)
            a = last
            while a < t:  # spread the current level over the bins [a, t) touches
                k = min(int((a - t0) / width), bins - 1)
                b = min(t, t0 + (k + 1) * width)
                area[k] += level * (b - a)
                a = b if b > a else t
            if level >= self.limit:
                saturated += t - last
            level, last = level + d, t
        return [x / width for x in area], saturated / span


def timeline(means: list[float], limit: int, width: int = 20) -> str:
    """One line per bin: '  35%  ######....  5.2/8'."""
    out = []
    for k, m in enumerate(means):
        filled = round(width * min(m, limit) / limit)
        out.append(f"  {100 * k // len(means):3d}%  {'#' * filled}{'.' * (width - filled)}  {m:5.1f}/{limit}")
    return "\n".join(out)
