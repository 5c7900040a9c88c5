"""`sepo-bench rehearse`: a config's whole run against the simulated world, and what the real one will cost.

The config is kept (models, prices, max_concurrency, caps, budgets, methods) except where the run goes:
both endpoints point at the world's servers, API keys are a dummy in this process only, outputs go to
`<output_dir>/rehearsal/<name>-rehearsal/` (default under runs/rehearsal) as experiment `<name>-rehearsal`,
with its own response cache and MLflow store inside (--fresh removes that folder, so the estimate counts
every request of a whole run), and `simulated` is set so every output says so. Nothing it prints is a result.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import ExperimentConfig

BANNER = "SIMULATED: a rehearsal against the built-in simulated world; no number below is a result."


@dataclass
class Settings:
    latency_s: float = 0.1
    jitter: float = 0.5
    estimate_latency_s: float = 30.0
    report: bool = True


def derive(cfg: ExperimentConfig, output_dir: str | None = None) -> ExperimentConfig:
    """The rehearsal's copy of a config (endpoints are set once the world is up)."""
    out = cfg.model_copy(deep=True)
    out._source = cfg._source
    root = Path(output_dir) if output_dir else cfg.path(cfg.output_dir) / "rehearsal"
    out.output_dir = str(root.resolve() if root.is_absolute() else cfg.path(str(root)))
    out.name = f"{cfg.name}-rehearsal"
    out.simulated = True
    out.llm.cache.path = str(out.run_dir / "llm-cache.sqlite")
    out.llm.cache.mode = "read-write"
    out.tracking.uri = f"sqlite:///{out.run_dir / 'mlflow.db'}"
    return out


def start_over(cfg: ExperimentConfig) -> None:
    """--fresh: remove the rehearsal's own folder (cache, MLflow store, checkpoints, shared stages), so the
    estimate counts every request of a whole run. Only ever a simulated run's `<name>-rehearsal` folder."""
    import shutil

    if cfg.simulated and cfg.run_dir.name.endswith("-rehearsal") and cfg.run_dir.is_dir():
        shutil.rmtree(cfg.run_dir)


def point_at(cfg: ExperimentConfig, urls: dict[str, str]) -> None:
    """Both roles at the world: the model names stay (an embedded role gets its local model's name)."""
    for role in ("task", "prompt"):
        ep = getattr(cfg.llm, role)
        model = ep.model or ep.local_model or f"simulated-{role}"
        setattr(cfg.llm, role, ep.model_copy(update={"base_url": urls[role], "model": model, "local_model": None}))


@contextmanager
def dummy_keys(cfg: ExperimentConfig):
    """The endpoints' api_key_env variables set to a dummy value while the rehearsal runs (real keys never
    reach the world), restored afterwards."""
    names = {getattr(cfg.llm, r).api_key_env for r in ("task", "prompt")} - {None}
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "sk-rehearsal-dummy" for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def results_rows(cfg: ExperimentConfig, returned: Any) -> list[dict[str, Any]]:
    """The cells of this run as run() returned them (finished earlier ones too), else (a crash) every row of
    results.json."""
    import json

    rows = [r for r in returned or [] if isinstance(r, dict)]
    path = cfg.run_dir / "results.json"
    if rows or not path.is_file():
        return rows
    try:
        return list(json.loads(path.read_text(encoding="utf-8")).get("results", []))
    except (ValueError, AttributeError):
        return []


def print_summary(summary: dict[str, Any]) -> None:
    print(f"In flight (rehearsal wall {summary['wall_s']:.0f} s; ideal {summary['ideal_s']:.0f} s = busy time / "
          f"max_concurrency, ratio {summary['wall_s'] / max(summary['ideal_s'], 1e-9):.2f}x):")
    for role, r in summary["roles"].items():
        print(f"  {role}: {r['requests']} requests, mean {r['mean_in_flight']:.1f} of {r['limit']} in flight, "
              f"saturated {100 * r['saturated']:.0f}% of the time\n{r['timeline']}")
    print(f"Harness CPU: {summary['harness_cpu_s']:.0f} s, {summary['cpu_per_request_ms']:.1f} ms per request; "
          f"prompt-agent requests by kind {summary['prompt_kinds']}; unknown {summary['unknown_prompt_requests']}, "
          f"task requests matching no example {summary['unmatched_task_requests']}")


def rehearse(cfg: ExperimentConfig, opts, settings: Settings) -> int:
    """Run the grid of `cfg` (already derived) against the world; print the estimate and the in-flight
    summary; build the report. Returns the exit code."""
    from harness.errors import user_error_types
    from harness.experiment import Experiment
    from harness.rehearsal.estimate import render
    from harness.rehearsal.world import World

    print(BANNER, flush=True)
    if opts.fresh:
        start_over(cfg)
    seeds = sorted(set(opts.seeds or cfg.seeds))
    extra = sorted(getattr(Experiment(cfg, opts), "pools", None) or ())  # the pool benchmarks methods open
    world = World.for_config(cfg, seeds, extra, latency_s=settings.latency_s, jitter=settings.jitter)
    print(f"simulated world: {len(world.task)} examples indexed; latency {settings.latency_s * 1000:g} ms "
          f"(jitter +-{settings.jitter:.0%}); outputs in {cfg.run_dir}", flush=True)
    code, rows = 0, None
    with world, dummy_keys(cfg):
        point_at(cfg, world.urls)
        exp = Experiment(cfg, opts)
        t0 = time.monotonic()
        try:
            rows = exp.run()
            code = 1 if getattr(exp, "failed", None) else 0  # failed cells: named by the runner, as optimize
        except user_error_types():  # one sentence, exit 2, as every command
            raise
        except Exception as exc:  # a crash: still say what ran and what it would cost
            print(f"{BANNER}\nthe rehearsal's run crashed: {type(exc).__name__}: {exc}", flush=True)
            code = 1
        t1 = time.monotonic()
        summary = world.summary(t0, t1)
    if settings.report and rows is not None:
        build_report(cfg)
    print(BANNER)
    paced = settings.latency_s * 1000 >= 5 * summary["cpu_per_request_ms"]  # latency, not the harness, set the pace
    in_flight = {role: r["mean_in_flight"] for role, r in summary["roles"].items()} if paced else None
    print(render(cfg, results_rows(cfg, rows), summary["roles"], latency_s=settings.estimate_latency_s,
                 in_flight=in_flight))
    print_summary(summary)
    return code


def build_report(cfg: ExperimentConfig) -> None:
    from reports import build_report as build

    paths = build(cfg.tracking.uri, cfg.name, cfg.run_dir / "report")
    for p in (paths.values() if isinstance(paths, dict) else paths):
        print(f"report (simulated): {p}")
