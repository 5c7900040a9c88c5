"""The registry of optimization methods: names to classes (plus preset settings), imported only when used.

harness never imports sepo/ or baselines/ directly; a method joins by adding one line here.
Each class takes its settings as a dict (unknown keys are errors) and implements
harness.optimizer.Optimizer. A preset is a registered name with fixed settings on top of a class
(e.g. the paper's variants and ablations), so Tables 1 and 2 run from one experiment file.

In an experiment file, `methods:` maps a run name to settings; the run name is a registered name,
or any name with `method: <registered name>` among its settings (a named setting group):

    methods:
      sepo-generalist: {}
      sepo-specialist: {pretrain_pool: [gpqa]}
      sepo-fast: {method: sepo, generations: 2}
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from harness.config import ConfigError
from harness.optimizer import Optimizer

# name -> (module:Class, preset settings)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    # SePO (sepo/optimizer.py): Table 1's variants, and Table 2's ablations of SePO-Generalist
    "sepo": ("sepo.optimizer:SePO", {}),
    "sepo-generalist": ("sepo.optimizer:SePO", {"variant": "generalist"}),
    "sepo-specialist": ("sepo.optimizer:SePO", {"variant": "specialist"}),
    "sepo-no-archive": ("sepo.optimizer:SePO", {"variant": "generalist", "archive": False}),
    "sepo-no-self-improve": ("sepo.optimizer:SePO", {"variant": "generalist", "self_improve": False}),
    # baselines (baselines/): same Optimizer interface, settings validated by each class
    "manual-cot": ("baselines.manual_cot:ManualCoT", {}),
    "textgrad": ("baselines.textgrad:TextGrad", {}),
    "metaspo": ("baselines.metaspo:MetaSPO", {}),
    "espl": ("baselines.espl:ESPL", {}),
    "gepa": ("baselines.gepa:GEPA", {}),
    # peers: MLflow's own optimizers on the same budget and evaluator (baselines/mlflow_peers.py)
    "mlflow-gepa": ("baselines.mlflow_peers:MLflowGEPA", {}),
    "mlflow-metaprompt": ("baselines.mlflow_peers:MLflowMetaPrompt", {}),
}


# what a method is an ablation of (Table 2); a method's family: FAMILY_OF, else its module's (sepo., baselines.)
ABLATION_OF: dict[str, str] = {"sepo-no-archive": "sepo-generalist", "sepo-no-self-improve": "sepo-generalist"}
Family = Literal["sepo", "baseline", "peer"]
FAMILY_OF: dict[str, Family] = {"mlflow-gepa": "peer", "mlflow-metaprompt": "peer"}


@dataclass(frozen=True)
class MethodInfo:
    name: str
    target: str  # module:Class
    presets: dict[str, Any]
    family: Family
    ablation_of: str | None = None


def method_info(name: str) -> MethodInfo:
    """A registered method's metadata (KeyError for an unknown name; see resolve_method for run names)."""
    target, presets = METHODS[name]
    module = target.split(":")[0]
    family: Family = FAMILY_OF.get(name) or (
        "sepo" if module.startswith("sepo.") else "baseline" if module.startswith("baselines.") else "peer")
    return MethodInfo(name, target, dict(presets), family, ABLATION_OF.get(name))


def resolve_method(run_name: str, settings: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """(registered name, full settings) for one entry of `methods:`; presets first, then the user's."""
    settings = dict(settings or {})
    base = settings.pop("method", run_name)
    if base not in METHODS:
        known = ", ".join(sorted(METHODS))
        raise ConfigError(f"unknown method {base!r} in 'methods.{run_name}'; known methods: {known}.")
    return base, {**METHODS[base][1], **settings}


def method_class(name: str) -> type:
    module, cls = METHODS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)


def make_optimizer(run_name: str, settings: dict[str, Any] | None = None) -> Optimizer:
    """An optimizer for one `methods:` entry; its `name` is the run name."""
    base, full = resolve_method(run_name, settings)
    try:
        opt = method_class(base)(full)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"methods.{run_name}: {_first_problem(exc, settings_fields(method_class(base)))}") from None
    opt.name = run_name
    return opt


def settings_fields(cls: type) -> list[str]:
    """The setting names a method class accepts (from its pydantic settings model), for "did you mean"."""
    import typing

    from pydantic import BaseModel

    model = getattr(cls, "Settings", None)
    if model is None:
        try:
            hint = typing.get_type_hints(cls.__init__).get("settings")
        except Exception:  # unresolvable annotations: no suggestions
            hint = None
        model = next((a for a in (hint, *typing.get_args(hint)) if isinstance(a, type) and issubclass(a, BaseModel)),
                     None)
    return list(model.model_fields) if model is not None else []


def _first_problem(exc: ValueError, known: list[str]) -> str:
    from harness.config import suggest

    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        field = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            return f"unknown setting {field!r}{suggest(field, known)}."
        return f"setting {field!r}: {e['msg'].removeprefix('Value error, ')}."
    return str(exc).splitlines()[0]
