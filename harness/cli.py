"""The `sepo-bench` command line: eval, optimize (the experiment grid), rehearse, report, models, check-config,
tune."""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from harness.config import ConfigError, ExperimentConfig, load_config


class UsageError(ConfigError):
    """A bad command-line flag."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence and exit 2, like every other user error
        raise UsageError(f"{message}; see `{self.prog} --help`.")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {n}")
    return n


def _seed_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds such as 0 or 0,1,2, got {text!r}") from None


def _names(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected benchmark names such as mbpp,gpqa")
    return names


def _load(args: argparse.Namespace) -> ExperimentConfig:
    from harness.checks import check

    cfg = load_config(args.config)
    if getattr(args, "output_dir", None):
        cfg.output_dir = str(Path(args.output_dir).expanduser().resolve())
    check(cfg)
    return cfg


def _system_prompt(args: argparse.Namespace) -> str | None:
    if getattr(args, "system_prompt_file", None):
        p = Path(args.system_prompt_file)
        if not p.is_file():
            raise UsageError(f"--system-prompt-file {p} does not exist; pass a text file with the prompt.")
        return p.read_text(encoding="utf-8").strip()
    return getattr(args, "system_prompt", None)


def _run_options(args: argparse.Namespace):
    from harness.experiment import RunOptions

    if args.fresh and args.resume:
        raise UsageError("--fresh and --resume contradict each other; choose one.")
    return RunOptions(benchmarks=args.benchmarks, seeds=args.seed, methods=getattr(args, "methods", None),
                      limit=args.limit, fresh=args.fresh,
                      resume=args.resume, system_prompt=_system_prompt(args))


def _cmd_eval(args: argparse.Namespace) -> int:
    """Score a system prompt on each benchmark's test split, for every seed (or --seed); write every
    example's record (reply, extracted answer, gold, verdict, reason, tokens) beside a summary."""
    from harness.cell import run_cell
    from harness.grid import entry_key, load_limited, models_of, open_benchmarks, print_models, targets
    from harness.llm.session import open_llms
    from harness.sinks import describe, summarize

    cfg = _load(args)
    opts = _run_options(args)
    prompt = opts.system_prompt if opts.system_prompt is not None else cfg.system_prompt
    runs = targets(cfg, benchmarks=opts.benchmarks, seeds=opts.seeds)
    out = cfg.run_dir / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"eval {cfg.name}: {len(runs)} benchmark x seed runs; outputs in {out}", flush=True)
    rows = []
    with open_benchmarks(cfg, [b for b, _ in runs], sorted({seed for _, seed in runs})) as benches, \
            open_llms(cfg.llm, prompt_agent=False) as llms:
        print_models(llms)
        for entry, seed in runs:
            ob = benches[entry_key(entry)]
            # the one cell runner without an optimizer: the prompt scored as is
            cell = run_cell(None, ob.bench, seed, llms=llms, final=partial(load_limited, ob, seed, opts.limit),
                            initial_prompt=prompt, show_progress=True)
            gold = {e.id: e.answer for e in ob.split("test", seed)}
            records = [{**r.__dict__, "gold": gold.get(r.example_id)} for r in cell.test.records]
            path = out / f"records-{ob.bench.name}-seed{seed}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, default=str) + "\n" for r in records), encoding="utf-8")
            row = {"benchmark": ob.bench.name, "seed": seed, **summarize(cell.test, cell.n_final),
                   "seconds": cell.wall_s, "records": str(path)}
            rows.append(row)
            print(f"{ob.bench.name} seed {seed}: {describe(row)}, {row['tokens']} tokens, {row['seconds']} s",
                  flush=True)
        usage = llms.ledger.summary()
        models = models_of(llms)
    _write_summary(out / "summary.json", {"config": cfg.source, "system_prompt": prompt, "models": models,
                                          "results": rows}, usage)
    return 0


def _write_summary(path: Path, payload: dict[str, Any], usage: dict[str, dict[str, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**payload, "usage": usage}, indent=2, default=str))
    t = usage["total"]
    print(f"usage: {t['requests']} requests, {t['cache_hits']} cache hits, {t['tokens']} tokens, "
          f"${t['usd']:.4f}; summary in {path}", flush=True)


def _cmd_optimize(args: argparse.Namespace) -> int:
    """Run every cell (method x benchmark x seed) of the experiment: optimize on train/val, score the best
    prompt and the initial one on test; track everything in MLflow. Finished cells are skipped on a rerun
    and unfinished ones resume from their checkpoints (--fresh starts over). A cell that fails is recorded
    with its reason and the others go on; the exit code is 1 when any failed (a rerun retries those)."""
    from harness.experiment import Experiment

    cfg = _load(args)
    exp = Experiment(cfg, _run_options(args))
    exp.run()
    return 1 if exp.failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    """Build the statistical report (Markdown + HTML) of an experiment from MLflow."""
    from harness.experiment import default_tracking_uri

    cfg = _load(args) if args.config else None
    name = args.experiment or (cfg.name if cfg else None)
    if not name:
        raise UsageError("name the experiment (sepo-bench report NAME) or pass --config FILE.")
    import os

    uri = args.tracking_uri or (cfg.tracking.uri if cfg else None) or os.environ.get("MLFLOW_TRACKING_URI") or (
        default_tracking_uri(cfg) if cfg else None)
    if uri is None:
        raise UsageError("say where the MLflow store is: --tracking-uri URI, --config FILE or $MLFLOW_TRACKING_URI.")
    out = Path(args.out) if args.out else (cfg.run_dir / "report" if cfg else Path("report"))
    from reports import build_report

    paths = build_report(uri, name, out)
    for p in (paths.values() if isinstance(paths, dict) else paths):
        print(f"report: {p}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    """Assemble and verify local model weights, and build llama.cpp's llama-server that serves them
    (both once, cached in ~/.cache/sepo-bench; later calls only re-check)."""
    from harness.llm.local import MODELS, ensure_model, server_binary

    for name in args.names or list(MODELS):
        print(f"{name}: {ensure_model(name)}")
    print(f"llama-server: {server_binary()}")
    return 0


def _cmd_rehearse(args: argparse.Namespace) -> int:
    """Run the config end to end against the built-in simulated OpenAI-compatible world on 127.0.0.1 (no key,
    no cost; outputs under <output_dir>/rehearsal as <name>-rehearsal, marked simulated), then print what the
    real run will cost and how busy the endpoints were kept. None of its numbers is a result."""
    from harness.rehearsal.rehearse import Settings, derive, rehearse

    out, args.output_dir = args.output_dir, None
    cfg = derive(_load(args), out)
    settings = Settings(latency_s=args.latency_ms / 1000, jitter=args.jitter,
                        estimate_latency_s=args.estimate_latency_s, report=not args.no_report)
    return rehearse(cfg, _run_options(args), settings)


def _non_negative(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if x < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {x:g}")
    return x


def _cmd_check(args: argparse.Namespace) -> int:
    """Validate a config as `eval`/`optimize` would (every problem at once) and print it fully resolved."""
    from harness.checks import resolved, runtime_notes

    cfg = _load(args)
    print(json.dumps(resolved(cfg), indent=2, default=str))
    for note in runtime_notes(cfg):
        print(f"note: {note}", file=sys.stderr)
    print(f"{cfg.source}: no problems found.", file=sys.stderr)
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    """Optuna study over a method's settings (the config's `tune:` section): trials on train/val only, pruned
    per generation, each an MLflow run; writes the best experiment file, a summary and plots. With a
    postgresql:// storage, the same command on several machines shares one study."""
    from harness.tune import tune

    cfg = _load(args)
    try:
        tune(cfg, workers=args.workers, trials=args.trials, storage=args.storage)
    except KeyboardInterrupt:
        print("interrupted: the study keeps every finished trial and marks the one(s) in flight FAIL; rerun the "
              "same command to continue it.", file=sys.stderr, flush=True)
        return 130
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """Write the best prompt of one finished cell (text, train/val/test scores, lineage from the root) as JSON
    to --out or stdout, or register it in MLflow's prompt registry (--register NAME [--alias A])."""
    from harness.export import export

    export(_load(args), args.method, args.benchmark, args.seed, out=args.out, register_as=args.register,
           alias=args.alias)
    return 0


def _run_flags(p: argparse.ArgumentParser, default_config: str) -> None:
    p.add_argument("--config", default=default_config, help="experiment YAML (default: %(default)s)")
    p.add_argument("--limit", type=_positive, default=None, help="score at most N test examples per benchmark")
    p.add_argument("--benchmarks", type=_names, default=None, help="only these benchmarks of the config (a,b)")
    p.add_argument("--seed", type=_seed_list, default=None, help="only these seeds of the config (0 or 0,1)")
    p.add_argument("--output-dir", default=None, help="write outputs here instead of the config's output_dir")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--system-prompt", default=None, help="override the config's system_prompt")
    g.add_argument("--system-prompt-file", default=None, help="read the system prompt from a file")
    p.add_argument("--fresh", action="store_true", help="discard earlier checkpoints and results; start over")
    p.add_argument("--resume", action="store_true", help="require an earlier run to resume (default: resume "
                   "when there is one)")


def build_parser() -> argparse.ArgumentParser:
    from harness import __version__

    p = _Parser(prog="sepo-bench", description="System-prompt optimization harness: SePO and baselines on "
                "AIME'25, ARC-AGI-1, GPQA-Diamond, MBPP and Sudoku, tracked in MLflow.")
    p.add_argument("--version", action="version", version=f"sepo-bench {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    e = sub.add_parser("eval", help="score a system prompt on test splits", description=_cmd_eval.__doc__)
    _run_flags(e, "configs/local.yaml")
    e.set_defaults(func=_cmd_eval)

    o = sub.add_parser("optimize", help="run the experiment grid (methods x benchmarks x seeds)",
                       description=_cmd_optimize.__doc__)
    _run_flags(o, "configs/sepo-local.yaml")
    o.add_argument("--methods", type=_names, default=None, help="only these methods of the config (a,b)")
    o.set_defaults(func=_cmd_optimize)

    x = sub.add_parser("export", help="the best prompt of a finished cell: text, scores, lineage",
                       description=_cmd_export.__doc__)
    x.add_argument("--config", required=True, help="experiment YAML")
    x.add_argument("--method", required=True, help="the method's run name in the config")
    x.add_argument("--benchmark", required=True, help="the benchmark (as in the config)")
    x.add_argument("--seed", type=int, default=None, help="the seed (default: the config's first)")
    x.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    x.add_argument("--register", default=None, metavar="NAME", help="register the prompt in MLflow's prompt "
                   "registry under NAME")
    x.add_argument("--alias", default=None, help="with --register: point this alias at the new version")
    x.add_argument("--output-dir", default=None, help="the run's output folder, if not the config's")
    x.set_defaults(func=_cmd_export)

    r = sub.add_parser("report", help="statistical report of an experiment, from MLflow",
                       description=_cmd_report.__doc__)
    r.add_argument("experiment", nargs="?", help="experiment name (default: the config's name)")
    r.add_argument("--config", default=None, help="experiment YAML (for its name and MLflow store)")
    r.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    r.add_argument("--out", default=None, help="output folder (default: <run dir>/report)")
    r.add_argument("--output-dir", default=None, help=argparse.SUPPRESS)
    r.set_defaults(func=_cmd_report)

    m = sub.add_parser("models", help="fetch and verify local model weights", description=_cmd_models.__doc__)
    m.add_argument("names", nargs="*", help="model names (default: all)")
    m.set_defaults(func=_cmd_models)

    c = sub.add_parser("check-config", help="validate a config and print it resolved", description=_cmd_check.__doc__)
    c.add_argument("config", help="experiment YAML")
    c.add_argument("--output-dir", default=None, help=argparse.SUPPRESS)
    c.set_defaults(func=_cmd_check)

    h = sub.add_parser("rehearse", help="the whole run against a simulated endpoint, and its cost estimate",
                       description=_cmd_rehearse.__doc__)
    _run_flags(h, "configs/paper.yaml")
    h.add_argument("--latency-ms", type=_non_negative, default=100.0, help="simulated latency per request "
                   "(default: %(default)s)")
    h.add_argument("--jitter", type=_non_negative, default=0.5, help="latency drawn uniformly in mean x [1 - j, "
                   "1 + j] (default: %(default)s; 0: fixed)")
    h.add_argument("--estimate-latency-s", type=_non_negative, default=30.0, help="the real endpoint's latency "
                   "per request for the wall-time estimate (default: %(default)s)")
    h.add_argument("--no-report", action="store_true", help="skip building the report")
    h.set_defaults(func=_cmd_rehearse)

    t = sub.add_parser("tune", help="Optuna search over a method's settings (the config's tune: section)",
                       description=_cmd_tune.__doc__)
    t.add_argument("--config", default="configs/tune-mbpp-local.yaml", help="experiment YAML with a tune: section "
                   "(default: %(default)s)")
    t.add_argument("--workers", type=_positive, default=1, help="worker processes here (default 1)")
    t.add_argument("--trials", type=_positive, default=None, help="trials of the whole study (default: tune.n_trials)")
    t.add_argument("--storage", default=None, help="Optuna storage URL, e.g. postgresql://user@host:5432/db "
                   "(default: tune.storage, else sqlite under the run folder)")
    t.add_argument("--output-dir", default=None, help="write outputs here instead of the config's output_dir")
    t.set_defaults(func=_cmd_tune)
    return p


def main(argv: list[str] | None = None) -> int:
    from harness.errors import user_error_types

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; finished cells and paid replies are kept (rerun to resume).", file=sys.stderr)
        return 130
    except Exception as exc:  # user-fixable errors end in one sentence per problem, not a traceback
        if debug or not isinstance(exc, user_error_types()):
            raise
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
