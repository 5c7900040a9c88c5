"""A cell's candidates and finished generations -> Optuna intermediate values, and the pruner's verdict."""

from __future__ import annotations

from collections.abc import Callable

from harness.optimizer import Candidate, GenerationEnd

STEP_STRIDE = 1000  # intermediate-value steps of cell i of a trial are i * STEP_STRIDE + generation


class GenerationReporter:
    """One intermediate value per finished generation (the method's `on_generation_end`): the best admitted
    train (minibatch) score so far, then the pruner's question; a pruned trial is stopped through the method's
    `should_stop`. Pre-training generations do not count. With prune=False (multi-objective studies) the values
    are only recorded."""

    def __init__(self, trial, offset: int, prune: bool, on_report: Callable[[int, float], None] | None = None) -> None:
        self.trial, self.offset, self.prune, self.on_report = trial, offset, prune, on_report
        self.best: float | None = None
        self.gen: int | None = None
        self.reported: set[int] = set()
        self.values: dict[int, float] = {}
        self.pruned: str | None = None  # the reason, once the pruner said so

    def candidate(self, cand: Candidate) -> None:
        if (cand.meta or {}).get("stage") == "pretrain":
            return
        g = int(cand.generation)
        self.gen = g if self.gen is None else max(self.gen, g)
        if cand.train_score is not None and (cand.meta or {}).get("admitted", True) is not False:
            self.best = cand.train_score if self.best is None else max(self.best, cand.train_score)

    def generation_end(self, event: GenerationEnd) -> None:
        if event.stage != "pretrain":
            self.report(event.generation)

    def should_stop(self) -> str | None:
        return self.pruned

    def report(self, g: int, *, final: bool = False) -> None:
        if g in self.reported or self.best is None or self.pruned:
            return
        self.reported.add(g)
        self.values[g] = self.best
        step = self.offset + g
        if self.prune:  # Optuna takes intermediate values of single-objective studies only
            self.trial.report(self.best, step)
        if self.on_report is not None:
            self.on_report(step, self.best)
        if self.prune and not final and self.trial.should_prune():
            self.pruned = f"pruned after generation {g}: best train score so far {self.best:.3f}"

    def finish(self) -> None:
        if self.gen is not None:
            self.report(self.gen, final=True)
