"""The `sepo-bench` command line."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.benchmarks.base import Benchmark, Example
from harness.config import BenchmarkConfig, ConfigError, ExperimentConfig, load_config

OpenBenchmark = tuple[BenchmarkConfig, Benchmark, list[Example]]  # its config, itself, its test examples


@contextmanager
def _open_benchmarks(cfg: ExperimentConfig, source: str) -> Iterator[list[OpenBenchmark]]:
    """Each benchmark with its test examples (first seed), and a sandbox if one runs code: all made
    before any model starts, so a missing dataset or Docker engine is reported before paid work."""
    from harness.benchmarks import get_benchmark
    from harness.run import load_test_split

    if not cfg.benchmarks:
        raise ConfigError(f"{source}: field 'benchmarks': list at least one benchmark.")
    sandbox = _sandbox_if_needed(cfg)
    opened: list[OpenBenchmark] = []
    try:
        for b in cfg.benchmarks:
            bench = get_benchmark(b.name, data_dir=cfg.data_dir, sandbox=sandbox, **b.options)
            opened.append((b, bench, load_test_split(bench, cfg.seeds[0], b.n_test)))
        yield opened
    finally:
        for _, bench, _ in opened:
            bench.close()
        if sandbox is not None:
            sandbox.close()


def _write_results(out: Path, payload: dict[str, Any], usage: dict[str, dict[str, float]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**payload, "usage": usage}, indent=2, default=str))
    t = usage["total"]
    print(f"usage: {t['requests']} requests, {t['cache_hits']} cache hits, {t['tokens']} tokens, "
          f"${t['usd']:.4f}; results in {out}")


def _cmd_eval(args: argparse.Namespace) -> int:
    """Score the config's system prompt on each benchmark's test examples; print accuracy."""
    from harness.evaluator import Evaluator
    from harness.llm.session import open_llms

    cfg = load_config(args.config)
    prompt = args.system_prompt if args.system_prompt is not None else cfg.system_prompt
    seed = cfg.seeds[0]
    rows = []
    with _open_benchmarks(cfg, args.config) as benches, open_llms(cfg.llm, prompt_agent=False) as llms:
        for _, bench, examples in benches:
            examples = examples[: args.n] if args.n else examples
            t0 = time.monotonic()
            ev = Evaluator(bench, llms.task, seed=seed, show_progress=True)
            res = ev.evaluate(prompt, examples, label=f"{bench.name} ({len(examples)} examples)")
            correct = sum(r.correct for r in res.records)
            rows.append({"benchmark": bench.name, "n": len(examples), "correct": correct,
                         "accuracy": round(res.accuracy, 4), "tokens": res.tokens,
                         "seconds": round(time.monotonic() - t0, 1)})
            print(f"{bench.name}: {correct}/{len(examples)} correct, accuracy {res.accuracy:.3f}, "
                  f"{res.tokens} tokens, {rows[-1]['seconds']} s")
        usage = llms.ledger.summary()
    out = Path(cfg.output_dir) / f"eval-{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    _write_results(out, {"config": args.config, "system_prompt": prompt, "results": rows}, usage)
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    """Optimize the config's system prompt with each method, benchmark and seed; score the best on test.

    Checkpoints go under output_dir/<name>/<method>/<benchmark>/seed<k>, so a killed run resumes where
    it stopped; the response cache makes finished requests free on a rerun.
    """
    from harness.evaluator import Evaluator
    from harness.llm.session import open_llms
    from harness.methods import make_optimizer
    from harness.run import load_test_split, run_cell

    cfg = load_config(args.config)
    methods = cfg.methods or {"sepo": {}}
    for name, settings in methods.items():  # bad method settings fail here, before any model starts
        make_optimizer(name, settings)
    run_dir = Path(cfg.output_dir) / cfg.name
    rows = []

    def show(c) -> None:
        print(f"  candidate {c.id} <- {c.parent_id}: train {c.train_score}", flush=True)

    with _open_benchmarks(cfg, args.config) as benches, open_llms(cfg.llm) as llms:
        for (bcfg, bench, _), seed, (method, settings) in itertools.product(benches, cfg.seeds, methods.items()):
            print(f"== {method} on {bench.name}, seed {seed}")
            cell = run_cell(make_optimizer(method, settings), bench, seed, llms.task, llms.prompt,
                            initial_prompt=cfg.system_prompt, n_test=bcfg.n_test,
                            checkpoint_dir=run_dir / method / bench.name / f"seed{seed}", on_candidate=show)
            test = load_test_split(bench, seed, bcfg.n_test)
            initial = Evaluator(bench, llms.task, seed=seed).evaluate(cfg.system_prompt, test,
                                                                     label="test: initial prompt")
            rows.append({"method": method, "benchmark": bench.name, "seed": seed,
                         "initial_test": initial.accuracy, "best_test": cell.test_accuracy,
                         "best_prompt": cell.result.best.prompt, "best_id": cell.result.best.id,
                         "candidates": [vars(c) for c in cell.result.candidates]})
            print(f"  test accuracy: initial {initial.accuracy:.3f} -> best {cell.test_accuracy:.3f} "
                  f"({len(test)} examples)")
        usage = llms.ledger.summary()
    _write_results(run_dir / "results.json", {"config": args.config, "results": rows}, usage)
    return 0


def _sandbox_if_needed(cfg: ExperimentConfig):
    from harness.benchmarks import ALIASES

    def runs_code(name: str, options: dict) -> bool:
        key = ALIASES.get(name.strip().lower(), name.strip().lower())
        return key == "mbpp" or (key == "custom" and options.get("scorer") == "python")

    if not any(runs_code(b.name, b.options) for b in cfg.benchmarks):
        return None
    from sandboxes import make_sandbox

    s = cfg.sandbox
    kw = {"allow": s.allow_local} if s.backend == "local" else {"image": s.image, "pool_size": s.pool_size}
    return make_sandbox(s.backend, timeout_s=s.timeout_s, memory_mb=s.memory_mb, **kw)


def _cmd_models(args: argparse.Namespace) -> int:
    """Assemble and verify local model weights (once; later calls only re-check)."""
    from harness.llm.local import MODELS, ensure_model

    for name in args.names or list(MODELS):
        print(f"{name}: {ensure_model(name)}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """Validate a config file and print it with defaults filled in."""
    cfg = load_config(args.config)
    print(cfg.model_dump_json(indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sepo-bench", description=__doc__ + " System-prompt optimization harness.")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("eval", help="score a system prompt on benchmarks", description=_cmd_eval.__doc__)
    e.add_argument("--config", default="configs/local.yaml", help="experiment YAML (default: %(default)s)")
    e.add_argument("--n", type=int, default=None, help="examples per benchmark (default: the config's n_test)")
    e.add_argument("--system-prompt", default=None, help="override the config's system_prompt")
    e.set_defaults(func=_cmd_eval)

    o = sub.add_parser("optimize", help="optimize a system prompt (SePO), score the best on test",
                       description=_cmd_optimize.__doc__)
    o.add_argument("--config", default="configs/sepo-local.yaml", help="experiment YAML (default: %(default)s)")
    o.set_defaults(func=_cmd_optimize)

    m = sub.add_parser("models", help="fetch and verify local model weights", description=_cmd_models.__doc__)
    m.add_argument("names", nargs="*", help="model names (default: all)")
    m.set_defaults(func=_cmd_models)

    c = sub.add_parser("check-config", help="validate a config file", description=_cmd_check.__doc__)
    c.add_argument("config", help="experiment YAML")
    c.set_defaults(func=_cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; finished results are kept in the cache.", file=sys.stderr)
        return 130
    except Exception as exc:  # user-fixable errors end in one sentence, not a traceback
        from harness.errors import user_error_types

        if isinstance(exc, user_error_types()):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
