"""A verdict is decided once: a code benchmark runs each distinct program once (the same code in other prose, a
cached reply), in the real Docker sandbox. A timeout is not kept: that program runs again."""

from __future__ import annotations

import pytest

from harness.benchmarks import get_benchmark
from sandboxes.base import RunResult

pytest_plugins = ["tests.sandbox_fixtures"]  # the session-wide Docker sandbox (one per session, not per module)

FENCED = "{prose}\n```python\n{code}\n```"


class Counting:
    """A sandbox that counts the programs it is asked to run (and passes them to the real one)."""

    def __init__(self, inner, timeout_for: str | None = None) -> None:
        self.inner, self.ran, self.timeout_for = inner, [], timeout_for

    def run_many(self, programs, timeout_s=None):
        self.ran += programs
        out = self.inner.run_many(programs, timeout_s)
        return [RunResult(False, "", "timeout", 0.0) if self.timeout_for and self.timeout_for in p.code else r
                for p, r in zip(programs, out, strict=True)]


@pytest.mark.docker
def test_each_distinct_program_runs_once_in_the_sandbox(docker_sandbox):
    box = Counting(docker_sandbox)
    bench = get_benchmark("mbpp", sandbox=box)
    exs = bench.load("test", 0)[:3]
    refs = {r["task_id"]: r["code"] for r in bench.rows()}
    first = bench.score_many(exs, [FENCED.format(prose=f"Take {i}.", code=refs[int(e.id)]) for i, e in enumerate(exs)])
    assert all(s.correct for s in first) and len(box.ran) == 3
    again = bench.score_many(exs, [FENCED.format(prose="Other words, same code.", code=refs[int(e.id)])
                                   for e in exs])
    assert [s.correct for s in again] == [True] * 3 and len(box.ran) == 3  # no second run
    wrong = FENCED.format(prose="", code=f"def {exs[0].meta['entry_point']}(*a):\n    return None")
    assert not bench.score(exs[0], wrong).correct and len(box.ran) == 4  # a new program runs


@pytest.mark.docker
def test_a_timeout_is_not_kept(docker_sandbox):
    box = Counting(docker_sandbox, timeout_for="# slow")
    bench = get_benchmark("mbpp", sandbox=box)
    ex = bench.load("test", 0)[0]
    code = {r["task_id"]: r["code"] for r in bench.rows()}[int(ex.id)] + "\n# slow"
    for _ in range(2):
        s = bench.score(ex, FENCED.format(prose="", code=code))
        assert not s.correct and s.reason == "timeout"
    assert len(box.ran) == 2  # run again each time
