"""What a study leaves in <run dir>/tune/: best.yaml, summary.json, trials.csv, plots, and the printed table."""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path
from typing import Any

import yaml

from harness.config import ExperimentConfig
from harness.files import write_atomic
from harness.tune.generations import STEP_STRIDE
from harness.tune.validate import TuneSetup, fmt_params, jsonable, redact


def best_trials(setup: TuneSetup, study) -> list:
    """Single objective: the best trial; two: the Pareto front, by val accuracy (desc), then cost."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and all(v is not None and math.isfinite(v) for v in t.values)]
    if not done:
        return []
    if not setup.multi:
        return [max(done, key=lambda t: (t.values[0], -t.number))]
    front = [t for t in done if not any(_dominates(o, t) for o in done if o is not t)]
    return sorted(front, key=lambda t: (-t.values[0], t.values[1], t.number))


def _dominates(a, b) -> bool:
    (a0, a1), (b0, b1) = a.values, b.values
    return a0 >= b0 and a1 <= b1 and (a0 > b0 or a1 < b1)


def best_config(setup: TuneSetup, params: dict[str, Any], note: str, path: Path) -> Path:
    """The experiment file with the tuned method's settings replaced, no tune section, a new name."""
    cfg = setup.cfg
    try:
        raw = yaml.safe_load(Path(cfg.source).read_text(encoding="utf-8")) or {}
    except OSError:
        raw = cfg.model_dump(exclude_defaults=True)
    raw = copy.deepcopy(raw)
    raw.pop("tune", None)
    raw["name"] = f"{cfg.name}-tuned"
    methods = raw.get("methods") or {setup.run: {}}
    entry = dict(methods.get(setup.run) or {})
    entry.update(jsonable(params))
    methods[setup.run] = entry
    raw["methods"] = methods
    _relocate_paths(raw, cfg, path)
    header = "".join(f"# {line}\n" for line in note.splitlines())
    return write_atomic(path, header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=110))


def _relocate_paths(raw: dict[str, Any], cfg: ExperimentConfig, new_path: Path) -> None:
    """Relative paths in the file mean the same from the new file's project folder (else made absolute)."""
    probe = ExperimentConfig()
    probe._source = new_path
    if probe.project_dir == cfg.project_dir:
        return
    if raw.get("output_dir") is None:
        raw["output_dir"] = str(cfg.path(cfg.output_dir))
    for key in ("output_dir", "data_dir"):
        if isinstance(raw.get(key), str) and not Path(raw[key]).expanduser().is_absolute():
            raw[key] = str(cfg.path(raw[key]))
    cache = (raw.get("llm") or {}).get("cache") or {}
    if isinstance(cache.get("path"), str) and not Path(cache["path"]).expanduser().is_absolute():
        cache["path"] = str(cfg.path(cache["path"]))
    elif "cache" not in (raw.get("llm") or {}):
        raw.setdefault("llm", {}).setdefault("cache", {})["path"] = cfg.llm.cache.path
    for b in raw.get("benchmarks") or []:
        opts = b.get("options") if isinstance(b, dict) else None
        p = (opts or {}).get("path")
        if isinstance(p, str) and not Path(p).is_absolute() and cfg.path(p).exists():
            opts["path"] = str(cfg.path(p))


def save_plots(setup: TuneSetup, study, out: Path) -> dict[str, str]:
    """Optuna's matplotlib plots as PNG; a plot that cannot be drawn yet is listed with the reason."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    out.mkdir(parents=True, exist_ok=True)
    acc = {"target": (lambda t: t.values[0]), "target_name": "val_accuracy"} if setup.multi else {}
    plots = {
        "optimization_history": lambda: ovm.plot_optimization_history(study, **acc),
        "param_importances": lambda: ovm.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), **acc),
        "intermediate_values": lambda: ovm.plot_intermediate_values(study),
    }
    if setup.multi:
        plots["pareto_front"] = lambda: ovm.plot_pareto_front(
            study, target_names=["val_accuracy", setup.tune.objectives[1]])
    done: dict[str, str] = {}
    for name, draw in plots.items():
        if name == "intermediate_values" and setup.multi:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            path = out / f"{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            done[name] = str(path)
        except Exception as exc:  # noqa: BLE001 (e.g. importances need two finished trials that differ)
            done[name] = f"not drawn: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            plt.close("all")
    return done


def summarize(setup: TuneSetup, study) -> dict[str, Any]:
    """best.yaml, summary.json, trials.csv and the plots under <run dir>/tune/; returns the summary."""
    from optuna.trial import TrialState

    out = setup.out
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if not t.user_attrs.get("surplus")]
    states: dict[str, int] = {}
    for t in counted:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    best = best_trials(setup, study)
    defaults = next((t for t in trials if t.user_attrs.get("sepo.defaults") and t.state == TrialState.COMPLETE), None)
    summary: dict[str, Any] = {
        "study": setup.study_name, "storage": redact(setup.storage), "method": setup.run,
        "objectives": list(setup.tune.objectives), "n_trials": setup.n_trials, "states": states,
        "surplus_trials": len(trials) - len(counted), "defaults": None, "best": None, "pareto_front": [],
    }
    if defaults is not None:
        summary["defaults"] = {"trial": defaults.number, "params": defaults.params, "values": defaults.values}
    if best:
        b = best[0]
        note = (f"Tuned by `sepo-bench tune` ({setup.study_name}, {redact(setup.storage)}): trial {b.number}, "
                f"validation accuracy {b.values[0]:.4f}"
                + (f" ({setup.tune.objectives[1]} {b.values[1]:.6g})" if setup.multi else "")
                + (f"; the method's own settings (trial {defaults.number}) scored {defaults.values[0]:.4f}"
                   if defaults is not None else "")
                + f".\nSource: {setup.cfg.source}. Validation accuracy is what the study optimized; run this "
                "file (sepo-bench optimize) for test accuracy.")
        path = best_config(setup, b.params, note, out / "best.yaml")
        summary["best"] = {"trial": b.number, "params": b.params, "values": b.values, "config": str(path),
                           "cells": b.user_attrs.get("cells"), "mlflow_run_id": b.user_attrs.get("mlflow_run_id")}
        if setup.multi:
            summary["pareto_front"] = [{"trial": t.number, "params": t.params, "values": t.values} for t in best]
    _write_trials_csv(study, out / "trials.csv")
    summary["plots"] = save_plots(setup, study, out / "plots")
    write_atomic(out / "summary.json", json.dumps(jsonable(summary), indent=2))
    return summary


def _write_trials_csv(study, path: Path) -> None:
    try:
        df = study.trials_dataframe(attrs=("number", "state", "value" if len(study.directions) == 1 else "values",
                                           "params", "duration", "user_attrs"))
    except Exception:  # noqa: BLE001 (no trials yet)
        return
    drop = [c for c in df.columns if c in ("user_attrs_cells", "user_attrs_costs")]
    write_atomic(path, df.drop(columns=drop).to_csv(index=False))


def print_summary(setup: TuneSetup, study, summary: dict[str, Any]) -> None:
    from optuna.trial import TrialState

    rows = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    names = list(setup.tune.space)
    head = ["trial", "state", *setup.tune.objectives, *names]
    table = [head]
    for t in rows:
        if t.state == TrialState.COMPLETE and t.values:
            vals = [f"{v:.4g}" for v in t.values]
        elif t.state == TrialState.PRUNED:
            last = max(t.intermediate_values) if t.intermediate_values else None
            vals = [f"(gen {last % STEP_STRIDE}: {t.intermediate_values[last]:.3f})" if last is not None else "-"]
            vals += ["-"] * (len(setup.tune.objectives) - 1)
        else:
            vals = ["-"] * len(setup.tune.objectives)
        mark = " *" if summary.get("best") and t.number == summary["best"]["trial"] else ""
        dflt = " (defaults)" if t.user_attrs.get("sepo.defaults") else ""
        table.append([f"{t.number}{mark}{dflt}", t.state.name, *vals,
                      *[(f"{t.params[n]:.4g}" if isinstance(t.params.get(n), float) else str(t.params.get(n, "-")))
                        for n in names]])
    widths = [max(len(str(r[i])) for r in table) for i in range(len(head))]
    print("\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in table))
    st = ", ".join(f"{n} {k.lower()}" for k, n in summary["states"].items())
    print(f"study {setup.study_name}: {st} (of {setup.n_trials}); storage {summary['storage']}")
    if summary.get("defaults"):
        d = summary["defaults"]
        print(f"method's own settings (trial {d['trial']}): val accuracy {d['values'][0]:.4f}")
    if summary.get("best"):
        b = summary["best"]
        print(f"best (trial {b['trial']}): val accuracy {b['values'][0]:.4f}; {fmt_params(b['params'])}")
        if setup.multi:
            print(f"Pareto front (val_accuracy up, {setup.tune.objectives[1]} down): " + "; ".join(
                f"trial {p['trial']}: {p['values'][0]:.3f} / {p['values'][1]:.6g}" for p in summary["pareto_front"]))
        print(f"best experiment file: {b['config']}  (sepo-bench optimize --config {b['config']})")
    for name, p in summary.get("plots", {}).items():
        print(f"plot {name}: {p}")
    print(f"summary: {setup.out / 'summary.json'}")

