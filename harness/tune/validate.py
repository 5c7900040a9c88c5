"""Validate a `tune:` section against the method it tunes: the TuneSetup every other part reads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import ConfigError, ExperimentConfig, TuneConfig, TuneParam, load_config, suggest


class TuneError(ConfigError):
    """A tuning run that cannot go on (one sentence; the study keeps what finished)."""


@dataclass
class TuneSetup:
    cfg: ExperimentConfig
    tune: TuneConfig
    run: str  # the methods: entry tuned
    base: str  # its registered method
    settings: dict[str, Any]  # its full settings (presets + the file's)
    defaults: dict[str, Any]  # the method's own values of the space's settings
    storage: str
    study_name: str
    n_trials: int
    out: Path  # <run dir>/tune
    pools: list[str] = field(default_factory=list)

    @property
    def directions(self) -> list[str]:
        return ["maximize"] + ["minimize"] * (len(self.tune.objectives) - 1)

    @property
    def multi(self) -> bool:
        return len(self.tune.objectives) > 1


def redact(url: str) -> str:
    """A storage URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def where(cfg: ExperimentConfig, key: str) -> str:
    return f"{cfg.source}: 'tune.{key}'"


def param_values(p: TuneParam) -> list[Any]:
    """Values that exercise a parameter's whole range (for validation against the method's settings)."""
    if p.type == "categorical":
        return list(p.choices or [])
    if p.type == "int":
        return [int(p.low), int(p.high)]
    return [float(p.low), float(p.high)]


def prepare(cfg: ExperimentConfig, *, trials: int | None = None, storage: str | None = None) -> TuneSetup:
    """Validate the tune section against the method it tunes; ConfigError sentences name the key."""
    from harness.grid import pools_needed
    from harness.methods import make_optimizer, resolve_method

    t = cfg.tune
    if t is None:
        raise ConfigError(f"{cfg.source} has no 'tune' section; add one naming the search space (see "
                          "configs/tune-mbpp-local.yaml).")
    if storage is not None:  # --storage: validated like the file's key
        t = TuneConfig.model_validate({**t.model_dump(), "storage": storage})
    methods = cfg.methods or {"sepo": {}}
    run = t.method or (next(iter(methods)) if len(methods) == 1 else "sepo")
    if run not in methods:
        if t.method is None:
            raise ConfigError(f"{where(cfg, 'method')} is not set and 'methods' lists {len(methods)} entries; name "
                              f"the one to tune (one of {', '.join(methods)}).")
        raise ConfigError(f"{where(cfg, 'method')}: {run!r} is not an entry of 'methods'"
                          f"{suggest(run, list(methods))}; name one of {', '.join(methods)}.")
    base, full = resolve_method(run, methods[run])
    opt = make_optimizer(run, {**full, "method": base})
    settings_model = getattr(opt, "settings", None)
    if settings_model is None or not hasattr(settings_model, "model_dump"):
        raise ConfigError(f"{where(cfg, 'method')}: method {base!r} exposes no settings to tune.")
    current = settings_model.model_dump()
    known = sorted(current)
    for name, p in t.space.items():
        if name not in current:
            raise ConfigError(f"{where(cfg, 'space.' + name)} is not a setting of method {base!r}"
                              f"{suggest(name, known)}; name one of its settings.")
        for v in param_values(p):
            try:
                make_optimizer(run, {**full, name: v, "method": base})
            except ConfigError as exc:
                reason = str(exc).split(": ", 1)[-1].rstrip(".")
                raise ConfigError(f"{where(cfg, 'space.' + name)}: the value {v!r} is not valid for the method "
                                  f"({reason}); narrow the range.") from None
    for i, trial in enumerate(t.enqueue):
        try:
            make_optimizer(run, {**full, **trial, "method": base})
        except ConfigError as exc:
            reason = str(exc).split(": ", 1)[-1].rstrip(".")
            raise ConfigError(f"{where(cfg, f'enqueue.{i}')}: {reason}; fix the values.") from None
    if not cfg.benchmarks:
        raise ConfigError(f"{cfg.source}: 'benchmarks' is empty; list the benchmarks the trials run on.")
    out = cfg.run_dir / "tune"
    url = t.storage or f"sqlite:///{out / 'optuna.db'}"
    pools = set().union(*(pools_needed(opt, b, cfg.held_out) for b in cfg.benchmarks))
    return TuneSetup(cfg, t, run, base, full, {k: current[k] for k in t.space}, url, t.study_name or f"{cfg.name}-tune",
                     trials or t.n_trials, out, sorted(pools))



def load(config: str, output_dir: str | None) -> ExperimentConfig:
    """The experiment file, with --output-dir applied (each worker process reads it again)."""
    cfg = load_config(config)
    if output_dir:
        cfg.output_dir = str(Path(output_dir).expanduser().resolve())
    return cfg


def jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


def fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
