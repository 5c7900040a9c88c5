"""Everything `eval` / `optimize` would refuse in a config, found at once without starting anything.

`problems(cfg)` returns one sentence per problem (file, key, fix); `check(cfg)` raises them together.
What needs the outside world (API keys, endpoints, the Docker engine) is listed by `runtime_notes`
and checked when a run starts, before any paid request.
"""

from __future__ import annotations

import os
from typing import Any

from harness.config import ConfigError, ExperimentConfig, suggest
from harness.registry import canonical_benchmark


def _benchmark_problems(cfg: ExperimentConfig) -> list[str]:
    from harness.benchmarks import ALIASES, get_benchmark, registry
    from harness.data import DatasetMissing

    out = []
    known = sorted(registry()) + sorted(ALIASES)
    for i, b in enumerate(cfg.benchmarks):
        where = f"{cfg.source}: 'benchmarks.{i}'"
        key = canonical_benchmark(b.name)
        if key not in registry():
            out.append(f"{where}: unknown benchmark {b.name!r}{suggest(b.name.lower(), known)}; known benchmarks: "
                       f"{', '.join(sorted(registry()))}.")
            continue
        try:
            bench = get_benchmark(b.name, data_dir=cfg.data_dir, sandbox=None, **b.split_options())
            try:
                for seed in cfg.seeds:
                    for split in ("train", "val", "test"):
                        bench.load(split, seed)
            finally:
                bench.close()
        except ConfigError as exc:
            out.append(f"{where} ({b.name}): {_with_hint(str(exc), b.options)}")
        except DatasetMissing as exc:
            out.append(f"{where} ({b.name}): {exc}")
    for i, name in enumerate(cfg.held_out):
        key = canonical_benchmark(name)
        if key not in registry():
            out.append(f"{cfg.source}: 'held_out.{i}': unknown benchmark {name!r}{suggest(name.lower(), known)}; "
                       "name benchmarks from the registry.")
    return out


def _with_hint(message: str, options: dict[str, Any]) -> str:
    """Add a "did you mean" to a benchmark's unknown-option error."""
    if "known options:" not in message:
        return message
    known = [o.strip().rstrip(".") for o in message.split("known options:")[1].split(",")]
    hints = [f"{o!r}{suggest(o, known)}" for o in options if o not in known and suggest(o, known)]
    return message.rstrip(".") + (f"; for {', '.join(hints)}" if hints else "") + "."


def _method_problems(cfg: ExperimentConfig) -> list[str]:
    from harness.methods import METHODS, make_optimizer

    out = []
    for run, settings in (cfg.methods or {}).items():
        try:
            make_optimizer(run, settings)
        except ConfigError as exc:
            msg = str(exc)
            if msg.startswith("unknown method"):
                base = (settings or {}).get("method", run)
                msg = msg.rstrip(".") + f"{suggest(str(base), sorted(METHODS))}."
            out.append(f"{cfg.source}: {msg}")
    return out


def _sandbox_problems(cfg: ExperimentConfig) -> list[str]:
    s = cfg.sandbox
    if s.backend == "local" and not s.allow_local:
        return [f"{cfg.source}: 'sandbox.backend' is 'local', which runs model-written code without isolation; "
                "set sandbox.allow_local: true to accept that, or use backend: docker."]
    return []


def _tracking_problems(cfg: ExperimentConfig) -> list[str]:
    uri = cfg.tracking.uri
    if uri and not uri.startswith(("sqlite:///", "http://", "https://", "file:", "postgresql", "mysql", "databricks")):
        return [f"{cfg.source}: 'tracking.uri' {uri!r} is not an MLflow tracking URI; use sqlite:///path/mlflow.db "
                "or http://host:port."]
    return []


def problems(cfg: ExperimentConfig) -> list[str]:
    return (_benchmark_problems(cfg) + _method_problems(cfg) + _sandbox_problems(cfg) + _tracking_problems(cfg))


def check(cfg: ExperimentConfig) -> None:
    found = problems(cfg)
    if found:
        raise ConfigError("\n".join(found))


def runtime_notes(cfg: ExperimentConfig) -> list[str]:
    """What is checked only when a run starts (before any paid request)."""
    notes = []
    for role in ("task", "prompt"):
        ep = getattr(cfg.llm, role)
        if ep.api_key_env and not os.environ.get(ep.api_key_env):
            notes.append(f"llm.{role}: the API key variable {ep.api_key_env} is not set now; a run needs it.")
        if not ep.embedded:
            notes.append(f"llm.{role}: {', '.join(ep.base_urls)} is contacted when a run starts.")
    if cfg.sandbox.image != "sepo-sandbox:py3":
        notes.append(f"sandbox.image: {cfg.sandbox.image} must exist in the Docker engine (it is never built).")
    return notes


def resolved(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config with every default filled in, methods included (their full settings)."""
    from harness.methods import make_optimizer, resolve_method

    data = cfg.model_dump()
    methods = {}
    for run, settings in (cfg.methods or {"sepo": {}}).items():
        base, full = resolve_method(run, settings)
        opt = make_optimizer(run, settings)
        s = getattr(opt, "settings", None)
        methods[run] = {"method": base, **(s.model_dump() if hasattr(s, "model_dump") else full)}
    data["methods"] = methods
    data["output_dir"] = str(cfg.run_dir.parent)
    return data
