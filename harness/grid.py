"""The grid of an experiment: which cells run (method x benchmark entry x seed, after the command line's
filters), and the benchmarks they need, opened once with their splits loaded for every seed and one sandbox
for the code benchmarks. Helpers every runner shares: the test split with --limit, the task opener a method
uses for other benchmarks, each role's model and reply caps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.benchmarks.base import Benchmark, Example
from harness.config import BenchmarkConfig, ConfigError, ExperimentConfig
from harness.evaluator import Evaluator
from harness.llm.session import LLMs
from harness.optimizer import OptimizationTask


@dataclass(frozen=True)
class Cell:
    method: str  # the run name in `methods:`
    base: str  # the registered method it runs
    settings: dict[str, Any]
    bench: BenchmarkConfig
    seed: int

    @property
    def label(self) -> str:
        return f"{self.method} on {self.bench.name}, seed {self.seed}"

    @property
    def path(self) -> str:
        return f"{self.method}/{entry_key(self.bench).replace(':', '-')}/seed{self.seed}"


def canonical_name(name: str) -> str:
    """The registered benchmark a name or alias means (harness.registry's one normalisation)."""
    from harness.registry import canonical_benchmark

    return canonical_benchmark(name)


def entry_key(b: BenchmarkConfig) -> str:
    """A benchmark entry's name in the grid: the canonical name; custom tasks add their task_name (or file
    stem), so one experiment can hold several (custom:<name>)."""
    key = canonical_name(b.name)
    if key == "custom":
        label = b.options.get("task_name") or Path(str(b.options.get("path", "task"))).stem
        return f"custom:{label}"
    return key


def targets(cfg: ExperimentConfig, *, benchmarks: list[str] | None = None,
            seeds: list[int] | None = None) -> list[tuple[BenchmarkConfig, int]]:
    """The (benchmark entry, seed) pairs to run, benchmark > seed, after --benchmarks / --seed."""
    chosen = cfg.benchmarks
    if benchmarks:
        names = {canonical_name(b.name) for b in cfg.benchmarks} | {entry_key(b) for b in cfg.benchmarks}
        missing = [b for b in benchmarks if canonical_name(b) not in names]
        if missing:
            raise ConfigError(f"--benchmarks names {', '.join(missing)}, which {cfg.source} does not list; "
                              f"choose from {', '.join(b.name for b in cfg.benchmarks)}.")
        want = {canonical_name(x) for x in benchmarks}
        chosen = [b for b in cfg.benchmarks if canonical_name(b.name) in want or entry_key(b) in want]
    run_seeds = cfg.seeds
    if seeds:
        missing_seeds = [s for s in seeds if s not in cfg.seeds]
        if missing_seeds:
            raise ConfigError(f"--seed {missing_seeds[0]} is not among the config's seeds {cfg.seeds}; add it to "
                              f"'seeds' in {cfg.source} or choose one of them.")
        run_seeds = seeds
    return [(b, seed) for b in chosen for seed in run_seeds]


def expand_grid(cfg: ExperimentConfig, *, benchmarks: list[str] | None = None,
                seeds: list[int] | None = None, methods: list[str] | None = None) -> list[Cell]:
    """The cells to run, in order benchmark > seed > method; filters come from --benchmarks / --seed /
    --methods (run names of the config's `methods:`)."""
    from harness.methods import resolve_method

    all_methods = cfg.methods or {"sepo": {}}
    if methods:
        unknown = [m for m in methods if m not in all_methods]
        if unknown:
            raise ConfigError(f"--methods names {', '.join(unknown)}, which {cfg.source} does not list; choose "
                              f"from {', '.join(all_methods)}.")
    methods = {k: v for k, v in all_methods.items() if not methods or k in methods}
    resolved = {run: resolve_method(run, s) for run, s in methods.items()}
    return [Cell(run, base, settings, b, seed) for b, seed in targets(cfg, benchmarks=benchmarks, seeds=seeds)
            for run, (base, settings) in resolved.items()]


@dataclass
class OpenBench:
    cfg: BenchmarkConfig
    bench: Benchmark
    splits: dict[tuple[str, int], list[Example]] = field(default_factory=dict)  # (split, seed) -> examples

    def split(self, name: str, seed: int) -> list[Example]:
        if (name, seed) not in self.splits:
            self.splits[name, seed] = self.bench.load(name, seed)
        return self.splits[name, seed]


@contextmanager
def open_benchmarks(cfg: ExperimentConfig, entries: list[BenchmarkConfig], seeds: list[int],
                    extra: list[str] = (), splits: tuple[str, ...] = ("train", "val", "test"),
                    ) -> Iterator[dict[str, OpenBench]]:
    """Every benchmark (by canonical name) with its splits loaded for every seed, and one sandbox for the
    code benchmarks. `extra` are pool benchmarks methods asked for: built with the config's entry of that
    name when there is one, else with defaults. `splits` are the splits loaded (tuning never loads test).
    Errors name the benchmark entry."""
    from harness.benchmarks import get_benchmark

    if not entries:
        raise ConfigError(f"{cfg.source}: 'benchmarks' is empty; list at least one benchmark.")
    by_name = {entry_key(b): b for b in cfg.benchmarks}
    wanted = {entry_key(b): b for b in entries}
    for name in extra:
        wanted.setdefault(canonical_name(name), by_name.get(canonical_name(name), BenchmarkConfig(name=name)))
    opened: dict[str, OpenBench] = {}
    with ExitStack() as stack:
        sandbox = sandbox_for(cfg, [(b.name, b.options) for b in wanted.values()])
        if sandbox is not None:
            stack.callback(sandbox.close)
        for key, b in wanted.items():
            where = f"{cfg.source}: benchmark '{b.name}'"
            try:
                bench = get_benchmark(b.name, data_dir=cfg.data_dir, sandbox=sandbox, **b.split_options())
                stack.callback(bench.close)
                set_reply_cap(bench, b, cfg)
                ob = OpenBench(b, bench)
                for seed in seeds:
                    for split in splits:
                        ob.split(split, seed)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            opened[key] = ob
        yield opened


def sandbox_for(cfg: ExperimentConfig, names: list[tuple[str, dict]]):
    """A sandbox when any of these benchmarks runs code (built before any model starts), else None."""
    from harness.registry import needs_sandbox

    if not any(needs_sandbox(n, o) for n, o in names):
        return None
    from sandboxes import make_sandbox

    s = cfg.sandbox
    if s.backend == "local" and not s.allow_local:
        raise ConfigError(f"{cfg.source}: sandbox.backend 'local' runs model-written code without isolation; "
                          "set sandbox.allow_local: true to accept that, or use backend: docker.")
    kw = {"allow": True} if s.backend == "local" else {"image": s.image, "pool_size": s.pool_size,
                                                       "build": s.image == "sepo-sandbox:py3"}
    return make_sandbox(s.backend, timeout_s=s.timeout_s, memory_mb=s.memory_mb, **kw)


def set_reply_cap(bench: Benchmark, entry: BenchmarkConfig, cfg: ExperimentConfig) -> None:
    """The task agent's reply cap on this benchmark: the entry's max_tokens, else llm.task.max_tokens when
    the config sets it, else the benchmark's own default (the evaluator uses `bench.reply_cap` as is)."""
    task = cfg.llm.task
    if entry.max_tokens is not None:
        bench.reply_cap = entry.max_tokens
    elif "max_tokens" in task.model_fields_set:
        bench.reply_cap = task.max_tokens


def pools_needed(opt: Any, entry: BenchmarkConfig, held_out: Sequence[str]) -> set[str]:
    """The other benchmarks `opt` will open for the target `entry` (Optimizer.benchmarks_needed)."""
    needed = getattr(opt, "benchmarks_needed", None)
    return set(needed(entry_key(entry), held_out=tuple(held_out))) if needed is not None else set()


def load_limited(ob: OpenBench, seed: int, limit: int | None) -> list[Example]:
    test = ob.split("test", seed)
    if limit is None:
        return test
    if limit > len(test):
        print(f"  --limit {limit}: {ob.bench.name}'s test split holds {len(test)} examples; scoring all "
              f"{len(test)}", flush=True)
        return test
    return test[:limit]


def task_opener(benches: dict[str, OpenBench], task_llm, initial_prompt: str, *, asker: str,
                advice: str = "list it in the method's pool settings"):
    """RunContext.open_task: another opened benchmark's train/val task, scored through `task_llm`. A name
    that was not opened is a ConfigError naming `asker` with `advice`."""

    def open_task(name: str, seed: int) -> OptimizationTask:
        key = canonical_name(name)
        if key not in benches:
            raise ConfigError(f"{asker} asked for benchmark {name!r}, which was not opened before the run; "
                              f"{advice}.")
        ob = benches[key]
        return OptimizationTask(ob.bench.name, ob.bench, ob.split("train", seed), ob.split("val", seed),
                                Evaluator(ob.bench, task_llm, seed=seed), initial_prompt)

    return open_task


def reply_cap(bench: Benchmark, task_llm) -> int | None:
    return Evaluator(bench, task_llm).max_tokens


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object (cell keys, data fingerprints)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_fingerprint(ob: OpenBench, seed: int) -> str:
    return digest({s: [e.id for e in ob.split(s, seed)] for s in ("train", "val", "test")})


def models_of(llms: LLMs) -> dict[str, Any]:
    """The resolved models and sampling settings of both roles."""
    out = {}
    for role, c in (("task", llms.task), ("prompt", llms.prompt)):
        if c is not None:
            e = c.endpoint
            out[role] = {"model": c.model, "embedded": e.embedded, "temperature": e.temperature,
                         "max_tokens": e.max_tokens, "base_url": None if e.embedded else e.base_urls}
    return out


def print_models(llms: LLMs, benches: dict[str, OpenBench] | None = None) -> None:
    """Each role's model; the task agent's reply cap per benchmark (what requests carry), when given."""
    for role, m in models_of(llms).items():
        where = "embedded" if m["embedded"] else ", ".join(m["base_url"])
        caps = ""
        if role == "task" and benches:
            caps = "; reply caps " + ", ".join(f"{k} {reply_cap(ob.bench, llms.task)}" for k, ob in benches.items())
        print(f"{role} model: {m['model']} ({where}), temperature {m['temperature']}"
              + (caps or f", max_tokens {m['max_tokens']}"), flush=True)
