"""Running a study: `tune()` starts N worker processes (or runs one here); each opens train/val data, the
models and the tracker once and runs trials until the study has n_trials. Ctrl-C in the parent SIGTERMs the
workers, each of which fails its trial and closes its servers as Ctrl-C does a single-process run."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from harness.config import ConfigError, ExperimentConfig
from harness.tune.outputs import print_summary, summarize
from harness.tune.study import fail_running, more_to_run, one_ask_at_a_time, open_study
from harness.tune.trial import SurplusTrial, TrialRunner, open_train_val
from harness.tune.validate import TuneError, TuneSetup, load, prepare, redact


def run_trials(runner: TrialRunner) -> None:
    """Trials until the study is full (a worker that finds it full runs nothing)."""
    s, study = runner.setup, runner.study
    if not more_to_run(study, s.n_trials):
        runner.say(f"worker {runner.worker}: the study already has its {s.n_trials} trials")
        return

    def stop_when_full(study, _trial) -> None:
        if not more_to_run(study, s.n_trials):
            study.stop()

    try:
        one_ask_at_a_time(study, s.storage)
        study.optimize(runner.objective, n_trials=None, callbacks=[stop_when_full], catch=(SurplusTrial,))
    except KeyboardInterrupt:
        fail_running(study, {os.getpid()})
        raise


def run_worker(setup: TuneSetup, worker: int = 0, *, quiet: bool = False) -> None:
    """One worker: open train/val data, the LLMs and the tracker once, then run trials until the study is full."""
    from harness.experiment import open_tracker
    from harness.grid import print_models
    from harness.llm.session import open_llms

    study = open_study(setup, worker)
    tracker = open_tracker(setup.cfg)
    with open_train_val(setup) as benches, open_llms(setup.cfg.llm) as llms:
        if worker == 0 and not quiet:
            print_models(llms)
        run_trials(TrialRunner(setup, study, benches, llms, tracker, worker, quiet=quiet))


def stop_workers(procs: list, grace_s: float = 10.0) -> None:
    """Ctrl-C in the parent: SIGTERM every worker (each fails its trial and closes its servers), kill those
    still there after `grace_s`, and reap them all."""
    procs = [p for p in procs if p.pid is not None]  # started
    for p in procs:
        if p.is_alive():
            p.terminate()
    end = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, end - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()


def _interrupt(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise KeyboardInterrupt


def _worker_main(config: str, output_dir: str | None, trials: int | None, storage: str | None, worker: int) -> None:
    """A spawned worker process (--workers N): the same config, its own models and clients. It ignores Ctrl-C
    (see tune()): the parent stops it with SIGTERM, which ends it as Ctrl-C ends a single-process run."""
    from harness.errors import user_error_types

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        setup = prepare(load(config, output_dir), trials=trials, storage=storage)
        run_worker(setup, worker)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if not isinstance(exc, user_error_types()):
            raise
        print(f"error: worker {worker}: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)




def tune(cfg: ExperimentConfig, *, workers: int = 1, trials: int | None = None, storage: str | None = None,
         quiet: bool = False) -> dict[str, Any]:
    """Run (or continue) the study of `cfg.tune` with `workers` local worker processes; write the outputs."""
    setup = prepare(cfg, trials=trials, storage=storage)
    study = open_study(setup)
    tracking = "" if not cfg.tracking.enabled else "; trials tracked in MLflow"
    b = cfg.budget_per_cell
    if b.max_requests or b.max_tokens or b.max_usd:
        print("note: budget_per_cell caps requests/tokens/usd, which count paid requests only: a trial whose "
              "replies earlier trials cached gets more work for the same cap; max_evaluations does not.", flush=True)
    print(f"tune {setup.study_name}: {setup.n_trials} trials of {setup.run} over {', '.join(setup.tune.space)} "
          f"({'/'.join(setup.tune.objectives)}, pruner {setup.tune.pruner_name}); storage {redact(setup.storage)}; "
          f"{workers} worker(s); outputs in {setup.out}{tracking}", flush=True)
    if workers <= 1:
        run_worker(setup, 0, quiet=quiet)
    else:
        if cfg._source is None:
            raise ConfigError("--workers needs the experiment as a file (each worker process reads it).")
        import multiprocessing as mp

        from harness.experiment import open_tracker

        if cfg.llm.task.embedded or cfg.llm.prompt.embedded:
            print(f"note: each of the {workers} workers starts its own embedded model server; on a small machine "
                  "one worker, or a shared OpenAI-compatible server (base_url), is faster.", flush=True)

        open_tracker(cfg)  # the MLflow store and experiment exist before the workers race to create them
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(str(cfg._source), cfg.output_dir, trials, storage, i),
                             name=f"tune-worker-{i}") for i in range(workers)]
        try:
            sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)  # workers inherit it: Ctrl-C is the parent's
            try:
                for p in procs:
                    p.start()
            finally:
                signal.signal(signal.SIGINT, sigint)
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            stop_workers(procs)
            fail_running(open_study(setup, create=False), {p.pid for p in procs if p.pid})
            raise
        bad = [i for i, p in enumerate(procs) if p.exitcode != 0]
        if bad:
            summary = summarize(setup, open_study(setup, create=False))
            raise TuneError(f"worker(s) {', '.join(map(str, bad))} stopped with an error (see above); the study "
                            f"keeps every finished trial ({summary['states']}); rerun the same command to finish it.")
    study = open_study(setup, create=False)
    summary = summarize(setup, study)
    if not quiet:
        print_summary(setup, study, summary)
    return summary


