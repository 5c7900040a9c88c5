"""The optimizer contract's events: on_generation_end, and should_stop ending a run as a budget stop does
(SePO's evolution loop, a baseline); the tune pruner speaks it without raising through a method."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from baselines.manual_cot import ManualCoT
from harness.llm.usage import Ledger
from harness.optimizer import Callbacks, Candidate, GenerationEnd, OptimizationTask, callbacks_of
from harness.tune.generations import GenerationReporter
from sepo.agent import Proposal
from sepo.evolve import EvolveSettings, Scored, evolve


def _score(prompt: str, draw) -> Scored:
    return Scored(float(len(prompt) % 3) / 2, [], [f"e{draw.gen}"])


def test_evolve_reports_generation_ends_and_stops_when_asked():
    ends: list[GenerationEnd] = []
    proposals: list[int] = []

    def propose(parent, archive, seed) -> Proposal:
        proposals.append(seed)
        return Proposal(f"{parent.text} +{len(proposals)}", replies=["ok"])

    def should_stop() -> str | None:
        return "pruned after generation 1" if any(e.generation == 1 for e in ends) else None

    res = evolve("Answer.", _score, propose, EvolveSettings(generations=3, children=2), seed=0, stage="finetune",
                 on_generation_end=ends.append, should_stop=should_stop)
    assert [e.generation for e in ends] == [0, 1] and {e.stage for e in ends} == {"finetune"}
    assert len(proposals) == 2  # generation 1's two children, nothing after the stop
    assert res.stopped == "pruned after generation 1"
    assert [e.generation for e in res.archive.entries] == [0, 1, 1]


def test_evolve_without_stop_runs_every_generation():
    ends: list[GenerationEnd] = []
    res = evolve("Answer.", _score, lambda p, a, s: Proposal(f"{p.text}!{s}", replies=["ok"]),
                 EvolveSettings(generations=2, children=2), seed=0, on_generation_end=ends.append)
    assert [e.generation for e in ends] == [0, 1, 2] and res.stopped is None


def test_a_baseline_stops_with_the_callers_reason():
    led = Ledger()
    llm = SimpleNamespace(ledger=led)
    task = OptimizationTask("t", SimpleNamespace(name="t", description=""), [], [], SimpleNamespace(llm=llm), "Answer.")
    seen: list[Candidate] = []
    ends: list[GenerationEnd] = []
    res = ManualCoT({"prompt": "Think step by step."}).optimize(
        task, llm, seed=0, callbacks=Callbacks(seen.append, ends.append, lambda: "enough"))
    assert res.extra["stopped"] == "enough" and [c.id for c in seen] == ["cot-0"]
    assert [e.generation for e in ends] == [0]


def test_old_on_candidate_keyword_still_works_but_not_with_callbacks():
    assert callbacks_of(None, print).on_candidate is print
    with pytest.raises(TypeError):
        callbacks_of(Callbacks(), print)


class _Trial:
    def __init__(self, prune_at: int | None) -> None:
        self.prune_at, self.reports = prune_at, []

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.prune_at is not None and len(self.reports) > self.prune_at


def test_pruner_is_a_should_stop_for_methods_with_events():
    trial = _Trial(prune_at=1)
    rep = GenerationReporter(trial, 1000, prune=True)
    for g, score in ((0, 0.0), (1, 0.0), (1, 0.5)):
        rep.candidate(Candidate(f"g{g}", "p", None, g, score, meta={"admitted": True}))
        assert rep.should_stop() is None  # no guessing from candidates
    rep.generation_end(GenerationEnd(0, "finetune"))
    rep.generation_end(GenerationEnd(5, "pretrain"))  # pre-training generations do not count
    assert rep.should_stop() is None
    rep.generation_end(GenerationEnd(1, "finetune"))  # no exception: the method stops at its next check
    assert rep.should_stop() == "pruned after generation 1: best train score so far 0.500"
    assert trial.reports == [(1000, 0.5), (1001, 0.5)]
