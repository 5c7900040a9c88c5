"""The experiment runner: every cell (method x benchmark x seed) of an experiment file, tracked and resumable.

Before any request: methods and their settings are built, every benchmark a cell needs (targets and the
pools methods ask for) is opened with the config's options and sandbox and its splits loaded for every
seed, the tracking store is reached, and API keys and endpoints are checked (`open_llms`).

Shared stages first (harness/stages.py): every cell is asked for the stage it shares with others (SePO's
p~*, MetaSPO's meta-trained prompt); each distinct key is built once on a ledger with the config's
`stage_budget`, its cost reported once (its own MLflow run). Cells that need no stage start at once beside
the stages; the others start when their stage is done. `parallel_cells` workers (auto: the endpoints'
task + prompt concurrency) keep both endpoints busy.

Per cell (harness/cell.py): a child ledger with the experiment's `budget_per_cell` (the same for every
method), the optimizer on train/val, then the best prompt and the initial prompt scored on test on a ledger
of their own (so test scoring always runs). A finished cell is appended at once (results.jsonl, its
per-example records, its MLflow run). A cell that raises is recorded as failed with its reason and the
others go on; the run ends naming the failed cells (the CLI exits non-zero), and a rerun skips finished
cells, retries failed ones and resumes unfinished ones from their checkpoints (the response cache answers
every request already paid for; the restored work is charged to the cell's budget again).
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

from harness import schema
from harness.benchmarks.base import Benchmark, Example
from harness.config import BenchmarkConfig, ConfigError, ExperimentConfig
from harness.evaluator import EvalResult, Evaluator, Record
from harness.files import write_atomic
from harness.llm.session import LLMs
from harness.llm.usage import Budget
from harness.optimizer import Callbacks, Candidate, OptimizationTask, RunContext


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
                set_reply_cap(bench, b, cfg)
                ob = OpenBench(b, bench)
                for seed in seeds:
                    for split in splits:
                        ob.split(split, seed)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            opened[key] = ob
        yield opened


def set_reply_cap(bench: Benchmark, entry: BenchmarkConfig, cfg: ExperimentConfig) -> None:
    """The task agent's reply cap on this benchmark: the entry's max_tokens, else llm.task.max_tokens when
    the config sets it, else the benchmark's own default (the evaluator uses `bench.reply_cap` as is)."""
    task = cfg.llm.task
    if entry.max_tokens is not None:
        bench.reply_cap = entry.max_tokens
    elif "max_tokens" in task.model_fields_set:
        bench.reply_cap = task.max_tokens


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


def write_records(path: Path, records: list[Record]) -> None:
    write_atomic(path, "".join(json.dumps(asdict(r), default=str) + "\n" for r in records))


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
    """results.jsonl: one line per finished (or failed) cell, appended the moment it ends (the newest line of
    a cell wins); results.json, the whole table, is written once when the run ends. A results.json of an
    earlier run is read too."""

    def __init__(self, path: Path) -> None:
        self.path = path  # results.json
        self.journal = path.with_suffix(".jsonl")
        self.lock = threading.Lock()
        data = json.loads(path.read_text()) if path.is_file() else {}
        rows: dict[str, dict[str, Any]] = {r["cell_key"]: r for r in data.get("results", []) if "cell_key" in r}
        if self.journal.is_file():
            for line in self.journal.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut off by a kill
                    continue
                rows[row["cell_key"]] = row
        self.by_key = rows

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self.by_key.values())

    def finished(self, key: str) -> dict[str, Any] | None:
        row = self.by_key.get(key)
        return row if row is not None and row.get("status", "finished") == "finished" else None

    def add(self, row: dict[str, Any]) -> None:
        with self.lock:
            self.by_key[row["cell_key"]] = row
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with self.journal.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row, default=str) + "\n")

    def write(self, header: dict[str, Any]) -> None:
        with self.lock:
            write_atomic(self.path, json.dumps({**header, "results": self.rows}, indent=2, default=str))


@dataclass
class RunOptions:
    benchmarks: list[str] | None = None
    seeds: list[int] | None = None
    methods: list[str] | None = None  # run names of `methods:` (--methods)
    limit: int | None = None  # test examples scored per cell
    fresh: bool = False
    resume: bool = False  # require earlier work to resume
    system_prompt: str | None = None


@dataclass
class Stage:
    """A shared stage of this run and the cells waiting for it."""

    spec: Any  # harness.stages.SharedStage
    methods: set[str] = field(default_factory=set)
    targets: set[str] = field(default_factory=set)
    cells: list[Cell] = field(default_factory=list)
    outcome: dict[str, Any] | None = None
    error: str | None = None


class Experiment:
    """Runs the grid of an experiment file; see the module docstring."""

    def __init__(self, cfg: ExperimentConfig, opts: RunOptions | None = None) -> None:
        from harness.methods import make_optimizer

        self.cfg, self.opts = cfg, opts or RunOptions()
        self.cells = expand_grid(cfg, benchmarks=self.opts.benchmarks, seeds=self.opts.seeds,
                                 methods=self.opts.methods)
        self.initial_prompt = self.opts.system_prompt if self.opts.system_prompt is not None else cfg.system_prompt
        # Build every cell's optimizer once now (the stages and the cell use it): bad settings fail first.
        self.optimizers = {id(c): make_optimizer(c.method, {**c.settings, "method": c.base}) for c in self.cells}
        self.pools: set[str] = set()
        for c in self.cells:
            opt = self.optimizers[id(c)]
            self.pools |= pools_needed(opt, c.bench, cfg.held_out)
            check_budget_fits(opt, c.method, cfg)
        self.run_dir = cfg.run_dir
        self.results = ResultsFile(self.run_dir / "results.json")
        self.lock = threading.Lock()
        self.done = 0
        self.failed: list[tuple[Cell, str]] = []
        self.stages: dict[str, Stage] = {}

    # ---- the parts of a cell -------------------------------------------------------------------
    def cell_inputs(self, c: Cell, ob: OpenBench, llms: LLMs) -> dict[str, Any]:
        """Everything that changes a cell's result; its hash is the cell key."""
        models = models_of(llms)
        if self.cfg.simulated:  # the world listens on a new port each run: a rerun must find its cells
            models = {role: {**m, "base_url": "simulated"} for role, m in models.items()}
        return {"method": c.base, "settings": c.settings, "benchmark": entry_key(c.bench),
                "options": c.bench.split_options(), "seed": c.seed, "initial_prompt": self.initial_prompt,
                "models": models, "budget": self.cfg.budget_per_cell.model_dump(),
                "data": data_fingerprint(ob, c.seed), "test_limit": self.opts.limit,
                "held_out": sorted(self.cfg.held_out), "reply_cap": reply_cap(ob.bench, llms.task),
                "stage_budget": self.cfg.stage_budget.model_dump()}

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
        write_atomic(marker, json.dumps(inputs, indent=1, default=str))

    def context(self, c: Cell, benches: dict[str, OpenBench], task_llm) -> RunContext:
        target = entry_key(c.bench)

        def check_disjoint(name: str, ids) -> None:
            if canonical_name(name) != target:
                return
            overlap = {str(i) for i in ids} & {e.id for e in benches[target].split("test", c.seed)}
            if overlap:
                raise ConfigError(f"{c.label}: {len(overlap)} example(s) the prompt agent was pre-trained on are in "
                                  f"this cell's {target} test split (e.g. {sorted(overlap)[0]}); pre-train on "
                                  "a pool without the target, or with the same seed as the target.")

        return RunContext(open_task=task_opener(c, benches, task_llm, self.initial_prompt),
                          shared_dir=self.run_dir / "shared", check_disjoint_from_test=check_disjoint,
                          held_out=tuple(self.cfg.held_out), shared_stages_built=True)

    def tags(self, c: Cell, llms: LLMs) -> dict[str, str]:
        return {schema.BASE_METHOD: c.base,
                schema.HELD_OUT: schema.bool_tag(canonical_name(c.bench.name) in self.cfg.held_out),
                schema.LOCAL_MODELS: schema.bool_tag(llms.task.endpoint.embedded)}

    def run_one(self, c: Cell, benches: dict[str, OpenBench], llms: LLMs, tracker, show: bool) -> dict[str, Any]:
        """One cell (harness/cell.py), skipped when finished earlier; its row, also on results.jsonl."""
        from harness.cell import run_cell
        from harness.registry import method_info

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
        self._print(f"== {c.label}")
        test = load_limited(ob, c.seed, self.opts.limit)
        info = method_info(c.base)
        run = None
        if tracker is not None:
            run = tracker.start_cell(key, method=c.method, benchmark=ob.bench.name, seed=c.seed,
                                     params=self.cell_params(c, ob, llms), tags=self.tags(c, llms),
                                     family=info.family, ablation_of=info.ablation_of, simulated=self.cfg.simulated)

        def on_candidate(cand: Candidate) -> None:
            if show:
                self._print(f"  candidate {cand.id} <- {cand.parent_id}: train {cand.train_score}")
            if run is not None:
                run.log_candidate(cand)

        try:
            out = run_cell(self.optimizers[id(c)], ob.bench, c.seed, llms=llms,
                           budget=Budget(**self.cfg.budget_per_cell.model_dump()), checkpoint_dir=ck,
                           initial_prompt=self.initial_prompt, final=test,
                           make_context=lambda task_llm: self.context(c, benches, task_llm),
                           callbacks=Callbacks(on_candidate=on_candidate), show_progress=show)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if run is not None:
                run.fail(reason)
            self.results.add({"cell_key": key, "method": c.method, "base_method": c.base,
                              "benchmark": ob.bench.name, "seed": c.seed, "status": "failed", "error": reason})
            with self.lock:
                self.failed.append((c, reason))
            self._print(f"== FAILED: {c.label}: {reason}")
            return {"cell_key": key, "status": "failed", "error": reason}
        except BaseException as exc:  # Ctrl-C, SystemExit: the run ends; the cell resumes next time
            if run is not None:
                run.fail(f"{type(exc).__name__}: interrupted")
            raise
        res, extra = out.result, out.result.extra or {}
        pool = [canonical_name(p) for p in extra.get("pretrain_pool", []) or []]
        stopped = extra.get("stopped")
        cap = reply_cap(ob.bench, llms.task)
        row = {"cell_key": key, "status": "finished", "method": c.method, "base_method": c.base,
               "benchmark": ob.bench.name, "seed": c.seed, "initial_test": out.initial.accuracy,
               "best_test": out.test.accuracy, "test": summarize(out.test, len(test)),
               "initial": summarize(out.initial, len(test)), "best_prompt": res.best.prompt, "best_id": res.best.id,
               "best_train": res.best.train_score, "best_val": res.best.val_score, "stopped": stopped,
               "schedule_complete": stopped is None, "reply_cap": cap,
               "held_out": canonical_name(c.bench.name) in self.cfg.held_out,
               "target_in_pool": (canonical_name(c.bench.name) in pool) if pool else None,
               "pretrain_pool": pool, "stage_keys": self.stage_keys_of(c), "usage": out.usage,
               "test_usage": out.test_usage, "restored_usage": out.restored, "wall_s": out.wall_s,
               "candidates": [vars(x) for x in res.candidates]}
        rec_dir = self.run_dir / "records"
        stem = entry_key(c.bench).replace(":", "-")
        write_records(rec_dir / f"{c.method}-{stem}-seed{c.seed}.jsonl", out.test.records)
        write_records(rec_dir / f"initial-{stem}-seed{c.seed}.jsonl", out.initial.records)
        u = out.usage["total"]
        if run is not None:
            metrics = {"test_accuracy": out.test.accuracy, "initial_test_accuracy": out.initial.accuracy,
                       "best_train_score": res.best.train_score or 0.0, "requests": u["requests"],
                       "tokens": u["tokens"], "usd": u["usd"], "cache_hits": u["cache_hits"],
                       "evaluations": u["evaluations"], "wall_s": out.wall_s, "n_test": len(test),
                       "n_candidates": len(res.candidates)}
            if res.best.val_score is not None:
                metrics["best_val_score"] = res.best.val_score
            prompts = {"prompt_agent": extra["prompt_agent"]} if extra.get("prompt_agent") else {}
            row["mlflow_run_id"] = run.run_id
            run.log_tags({schema.TARGET_IN_POOL: str(row["target_in_pool"]).lower()})
            run.finish(metrics=metrics, test_records=out.test.records, initial_records=out.initial.records,
                       best_prompt=res.best.prompt, extra_prompts=prompts,
                       register_as=f"{self.cfg.name}-{c.method}-{ob.bench.name}-seed{c.seed}", result=row,
                       stopped=stopped, schedule_complete=stopped is None, max_tokens=cap,
                       stage_keys=row["stage_keys"])
        self.results.add(row)
        with self.lock:
            self.done += 1
            spent = llms.ledger.total
        self._print(f"== done: {c.label} ({out.wall_s:.0f} s)" + (f" STOPPED ({stopped}) before its schedule ended"
                                                                  if stopped else "") + "\n"
                    f"  test accuracy: initial {out.initial.accuracy:.3f} -> best {out.test.accuracy:.3f} "
                    f"({len(test)} examples; {describe(row['test'])})\n"
                    f"  cell spent {u['evaluations']:.0f} evaluations, {u['requests']:.0f} requests, "
                    f"{u['tokens']:.0f} tokens, ${u['usd']:.4f}; [{self.done}/{len(self.cells)} cells] run so far "
                    f"{spent.requests} requests, {spent.tokens} tokens, ${spent.usd:.4f}")
        return row

    def cell_params(self, c: Cell, ob: OpenBench, llms: LLMs) -> dict[str, Any]:
        return {"method": c.method, "base_method": c.base, "settings": c.settings, "benchmark": ob.bench.name,
                "benchmark_options": c.bench.split_options(), "seed": c.seed,
                "budget_per_cell": self.cfg.budget_per_cell.model_dump(), "models": models_of(llms),
                "initial_prompt": self.initial_prompt, "data_fingerprint": data_fingerprint(ob, c.seed),
                "code": code_version(self.cfg.project_dir), "test_limit": self.opts.limit,
                "reply_cap": reply_cap(ob.bench, llms.task)}

    def _print(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)

    # ---- shared stages -------------------------------------------------------------------------
    def stage_keys_of(self, c: Cell) -> list[str]:
        return [k for k, st in self.stages.items() if c in st.cells]

    def plan_stages(self, benches: dict[str, OpenBench], llms: LLMs) -> None:
        """Ask every cell's method for the stage it shares (before any request); group cells by stage key."""
        from harness.run import make_task

        for c in self.cells:
            ask = getattr(self.optimizers[id(c)], "shared_stage", None)
            if ask is None:
                continue
            ob = benches[entry_key(c.bench)]
            task = make_task(ob.bench, c.seed, Evaluator(ob.bench, llms.task, seed=c.seed), self.initial_prompt)
            spec = ask(task, llms.prompt, seed=c.seed, context=self.context(c, benches, llms.task))
            if spec is None:
                continue
            st = self.stages.setdefault(spec.key, Stage(spec))
            st.methods.add(c.method)
            st.targets.add(entry_key(c.bench))
            st.cells.append(c)

    def run_stage(self, st: Stage, benches: dict[str, OpenBench], llms: LLMs, tracker) -> None:
        """Build one shared stage on its own budget (resumed from its checkpoint), once; record its cost."""
        from harness.cell import resumable_ledger, save_usage
        from harness.stages import StageEnv

        spec = st.spec
        if spec.done():
            return
        folder = self.run_dir / "shared" / "stages" / spec.key[:16]
        folder.mkdir(parents=True, exist_ok=True)
        ledger, restored = resumable_ledger(llms.ledger, Budget(**self.cfg.stage_budget.model_dump()), folder)
        task_llm, prompt_llm = llms.task.with_ledger(ledger), llms.prompt.with_ledger(ledger)
        run = None
        if tracker is not None:
            run = tracker.start_stage(spec.key, spec.kind, methods=sorted(st.methods), targets=sorted(st.targets),
                                      params={"describe": spec.describe, "pool": spec.pool,
                                              "stage_budget": self.cfg.stage_budget.model_dump()},
                                      simulated=self.cfg.simulated)

        def on_candidate(cand: Candidate) -> None:
            save_usage(folder, ledger)
            if run is not None:
                run.log_candidate(cand)

        c0 = st.cells[0]
        env = StageEnv(task_llm, prompt_llm, task_opener(c0, benches, task_llm, self.initial_prompt), on_candidate)
        self._print(f"== stage {spec.kind} {spec.key[:12]}: {spec.describe}; serves {len(st.cells)} cells "
                    f"({', '.join(sorted(st.methods))})")
        t0 = time.monotonic()
        try:
            st.outcome = spec.build(env)
        except Exception as exc:
            st.error = f"{type(exc).__name__}: {exc}"
            if run is not None:
                run.fail(st.error)
            self._print(f"== FAILED: stage {spec.key[:12]}: {st.error}")
            return
        save_usage(folder, ledger)
        u = ledger.total
        wall = round(time.monotonic() - t0, 1)
        stopped = st.outcome.get("stopped")
        if run is not None:
            run.finish(metrics={"requests": u.requests, "tokens": u.tokens, "usd": u.usd,
                                "evaluations": u.evaluations, "wall_s": wall},
                       texts={"prompt": st.outcome.get("text") or ""},
                       result={"stopped": stopped, "info": st.outcome.get("info"), "restored": restored},
                       stopped=stopped)
        self._print(f"== stage done {spec.key[:12]} ({wall:.0f} s): {u.evaluations} evaluations, {u.requests} "
                    f"requests, {u.tokens} tokens, ${u.usd:.4f}, once for {len(st.cells)} cells"
                    + (f"; STOPPED on budget ({stopped}), best so far frozen" if stopped else ""))

    # ---- the whole grid ------------------------------------------------------------------------
    def check_resume(self) -> None:
        if self.opts.resume and not (self.run_dir / "results.json").exists() and not (
                self.run_dir / "results.jsonl").exists() and not (self.run_dir / "cells").exists():
            raise ConfigError(f"--resume: nothing to resume in {self.run_dir}; drop --resume to start this "
                              "experiment, or point --output-dir at the earlier run.")

    def parallel(self, llms: LLMs) -> int:
        p = self.cfg.parallel_cells
        if p == "auto":
            embedded = llms.task.endpoint.embedded or (llms.prompt is not None and llms.prompt.endpoint.embedded)
            p = 1 if embedded else llms.task.endpoint.max_concurrency + (
                llms.prompt.endpoint.max_concurrency if llms.prompt is not None else 0)
        return max(1, min(p, len(self.cells) + len(self.stages)))

    def run(self) -> list[dict[str, Any]]:
        from harness.llm.session import open_llms

        self.check_resume()
        cfg = self.cfg
        tracker = open_tracker(cfg)
        seeds = sorted({c.seed for c in self.cells})
        if cfg.simulated:
            print("SIMULATED endpoints (sepo-bench rehearse): no number of this run is a result.", flush=True)
        print(f"experiment {cfg.name}: {len(self.cells)} cells; outputs in {self.run_dir}"
              + (f"; MLflow {tracker.uri}" if tracker is not None else ""), flush=True)
        warm_imports(self.cells)
        concurrent = cfg.parallel_cells == "auto" or cfg.parallel_cells > 1
        with open_benchmarks(cfg, [c.bench for c in self.cells], seeds, sorted(self.pools)) as benches, \
                open_llms(cfg.llm, concurrent=concurrent) as llms:
            print_models(llms, benches)
            if tracker is not None:
                tracker.log_experiment(cfg.model_dump(), _config_text(cfg), code_version(cfg.project_dir),
                                       simulated=cfg.simulated, protocol=protocol_of(cfg))
            self.plan_stages(benches, llms)
            if self.stages:
                print(f"{len(self.stages)} shared stage(s) before the cells that use them "
                      f"(stage_budget {cfg.stage_budget.model_dump(exclude_none=True) or 'unlimited'})", flush=True)
            rows = self.schedule(benches, llms, tracker)
            usage = llms.ledger.summary()
        self.results.write({"experiment": cfg.name, "config": cfg.source, "simulated": cfg.simulated})
        t = usage["total"]
        print(f"usage: {t['requests']} requests, {t['cache_hits']} cache hits, {t['tokens']} tokens, "
              f"{t['evaluations']} evaluations, ${t['usd']:.4f}; results in {self.results.path}", flush=True)
        stopped = [r for r in rows if r.get("status") == "finished" and r.get("stopped")]
        if stopped:
            print(f"{len(stopped)} cell(s) stopped on budget before their schedule ended: "
                  + ", ".join(f"{r['method']}/{r['benchmark']}/seed{r['seed']}" for r in stopped), flush=True)
        if self.failed:
            print(f"{len(self.failed)} cell(s) FAILED (a rerun retries only these):", flush=True)
            for c, reason in self.failed:
                print(f"  {c.label}: {reason}", flush=True)
        return rows

    def schedule(self, benches: dict[str, OpenBench], llms: LLMs, tracker) -> list[dict[str, Any]]:
        """Stages and the cells that need none start at once (heaviest first); a stage's cells start when it
        ends. Results in grid order."""
        waiting = {id(c) for st in self.stages.values() for c in st.cells}
        order = sorted(range(len(self.cells)), key=lambda i: weight(self.cells[i]))
        rows: dict[int, dict[str, Any]] = {}
        parallel = self.parallel(llms)
        show = parallel <= 1
        if parallel <= 1:
            for st in self.stages.values():
                self.run_stage(st, benches, llms, tracker)
            for i, c in enumerate(self.cells):
                rows[i] = self.run_one(c, benches, llms, tracker, show)
            return [rows[i] for i in range(len(self.cells))]
        print(f"{parallel} cells and stages at once", flush=True)
        index = {id(c): i for i, c in enumerate(self.cells)}
        with ThreadPoolExecutor(parallel) as pool:
            futures = []
            submit_lock = threading.Lock()

            def cell(i: int) -> None:
                rows[i] = self.run_one(self.cells[i], benches, llms, tracker, False)

            def stage_then_cells(st: Stage) -> None:
                self.run_stage(st, benches, llms, tracker)
                with submit_lock:  # a failed stage's cells run too: each fails with StageMissing, recorded
                    futures.extend(pool.submit(cell, index[id(c)]) for c in sorted(st.cells, key=weight))

            with submit_lock:
                for st in self.stages.values():
                    futures.append(pool.submit(stage_then_cells, st))
                for i in order:
                    if id(self.cells[i]) not in waiting:
                        futures.append(pool.submit(cell, i))
            n = 0
            while True:
                with submit_lock:
                    pending = futures[n:]
                    n = len(futures)
                if not pending:
                    break
                for f in pending:
                    f.result()  # a cell records its own failure; this raises only on Ctrl-C or a bug
        return [rows[i] for i in range(len(self.cells)) if i in rows]


STEP_SETTINGS = ("minibatch", "batch_size", "train_size", "reflection_minibatch_size")  # examples one step scores


def check_budget_fits(opt: Any, method: str, cfg: ExperimentConfig) -> None:
    """ConfigError (before any request) when budget_per_cell cannot pay for one step of the method."""
    cap = cfg.budget_per_cell.max_evaluations
    settings = getattr(opt, "settings", None)
    step = next((getattr(settings, k) for k in STEP_SETTINGS if isinstance(getattr(settings, k, None), int)), None)
    if cap is not None and step is not None and cap < step:
        raise ConfigError(f"{cfg.source}: budget_per_cell.max_evaluations {cap} is smaller than one step of "
                          f"{method} ({step} examples); raise the budget or lower the method's step size.")


def weight(c: Cell) -> int:
    """Cells with the longest schedules first, so the tail of the grid is short (lower sorts first)."""
    heavy = {"sepo": 0, "textgrad": 1, "espl": 2, "gepa": 3}
    return next((v for k, v in heavy.items() if c.base.startswith(k)), 5)


def task_opener(c: Cell, benches: dict[str, OpenBench], task_llm, initial_prompt: str):
    """RunContext.open_task: another opened benchmark's train/val task, scored through `task_llm`."""

    def open_task(name: str, seed: int) -> OptimizationTask:
        key = canonical_name(name)
        if key not in benches:
            raise ConfigError(f"{c.method} asked for benchmark {name!r}, which was not opened before the "
                              "run; list it in the method's pool settings.")
        ob = benches[key]
        return OptimizationTask(ob.bench.name, ob.bench, ob.split("train", seed), ob.split("val", seed),
                                Evaluator(ob.bench, task_llm, seed=seed), initial_prompt)

    return open_task


def reply_cap(bench: Benchmark, task_llm) -> int | None:
    return Evaluator(bench, task_llm).max_tokens


def warm_imports(cells: list[Cell]) -> None:
    """Import what cell threads would otherwise import lazily at the same time (a partially initialised
    module seen by a second thread: httpx's 'no attribute Timeout' ended a 4-thread grid): the LLM client's
    modules, and each method's own (`preload()` on its class, e.g. textgrad's, with its settings)."""
    import importlib

    from harness.methods import method_class

    for mod in ("httpx", "openai", "openai.types.chat", "anyio", "harness.cell", "harness.run"):
        importlib.import_module(mod)
    for base in sorted({c.base for c in cells}):
        preload = getattr(method_class(base), "preload", None)
        if preload is not None:
            preload()


def protocol_of(cfg: ExperimentConfig) -> str | None:
    """Which of the paper's protocols this config follows (configs/paper.yaml, configs/paper-swap.yaml)."""
    return {"paper": "paper", "paper-swap": "paper-swap"}.get(cfg.name.removesuffix("-rehearsal"))


def load_limited(ob: OpenBench, seed: int, limit: int | None) -> list[Example]:
    test = ob.split("test", seed)
    if limit is None:
        return test
    if limit > len(test):
        print(f"  --limit {limit}: {ob.bench.name}'s test split holds {len(test)} examples; scoring all "
              f"{len(test)}", flush=True)
        return test
    return test[:limit]


def print_models(llms: LLMs, benches: dict[str, OpenBench] | None = None) -> None:
    """Each role's model; the task agent's reply cap per benchmark (what requests carry), when given."""
    for role, m in models_of(llms).items():
        where = "embedded" if m["embedded"] else ", ".join(m["base_url"])
        caps = ""
        if role == "task" and benches:
            caps = "; reply caps " + ", ".join(f"{k} {reply_cap(ob.bench, llms.task)}" for k, ob in benches.items())
        print(f"{role} model: {m['model']} ({where}), temperature {m['temperature']}"
              + (caps or f", max_tokens {m['max_tokens']}"), flush=True)


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
