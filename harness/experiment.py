"""The experiment runner: every cell (method x benchmark x seed) of an experiment file, tracked and resumable.

Before any request: methods and their settings are built, every benchmark a cell needs (targets and the
pools methods ask for) is opened with the config's options and sandbox and its splits loaded for every
seed, the tracking store is reached, and API keys and endpoints are checked (`open_llms`).

Per cell: a child ledger with the experiment's `budget_per_cell` (the same for every method), the
optimizer on train/val, then the best prompt and the initial prompt scored on test on a ledger of their
own (so test scoring always runs). A finished cell is written at once (results.json, its per-example
records, its MLflow run); a rerun skips finished cells and resumes unfinished ones from their checkpoints,
and the response cache answers every request already paid for.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.benchmarks.base import Benchmark, Example
from harness.config import BenchmarkConfig, ConfigError, ExperimentConfig
from harness.evaluator import EvalResult, Evaluator, Record
from harness.llm.session import LLMs
from harness.llm.usage import Budget
from harness.optimizer import Candidate, OptimizationTask, RunContext


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
    from harness.benchmarks import ALIASES

    key = name.strip().lower()
    return ALIASES.get(key, key)


def entry_key(b: BenchmarkConfig) -> str:
    """A benchmark entry's name in the grid: the canonical name; custom tasks add their task_name (or file
    stem), so one experiment can hold several (custom:<name>)."""
    key = canonical_name(b.name)
    if key == "custom":
        label = b.options.get("task_name") or Path(str(b.options.get("path", "task"))).stem
        return f"custom:{label}"
    return key


def expand_grid(cfg: ExperimentConfig, *, benchmarks: list[str] | None = None,
                seeds: list[int] | None = None) -> list[Cell]:
    """The cells to run, in order benchmark > seed > method; filters come from --benchmarks / --seed."""
    from harness.methods import resolve_method

    methods = cfg.methods or {"sepo": {}}
    resolved = {run: resolve_method(run, s) for run, s in methods.items()}
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
    return [Cell(run, base, settings, b, seed) for b in chosen for seed in run_seeds
            for run, (base, settings) in resolved.items()]


def sandbox_for(cfg: ExperimentConfig, names: list[tuple[str, dict]]):
    """A sandbox when any of these benchmarks runs code (built before any model starts), else None."""
    def runs_code(name: str, options: dict) -> bool:
        key = canonical_name(name)
        return key == "mbpp" or (key == "custom" and options.get("scorer") == "python")

    if not any(runs_code(n, o) for n, o in names):
        return None
    from sandboxes import make_sandbox

    s = cfg.sandbox
    if s.backend == "local" and not s.allow_local:
        raise ConfigError(f"{cfg.source}: sandbox.backend 'local' runs model-written code without isolation; "
                          "set sandbox.allow_local: true to accept that, or use backend: docker.")
    kw = {"allow": True} if s.backend == "local" else {"image": s.image, "pool_size": s.pool_size,
                                                       "build": s.image == "sepo-sandbox:py3"}
    return make_sandbox(s.backend, timeout_s=s.timeout_s, memory_mb=s.memory_mb, **kw)


@dataclass
class OpenBench:
    cfg: BenchmarkConfig
    bench: Benchmark
    splits: dict[tuple[str, int], list[Example]] = field(default_factory=dict)  # (split, seed) -> examples

    def split(self, name: str, seed: int) -> list[Example]:
        if (name, seed) not in self.splits:
            self.splits[name, seed] = self.bench.load(name, seed)
        return self.splits[name, seed]


def pools_needed(opt: Any, entry: BenchmarkConfig, held_out: Sequence[str]) -> set[str]:
    """The other benchmarks `opt` will open for the target `entry` (Optimizer.benchmarks_needed)."""
    needed = getattr(opt, "benchmarks_needed", None)
    return set(needed(entry_key(entry), held_out=tuple(held_out))) if needed is not None else set()


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
                ob = OpenBench(b, bench)
                for seed in seeds:
                    for split in splits:
                        ob.split(split, seed)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            opened[key] = ob
        yield opened


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_fingerprint(ob: OpenBench, seed: int) -> str:
    return _sha({s: [e.id for e in ob.split(s, seed)] for s in ("train", "val", "test")})


def code_version(root: Path) -> dict[str, Any]:
    """The git commit of the project and whether the work tree had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD") or "unknown"
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", False
    from harness import __version__

    return {"commit": commit, "dirty": dirty, "version": __version__}


def models_of(llms: LLMs) -> dict[str, Any]:
    """The resolved models and sampling settings of both roles."""
    out = {}
    for role, c in (("task", llms.task), ("prompt", llms.prompt)):
        if c is not None:
            e = c.endpoint
            out[role] = {"model": c.model, "embedded": e.embedded, "temperature": e.temperature,
                         "max_tokens": e.max_tokens, "base_url": None if e.embedded else e.base_urls}
    return out


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_records(path: Path, records: list[Record]) -> None:
    _write_atomic(path, "".join(json.dumps(asdict(r), default=str) + "\n" for r in records))


def summarize(res: EvalResult, asked: int) -> dict[str, Any]:
    """What a reader needs to trust a score: examples run vs asked, cut-off replies, unparseable answers."""
    recs = res.records
    return {"n": len(recs), "asked": asked, "correct": sum(r.correct for r in recs),
            "accuracy": round(res.accuracy, 4), "truncated": sum(r.truncated for r in recs),
            "unparseable": sum(r.extracted is None and not r.correct for r in recs),
            "cache_hits": sum(r.cached for r in recs), "tokens": res.tokens}


def describe(summary: dict[str, Any]) -> str:
    s = summary
    extra = [f"{s['truncated']} cut off at the token cap" if s["truncated"] else "",
             f"{s['unparseable']} with no parseable answer" if s["unparseable"] else "",
             f"{s['cache_hits']} from the cache" if s["cache_hits"] else ""]
    more = "; ".join(x for x in extra if x)
    asked = f" (asked {s['asked']})" if s["asked"] != s["n"] else ""
    return f"{s['correct']}/{s['n']} correct{asked}, accuracy {s['accuracy']:.3f}" + (f"; {more}" if more else "")


class ResultsFile:
    """results.json: every finished cell, rewritten atomically the moment a cell finishes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        data = json.loads(path.read_text()) if path.is_file() else {}
        self.rows: list[dict[str, Any]] = data.get("results", [])

    def finished(self, key: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if r.get("cell_key") == key), None)

    def add(self, row: dict[str, Any], header: dict[str, Any]) -> None:
        with self.lock:
            self.rows = [r for r in self.rows if r.get("cell_key") != row["cell_key"]] + [row]
            _write_atomic(self.path, json.dumps({**header, "results": self.rows}, indent=2, default=str))


@dataclass
class RunOptions:
    benchmarks: list[str] | None = None
    seeds: list[int] | None = None
    limit: int | None = None  # test examples scored per cell
    fresh: bool = False
    resume: bool = False  # require earlier work to resume
    system_prompt: str | None = None


class Experiment:
    """Runs the grid of an experiment file; see the module docstring."""

    def __init__(self, cfg: ExperimentConfig, opts: RunOptions | None = None) -> None:
        from harness.methods import make_optimizer

        self.cfg, self.opts = cfg, opts or RunOptions()
        self.cells = expand_grid(cfg, benchmarks=self.opts.benchmarks, seeds=self.opts.seeds)
        self.initial_prompt = self.opts.system_prompt if self.opts.system_prompt is not None else cfg.system_prompt
        # Build every optimizer once now: bad settings fail before anything starts.
        self.pools: set[str] = set()
        for c in self.cells:
            opt = make_optimizer(c.method, {**c.settings, "method": c.base})
            self.pools |= pools_needed(opt, c.bench, cfg.held_out)
        self.run_dir = cfg.run_dir
        self.results = ResultsFile(self.run_dir / "results.json")
        self.lock = threading.Lock()
        self.done = 0

    # ---- the parts of a cell -------------------------------------------------------------------
    def cell_inputs(self, c: Cell, ob: OpenBench, llms: LLMs) -> dict[str, Any]:
        """Everything that changes a cell's result; its hash is the cell key."""
        return {"method": c.base, "settings": c.settings, "benchmark": entry_key(c.bench),
                "options": c.bench.split_options(), "seed": c.seed, "initial_prompt": self.initial_prompt,
                "models": models_of(llms), "budget": self.cfg.budget_per_cell.model_dump(),
                "data": data_fingerprint(ob, c.seed), "test_limit": self.opts.limit,
                "held_out": sorted(self.cfg.held_out)}

    def claim_checkpoint(self, c: Cell, ck: Path, inputs: dict[str, Any]) -> None:
        """The cell's checkpoint folder is for one set of inputs: refuse another's, unless --fresh."""
        marker = ck / "cell.json"
        if self.opts.fresh and ck.exists():
            shutil.rmtree(ck)
        if marker.is_file():
            old = json.loads(marker.read_text(encoding="utf-8"))
            if old != json.loads(json.dumps(inputs, default=str)):
                changed = sorted(k for k in set(old) | set(inputs) if json.dumps(old.get(k), default=str)
                                 != json.dumps(inputs.get(k), default=str))
                raise ConfigError(f"{ck} holds a checkpoint of {c.label} made with other settings (changed: "
                                  f"{', '.join(changed)}); rerun with --fresh to discard it, or with --output-dir "
                                  "DIR to keep it and write this run elsewhere.")
        ck.mkdir(parents=True, exist_ok=True)
        _write_atomic(marker, json.dumps(inputs, indent=1, default=str))

    def context(self, c: Cell, benches: dict[str, OpenBench], task_llm) -> RunContext:
        target = entry_key(c.bench)

        def open_task(name: str, seed: int) -> OptimizationTask:
            key = canonical_name(name)
            if key not in benches:
                raise ConfigError(f"{c.method} asked for benchmark {name!r}, which was not opened before the "
                                  "run; list it in the method's pool settings.")
            ob = benches[key]
            return OptimizationTask(ob.bench.name, ob.bench, ob.split("train", seed), ob.split("val", seed),
                                    Evaluator(ob.bench, task_llm, seed=seed), self.initial_prompt)

        def check_disjoint(name: str, ids) -> None:
            if canonical_name(name) != target:
                return
            overlap = {str(i) for i in ids} & {e.id for e in benches[target].split("test", c.seed)}
            if overlap:
                raise ConfigError(f"{c.label}: {len(overlap)} example(s) the prompt agent was pre-trained on are in "
                                  f"this cell's {target} test split (e.g. {sorted(overlap)[0]}); pre-train on "
                                  "a pool without the target, or with the same seed as the target.")

        return RunContext(open_task=open_task, shared_dir=self.run_dir / "shared",
                          check_disjoint_from_test=check_disjoint, held_out=tuple(self.cfg.held_out))

    def run_one(self, c: Cell, benches: dict[str, OpenBench], llms: LLMs, tracker, show: bool) -> dict[str, Any]:
        from harness.methods import make_optimizer
        from harness.run import run_cell

        ob = benches[entry_key(c.bench)]
        inputs = self.cell_inputs(c, ob, llms)
        key = _sha(inputs)
        done = self.results.finished(key) if not self.opts.fresh else None
        if done is None and tracker is not None and not self.opts.fresh:
            found = tracker.find_finished_cell(key)
            done = found.get("result") or None if found else None
        if done is not None:
            self._print(f"== {c.label}: finished earlier (test {done.get('best_test', float('nan')):.3f}); skipped")
            return done
        ck = self.run_dir / "cells" / c.path
        self.claim_checkpoint(c, ck, inputs)
        cell_ledger = llms.ledger.child(Budget(**self.cfg.budget_per_cell.model_dump()))
        test_ledger = llms.ledger.child()
        task_llm, prompt_llm = llms.task.with_ledger(cell_ledger), llms.prompt.with_ledger(cell_ledger)
        test_llm = llms.task.with_ledger(test_ledger)
        self._print(f"== {c.label}")
        t0 = time.monotonic()
        test = load_limited(ob, c.seed, self.opts.limit)
        run = None
        if tracker is not None:
            run = tracker.start_cell(key, method=c.method, benchmark=ob.bench.name, seed=c.seed,
                                     params=self.cell_params(c, ob, llms),
                                     tags={"sepo.base_method": c.base, "sepo.held_out": str(
                                         canonical_name(c.bench.name) in self.cfg.held_out).lower(),
                                         "sepo.local_models": str(llms.task.endpoint.embedded).lower()})

        def on_candidate(cand: Candidate) -> None:
            self._print(f"  candidate {cand.id} <- {cand.parent_id}: train {cand.train_score}")
            if run is not None:
                run.log_candidate(cand)

        try:
            cell = run_cell(make_optimizer(c.method, {**c.settings, "method": c.base}), ob.bench, c.seed,
                            task_llm, prompt_llm, initial_prompt=self.initial_prompt, n_test=len(test),
                            checkpoint_dir=ck, on_candidate=on_candidate,
                            context=self.context(c, benches, task_llm), test_llm=test_llm, show_progress=show)
            initial = Evaluator(ob.bench, test_llm, seed=c.seed).evaluate(self.initial_prompt, test,
                                                                            label="test: initial prompt")
        except BaseException as exc:
            if run is not None:
                run.fail(f"{type(exc).__name__}: {exc}")
            raise
        res = cell.result
        extra = res.extra or {}
        pool = [canonical_name(p) for p in extra.get("pretrain_pool", []) or []]
        row = {"cell_key": key, "method": c.method, "base_method": c.base, "benchmark": ob.bench.name,
               "seed": c.seed, "initial_test": initial.accuracy, "best_test": cell.test_accuracy,
               "test": summarize(cell.test, len(test)), "initial": summarize(initial, len(test)),
               "best_prompt": res.best.prompt, "best_id": res.best.id, "best_train": res.best.train_score,
               "best_val": res.best.val_score, "stopped": extra.get("stopped"),
               "held_out": canonical_name(c.bench.name) in self.cfg.held_out,
               "target_in_pool": (canonical_name(c.bench.name) in pool) if pool else None,
               "pretrain_pool": pool, "usage": cell_ledger.summary(), "test_usage": test_ledger.summary(),
               "wall_s": round(time.monotonic() - t0, 1), "candidates": [vars(x) for x in res.candidates]}
        rec_dir = self.run_dir / "records"
        stem = entry_key(c.bench).replace(":", "-")
        write_records(rec_dir / f"{c.method}-{stem}-seed{c.seed}.jsonl", cell.test.records)
        write_records(rec_dir / f"initial-{stem}-seed{c.seed}.jsonl", initial.records)
        if run is not None:
            u = cell_ledger.total
            metrics = {"test_accuracy": cell.test_accuracy, "initial_test_accuracy": initial.accuracy,
                       "best_train_score": res.best.train_score or 0.0, "requests": u.requests,
                       "tokens": u.tokens, "usd": u.usd, "cache_hits": u.cache_hits, "evaluations": u.evaluations,
                       "wall_s": row["wall_s"], "n_test": len(test), "n_candidates": len(res.candidates)}
            if res.best.val_score is not None:
                metrics["best_val_score"] = res.best.val_score
            prompts = {"prompt_agent": extra["prompt_agent"]} if extra.get("prompt_agent") else {}
            row["mlflow_run_id"] = run.run_id
            run.log_tags({"sepo.target_in_pool": str(row["target_in_pool"]).lower(),
                          "sepo.stopped": str(row["stopped"])})
            run.finish(metrics=metrics, test_records=cell.test.records, initial_records=initial.records,
                       best_prompt=res.best.prompt, extra_prompts=prompts,
                       register_as=f"{self.cfg.name}-{c.method}-{ob.bench.name}-seed{c.seed}", result=row)
        self.results.add(row, {"experiment": self.cfg.name, "config": self.cfg.source})
        with self.lock:
            self.done += 1
            spent = llms.ledger.total
        self._print(f"== done: {c.label} ({time.monotonic() - t0:.0f} s)\n"
                    f"  test accuracy: initial {initial.accuracy:.3f} -> best {cell.test_accuracy:.3f} "
                    f"({len(test)} examples; {describe(row['test'])})\n"
                    f"  cell spent {cell_ledger.total.evaluations} evaluations, {cell_ledger.total.requests} "
                    f"requests, {cell_ledger.total.tokens} tokens, ${cell_ledger.total.usd:.4f}; "
                    f"[{self.done}/{len(self.cells)} cells] run so far {spent.requests} requests, "
                    f"{spent.tokens} tokens, ${spent.usd:.4f}")
        return row

    def cell_params(self, c: Cell, ob: OpenBench, llms: LLMs) -> dict[str, Any]:
        return {"method": c.method, "base_method": c.base, "settings": c.settings, "benchmark": ob.bench.name,
                "benchmark_options": c.bench.split_options(), "seed": c.seed,
                "budget_per_cell": self.cfg.budget_per_cell.model_dump(), "models": models_of(llms),
                "initial_prompt": self.initial_prompt, "data_fingerprint": data_fingerprint(ob, c.seed),
                "code": code_version(self.cfg.project_dir), "test_limit": self.opts.limit}

    def _print(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)

    # ---- the whole grid ------------------------------------------------------------------------
    def check_resume(self) -> None:
        if self.opts.resume and not (self.run_dir / "results.json").exists() and not (self.run_dir / "cells").exists():
            raise ConfigError(f"--resume: nothing to resume in {self.run_dir}; drop --resume to start this "
                              "experiment, or point --output-dir at the earlier run.")

    def run(self) -> list[dict[str, Any]]:
        from harness.llm.session import open_llms

        self.check_resume()
        cfg = self.cfg
        tracker = open_tracker(cfg)
        seeds = sorted({c.seed for c in self.cells})
        print(f"experiment {cfg.name}: {len(self.cells)} cells; outputs in {self.run_dir}"
              + (f"; MLflow {tracker.uri}" if tracker is not None else ""), flush=True)
        parallel = min(cfg.parallel_cells, len(self.cells))
        with open_benchmarks(cfg, [c.bench for c in self.cells], seeds, sorted(self.pools)) as benches, \
                open_llms(cfg.llm, concurrent=parallel > 1) as llms:
            print_models(llms)
            if tracker is not None:
                tracker.log_experiment(cfg.model_dump(), _config_text(cfg), code_version(cfg.project_dir))
            if parallel <= 1:
                rows = [self.run_one(c, benches, llms, tracker, True) for c in self.cells]
            else:
                with ThreadPoolExecutor(parallel) as pool:
                    rows = list(pool.map(lambda c: self.run_one(c, benches, llms, tracker, False), self.cells))
            usage = llms.ledger.summary()
        t = usage["total"]
        print(f"usage: {t['requests']} requests, {t['cache_hits']} cache hits, {t['tokens']} tokens, "
              f"{t['evaluations']} evaluations, ${t['usd']:.4f}; results in {self.results.path}", flush=True)
        return rows


def load_limited(ob: OpenBench, seed: int, limit: int | None) -> list[Example]:
    test = ob.split("test", seed)
    if limit is None:
        return test
    if limit > len(test):
        print(f"  --limit {limit}: {ob.bench.name}'s test split holds {len(test)} examples; scoring all "
              f"{len(test)}", flush=True)
        return test
    return test[:limit]


def print_models(llms: LLMs) -> None:
    for role, m in models_of(llms).items():
        where = "embedded" if m["embedded"] else ", ".join(m["base_url"])
        print(f"{role} model: {m['model']} ({where}), temperature {m['temperature']}, max_tokens {m['max_tokens']}",
              flush=True)


def _config_text(cfg: ExperimentConfig) -> str:
    try:
        return Path(cfg.source).read_text(encoding="utf-8")
    except OSError:
        return json.dumps(cfg.model_dump(), indent=1)


def open_tracker(cfg: ExperimentConfig):
    """The experiment's MLflow tracker (checked reachable), or None when tracking is off."""
    if not cfg.tracking.enabled:
        return None
    from harness.tracking import Tracker

    uri = cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(cfg)
    secrets = [os.environ[e.api_key_env] for e in (cfg.llm.task, cfg.llm.prompt)
               if e.api_key_env and os.environ.get(e.api_key_env)]
    tracker = Tracker(uri, cfg.name, trace=cfg.tracking.trace, secrets=secrets)
    tracker.check_reachable()
    return tracker


def default_tracking_uri(cfg: ExperimentConfig) -> str:
    root = cfg.path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"
