"""The rehearsal world: the task agent's index over every benchmark a run opens, and one server per role.

    with World.for_config(cfg, seeds, extra=pools, latency_s=0.1) as world:
        world.urls["task"], world.urls["prompt"]   # point the endpoints here
        world.summary(t0, t1)                      # in flight over time, CPU, unknown requests
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

from harness.config import BenchmarkConfig, ExperimentConfig
from harness.rehearsal.meter import Meter, timeline
from harness.rehearsal.prompt_agent import PromptAgent
from harness.rehearsal.server import SimServer
from harness.rehearsal.task_agent import TaskAgent

SPLITS = ("train", "val", "test")


def index_benchmark(agent: TaskAgent, key: str, entry: BenchmarkConfig, data_dir: str | None,
                    seeds: Iterable[int]) -> int:
    """Index one benchmark's examples (every split of every seed) by their user message; MBPP with its
    reference code. No sandbox is opened: the world only reads the data."""
    from harness.benchmarks import get_benchmark

    bench = get_benchmark(entry.name, data_dir=data_dir, **entry.split_options())
    refs = {str(r["task_id"]): r.get("code") for r in bench.rows()} if key == "mbpp" else {}
    n = 0
    try:
        for seed in seeds:
            for split in SPLITS:
                for ex in bench.load(split, seed):
                    user = bench.to_messages("", ex)[-1]["content"]
                    agent.add(key, ex, user, refs.get(ex.id))
                    n += 1
    finally:
        bench.close()
    return n


def build_index(cfg: ExperimentConfig, seeds: Iterable[int], extra: Iterable[str] = ()) -> TaskAgent:
    """A task agent that knows the config's benchmarks and the pool benchmarks `extra` (config entry of
    that name when there is one, else defaults), for these seeds."""
    from harness.grid import canonical_name, entry_key

    seeds = list(seeds)
    agent = TaskAgent()
    wanted = {entry_key(b): b for b in cfg.benchmarks}
    by_name = {canonical_name(b.name): b for b in cfg.benchmarks}
    for name in extra:
        key = canonical_name(name)
        wanted.setdefault(key, by_name.get(key, BenchmarkConfig(name=name)))
    for key, entry in wanted.items():
        index_benchmark(agent, key.split(":")[0], entry, cfg.data_dir, seeds)
    return agent


class World:
    def __init__(self, task: TaskAgent, limits: dict[str, int], *, latency_s: float = 0.0,
                 jitter: float = 0.0, models: dict[str, str] | None = None) -> None:
        self.task, self.prompt = task, PromptAgent()
        self.meters = {role: Meter(limits.get(role, 1)) for role in ("task", "prompt")}
        models = models or {}
        self.servers = {role: SimServer(agent, self.meters[role], latency_s=latency_s, jitter=jitter,
                                        model=models.get(role) or f"simulated-{role}")
                        for role, agent in (("task", self.task), ("prompt", self.prompt))}
        self._stack = ExitStack()
        self.cpu0 = time.process_time()

    @classmethod
    def for_config(cls, cfg: ExperimentConfig, seeds: Iterable[int], extra: Iterable[str] = (),
                   **kw: Any) -> World:
        limits = {"task": cfg.llm.task.max_concurrency, "prompt": cfg.llm.prompt.max_concurrency}
        models = {"task": cfg.llm.task.model, "prompt": cfg.llm.prompt.model}
        return cls(build_index(cfg, seeds, extra), limits, models=models, **kw)

    @property
    def urls(self) -> dict[str, str]:
        return {role: s.url for role, s in self.servers.items()}

    def __enter__(self) -> World:
        for s in self.servers.values():
            self._stack.enter_context(s)
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def summary(self, t0: float, t1: float, bins: int = 20) -> dict[str, Any]:
        """Per role: requests, saturation share and timeline over [t0, t1]; harness CPU per request (the
        process's CPU minus the world's own); the ideal wall time (busy time / concurrency, worst role)."""
        out: dict[str, Any] = {"wall_s": t1 - t0, "roles": {}}
        world_cpu = sum(m.world_cpu_s for m in self.meters.values())
        requests = sum(m.requests for m in self.meters.values())
        for role, m in self.meters.items():
            means, sat = m.levels(t0, t1, bins)
            out["roles"][role] = {"requests": m.requests, "prompt_tokens": m.prompt_tokens,
                                  "completion_tokens": m.completion_tokens, "limit": m.limit, "saturated": sat,
                                  "mean_in_flight": sum(means) / len(means), "timeline": timeline(means, m.limit),
                                  "ideal_s": m.busy_s / m.limit}
        harness_cpu = time.process_time() - self.cpu0 - world_cpu
        out["harness_cpu_s"] = harness_cpu
        out["cpu_per_request_ms"] = 1000 * harness_cpu / requests if requests else 0.0
        out["ideal_s"] = max(r["ideal_s"] for r in out["roles"].values())
        out["unknown_prompt_requests"] = self.prompt.kinds.get("unknown", 0)
        out["prompt_kinds"] = dict(self.prompt.kinds)
        out["unmatched_task_requests"] = self.task.misses
        return out
