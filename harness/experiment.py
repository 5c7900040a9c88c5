"""The experiment runner: every cell (method x benchmark x seed) of an experiment file, tracked and resumable.

Before any request: methods and their settings are built, every benchmark a cell needs (targets and the
pools methods ask for) is opened with the config's options and sandbox and its splits loaded for every
seed (harness/grid.py), the tracking store is reached, and API keys and endpoints are checked (`open_llms`).

Shared stages first (harness/stages.py): every cell is asked for the stage it shares with others (SePO's
p~*, MetaSPO's meta-trained prompt); each distinct key is built once on a ledger with the config's
`stage_budget`, its cost reported once (its own MLflow run). Cells that need no stage start at once beside
the stages; the others start when their stage is done. `parallel_cells` workers (auto: the endpoints'
task + prompt concurrency) keep both endpoints busy (harness/schedule.py).

Per cell (harness/cell.py): a child ledger with the experiment's `budget_per_cell` (the same for every
method), the optimizer on train/val, then the best prompt and the initial prompt scored on test on a ledger of
their own (so test scoring always runs). Each cell reports to the sinks (harness/sinks.py): a finished cell is
appended at once (results.jsonl, its per-example records, its MLflow run, the console). A cell that raises is
recorded as failed with its reason and the others go on; the run ends naming the failed cells (the CLI exits
non-zero), and a rerun skips finished cells, retries failed ones and resumes unfinished ones from their
checkpoints (the response cache answers every request already paid for; the restored work is charged to the
cell's budget again).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from harness import schema
from harness.cell import CellOutcome, make_task, run_cell
from harness.config import ConfigError, ExperimentConfig
from harness.evaluator import Evaluator
from harness.files import write_atomic
from harness.grid import (
    Cell,
    OpenBench,
    canonical_name,
    data_fingerprint,
    digest,
    entry_key,
    expand_grid,
    load_limited,
    models_of,
    open_benchmarks,
    pools_needed,
    print_models,
    reply_cap,
    task_opener,
)
from harness.llm.session import LLMs
from harness.llm.usage import Budget
from harness.optimizer import Callbacks, RunContext
from harness.schedule import schedule, workers
from harness.sinks import CellInfo, ConsoleSink, MlflowSink, ResultsFile, ResultsSink, Sink, Sinks, summarize
from harness.stages import Stage, build_stage, plan_stages


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


@dataclass
class RunOptions:
    benchmarks: list[str] | None = None
    seeds: list[int] | None = None
    methods: list[str] | None = None  # run names of `methods:` (--methods)
    limit: int | None = None  # test examples scored per cell
    fresh: bool = False
    resume: bool = False  # require earlier work to resume
    system_prompt: str | None = None


class Experiment:
    """Runs the grid of an experiment file; see the module docstring."""

    def __init__(self, cfg: ExperimentConfig, opts: RunOptions | None = None, *, sinks: Sequence[Sink] = ()) -> None:
        """`sinks`: more destinations for every cell's candidates and outcome, after MLflow, the results file
        and the console (harness/sinks.py)."""
        from harness.methods import make_optimizer

        self.cfg, self.opts, self.extra_sinks = cfg, opts or RunOptions(), list(sinks)
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
        self.failed: list[tuple[Cell, str]] = []
        self.stages: dict[str, Stage] = {}
        self.code: dict[str, Any] = {}  # the project's git commit, read when the run starts

    def say(self, text: str) -> None:
        with self.lock:
            print(text, flush=True)

    # ---- the grid ------------------------------------------------------------------------------
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
        try:
            with open_benchmarks(cfg, [c.bench for c in self.cells], seeds, sorted(self.pools)) as benches, \
                    open_llms(cfg.llm, concurrent=concurrent) as llms:
                rows = self.run_grid(benches, llms, tracker)
                usage = llms.ledger.summary()
        finally:
            if tracker is not None:
                tracker.stop_tracing()  # tracing (tracking.trace) is process-wide: off when the run ends
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

    def run_grid(self, benches: dict[str, OpenBench], llms: LLMs, tracker) -> list[dict[str, Any]]:
        """Plan the shared stages, then run stages and cells on `parallel_cells` workers; rows in grid order."""
        cfg = self.cfg
        print_models(llms, benches)
        self.code = code_version(cfg.project_dir)  # once per run: every cell's params carry it
        if tracker is not None:
            tracker.log_experiment(cfg.model_dump(), _config_text(cfg), self.code,
                                   simulated=cfg.simulated, protocol=protocol_of(cfg))
        self.stages = plan_stages(self.cells, lambda c: self.stage_of(c, benches, llms))
        if self.stages:
            print(f"{len(self.stages)} shared stage(s) before the cells that use them "
                  f"(stage_budget {cfg.stage_budget.model_dump(exclude_none=True) or 'unlimited'})", flush=True)
        parallel = workers(cfg.parallel_cells, llms, len(self.cells) + len(self.stages))
        console = ConsoleSink(self.say, len(self.cells), lambda: llms.ledger.total, show_candidates=parallel <= 1)
        sinks = Sinks([*([MlflowSink(tracker, simulated=cfg.simulated)] if tracker is not None else []),
                       ResultsSink(self.results, self.run_dir / "records"), console, *self.extra_sinks])
        return schedule(self.cells, self.stages, parallel=parallel, say=self.say,
                        run_stage=lambda st: self.run_stage(st, benches, llms, tracker),
                        run_cell=lambda c, show: self.run_one(c, benches, llms, sinks, show))

    def check_resume(self) -> None:
        if self.opts.resume and not (self.run_dir / "results.json").exists() and not (
                self.run_dir / "results.jsonl").exists() and not (self.run_dir / "cells").exists():
            raise ConfigError(f"--resume: nothing to resume in {self.run_dir}; drop --resume to start this "
                              "experiment, or point --output-dir at the earlier run.")

    # ---- shared stages -------------------------------------------------------------------------
    def stage_of(self, c: Cell, benches: dict[str, OpenBench], llms: LLMs):
        """The stage `c`'s method shares with other cells (Optimizer.shared_stage), or None."""
        ask = getattr(self.optimizers[id(c)], "shared_stage", None)
        if ask is None:
            return None
        ob = benches[entry_key(c.bench)]
        task = make_task(ob.bench, c.seed, Evaluator(ob.bench, llms.task, seed=c.seed), self.initial_prompt)
        return ask(task, llms.prompt, seed=c.seed, context=self.context(c, benches, llms.task))

    def run_stage(self, st: Stage, benches: dict[str, OpenBench], llms: LLMs, tracker) -> None:
        c0 = st.cells[0]
        build_stage(st, llms=llms, budget=Budget(**self.cfg.stage_budget.model_dump()),
                    folder=self.run_dir / "shared" / "stages" / st.spec.key[:16],
                    task_opener=lambda task_llm: task_opener(benches, task_llm, self.initial_prompt, asker=c0.method),
                    tracker=tracker, simulated=self.cfg.simulated, say=self.say)

    # ---- one cell ------------------------------------------------------------------------------
    def run_one(self, c: Cell, benches: dict[str, OpenBench], llms: LLMs, sinks: Sinks, show: bool) -> dict[str, Any]:
        """One cell (harness/cell.py), skipped when finished earlier; its row, reported to the sinks."""
        ob = benches[entry_key(c.bench)]
        inputs = self.cell_inputs(c, ob, llms)
        key = digest(inputs)
        done = sinks.lookup(key) if not self.opts.fresh else None
        if done is not None:
            self.say(f"== {c.label}: finished earlier (test {done.get('best_test', float('nan')):.3f}); skipped")
            return done
        ck = self.run_dir / "cells" / c.path
        self.claim_checkpoint(c, ck, inputs)
        log = sinks.open(self.cell_info(c, key, inputs, ob, llms))
        try:
            out = run_cell(self.optimizers[id(c)], ob.bench, c.seed, llms=llms,
                           budget=Budget(**self.cfg.budget_per_cell.model_dump()), checkpoint_dir=ck,
                           initial_prompt=self.initial_prompt, final=partial(load_limited, ob, c.seed, self.opts.limit),
                           make_context=lambda task_llm: self.context(c, benches, task_llm),
                           callbacks=Callbacks(on_candidate=log.candidate), show_progress=show)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.failed(reason)
            with self.lock:
                self.failed.append((c, reason))
            return {"cell_key": key, "status": "failed", "error": reason}
        except BaseException as exc:  # Ctrl-C, SystemExit: the run ends; the cell resumes next time
            log.failed(f"{type(exc).__name__}: interrupted", interrupted=True)
            raise
        row = self.row(c, key, inputs, ob, out)
        log.finished(row, out)
        return row

    def row(self, c: Cell, key: str, inputs: dict[str, Any], ob: OpenBench, out: CellOutcome) -> dict[str, Any]:
        """A finished cell's line in results.jsonl (and its MLflow run's result.json)."""
        res, extra = out.result, out.result.extra or {}
        pool = [canonical_name(p) for p in extra.get("pretrain_pool", []) or []]
        stopped = extra.get("stopped")
        return {"cell_key": key, "status": "finished", "method": c.method, "base_method": c.base,
                "benchmark": ob.bench.name, "seed": c.seed, "initial_test": out.initial.accuracy,
                "best_test": out.test.accuracy, "test": summarize(out.test, out.n_final),
                "initial": summarize(out.initial, out.n_final), "best_prompt": res.best.prompt,
                "best_id": res.best.id, "best_train": res.best.train_score, "best_val": res.best.val_score,
                "stopped": stopped, "schedule_complete": stopped is None, "reply_cap": inputs["reply_cap"],
                "held_out": canonical_name(c.bench.name) in self.cfg.held_out,
                "target_in_pool": (canonical_name(c.bench.name) in pool) if pool else None,
                "pretrain_pool": pool, "stage_keys": [k for k, st in self.stages.items() if c in st.cells],
                "usage": out.usage, "test_usage": out.test_usage, "restored_usage": out.restored,
                "wall_s": out.wall_s, "candidates": [vars(x) for x in res.candidates]}

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

    def cell_info(self, c: Cell, key: str, inputs: dict[str, Any], ob: OpenBench, llms: LLMs) -> CellInfo:
        """What the sinks are told when the cell starts: MLflow params and tags, names of its outputs."""
        from harness.registry import method_info

        info = method_info(c.base)
        params = {"method": c.method, "base_method": c.base, "settings": c.settings, "benchmark": ob.bench.name,
                  "benchmark_options": c.bench.split_options(), "seed": c.seed,
                  "budget_per_cell": self.cfg.budget_per_cell.model_dump(), "models": models_of(llms),
                  "initial_prompt": self.initial_prompt, "data_fingerprint": inputs["data"], "code": self.code,
                  "test_limit": self.opts.limit, "reply_cap": inputs["reply_cap"]}
        tags = {schema.BASE_METHOD: c.base,
                schema.HELD_OUT: schema.bool_tag(canonical_name(c.bench.name) in self.cfg.held_out),
                schema.LOCAL_MODELS: schema.bool_tag(llms.task.endpoint.embedded)}
        return CellInfo(key, c.label, c.method, c.base, ob.bench.name, c.seed,
                        records_stem=f"{entry_key(c.bench).replace(':', '-')}-seed{c.seed}", params=params, tags=tags,
                        family=info.family, ablation_of=info.ablation_of,
                        register_as=f"{self.cfg.name}-{c.method}-{ob.bench.name}-seed{c.seed}")

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

        return RunContext(open_task=task_opener(benches, task_llm, self.initial_prompt, asker=c.method),
                          shared_dir=self.run_dir / "shared", check_disjoint_from_test=check_disjoint,
                          held_out=tuple(self.cfg.held_out), shared_stages_built=True)


STEP_SETTINGS = ("minibatch", "batch_size", "train_size", "reflection_minibatch_size")  # examples one step scores


def check_budget_fits(opt: Any, method: str, cfg: ExperimentConfig) -> None:
    """ConfigError (before any request) when budget_per_cell cannot pay for one step of the method."""
    cap = cfg.budget_per_cell.max_evaluations
    settings = getattr(opt, "settings", None)
    step = next((getattr(settings, k) for k in STEP_SETTINGS if isinstance(getattr(settings, k, None), int)), None)
    if cap is not None and step is not None and cap < step:
        raise ConfigError(f"{cfg.source}: budget_per_cell.max_evaluations {cap} is smaller than one step of "
                          f"{method} ({step} examples); raise the budget or lower the method's step size.")


def warm_imports(cells: list[Cell]) -> None:
    """Import what cell threads would otherwise import lazily at the same time (a partially initialised
    module seen by a second thread: httpx's 'no attribute Timeout' ended a 4-thread grid): the LLM client's
    modules, and each method's own (`preload()` on its class, e.g. textgrad's, with its settings)."""
    import importlib

    from harness.methods import method_class

    for mod in ("httpx", "openai", "openai.types.chat", "anyio", "harness.cell", "harness.sinks"):
        importlib.import_module(mod)
    for base in sorted({c.base for c in cells}):
        preload = getattr(method_class(base), "preload", None)
        if preload is not None:
            preload()


def protocol_of(cfg: ExperimentConfig) -> str | None:
    """Which of the paper's protocols this config follows (configs/paper.yaml, configs/paper-swap.yaml)."""
    return {"paper": "paper", "paper-swap": "paper-swap"}.get(cfg.name.removesuffix("-rehearsal"))


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
