"""The sandbox's parts on their own, no Docker: the driver's value encoding, the host's decoding, the split of
asserts into sandbox steps and host checks (over every MBPP test), and records -> verdict."""

from __future__ import annotations

import ast
import json
import math
import re
from collections import Counter, OrderedDict, UserDict, UserList, UserString, deque, namedtuple
from decimal import Decimal
from enum import IntEnum
from fractions import Fraction
from pathlib import Path

import pytest

from sandboxes import checks, driver, wire

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mbpp"
P = namedtuple("P", "a b")


class Colour(IntEnum):
    RED = 1


class Lying(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


class AlwaysEq:
    def __eq__(self, other):
        return True


class Sized:
    def __len__(self):
        return 1


def roundtrip(v):
    return wire.decode(json.loads(json.dumps(driver.encode(v))))


@pytest.mark.parametrize(("value", "expected", "exact_type"), [
    (None, None, type(None)), (True, True, bool), (7, 7, int), (1.5, 1.5, float), ("é", "é", str),
    (b"\x00\xff", b"\x00\xff", bytes), (bytearray(b"ab"), b"ab", bytes), ([1, (2, 3)], [1, (2, 3)], list),
    ({1: {"a"}}, {1: {"a"}}, dict), (frozenset({1}), frozenset({1}), frozenset), (2 + 3j, 2 + 3j, complex),
    (Fraction(40), 40, Fraction), (Decimal("2.5"), 2.5, Decimal), (deque([1, 2], maxlen=3), deque([1, 2]), deque),
    (range(1, 5, 2), range(1, 5, 2), range), (P(1, 2), (1, 2), tuple), (Counter("aab"), {"a": 2, "b": 1}, dict),
    (OrderedDict(a=1), {"a": 1}, dict), (UserList([1]), [1], list), (UserDict(a=1), {"a": 1}, dict),
    (UserString("s"), "s", str), (Colour.RED, 1, int), (Lying(0), 0, int), (float("inf"), math.inf, float),
])
def test_values_travel_as_built_in_data(value, expected, exact_type) -> None:
    got = roundtrip(value)
    assert got == expected and type(got) is exact_type


def test_nan_and_lying_subclasses_travel_honestly() -> None:
    assert math.isnan(roundtrip(float("nan")))
    assert roundtrip(Lying(0)) != 5  # the base value, not the subclass's __eq__


@pytest.mark.parametrize(("value", "what"), [
    (Sized(), "a Sized"), ([Sized()], "a Sized"), (AlwaysEq(), None),
    pytest.param(10 ** 5000, "more than 4000 digits", id="huge"),
    (lambda: 0, None), ((x for x in ()), None),
])
def test_other_objects_do_not_travel(value, what) -> None:
    if what is None:  # Python's default truth: usable in a truth test only
        got = roundtrip(value)
        assert isinstance(got, checks.Opaque) and bool(got)
        with pytest.raises(checks.NotData):
            _ = got == 0
        return
    with pytest.raises(driver.Unsupported, match=re.escape(what)):
        driver.encode(value)


def test_deep_nesting_is_refused() -> None:
    v: list = []
    for _ in range(200):
        v = [v]
    with pytest.raises(driver.Unsupported, match="nested"):
        driver.encode(v)


@pytest.mark.parametrize("sent", [
    {"set": [{"list": []}]}, {"fraction": [1, 0]}, {"eval": "2 * 3"}, {"decimal": "9" * 2000}, [1, 2],
    {"range": [0, 1, 0]}, {"dict": [[1]]}, {"bytes": "zz"},
])
def test_malformed_values_raise_without_evaluating(sent) -> None:
    with pytest.raises((ValueError, TypeError, ArithmeticError)):
        wire.decode(sent)


# ---- the split ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tests", "steps"), [
    ("assert f(x) == [1]", ["f(x)"]),
    ("assert set(f((3, 4))) == set((4,))", ["f((3, 4))"]),
    ("assert math.isclose(volume(10), 4188.79, rel_tol=0.001)", ["volume(10)"]),
    ("assert not check('dawood')", ["check('dawood')"]),
    ("assert check('annie')", ["check('annie')"]),
    ("assert sum(1, 2) == 3", ["sum(1, 2)"]),
    ("assert tuple_size((1, 2)) == sys.getsizeof((1, 2))", ["tuple_size((1, 2))"]),
    ("assert obj.method(1) == 2", ["obj.method(1)"]),
    ("assert f(1)[0] * 2 == 4", ["f(1)"]),
    ("assert 2 == f(1)", ["f(1)"]),
    ("assert [g(x) for x in (1, 2)] == [2, 4]", ["[g(x) for x in (1, 2)]"]),
    ("root = Node(1)\nassert max_height(root) == 3", ["root = Node(1)", "max_height(root)"]),
])
def test_split_sends_only_the_calls_into_the_program(tests, steps) -> None:
    plan = checks.make_plan(tests)
    assert [src for _, src in plan.steps] == steps


def test_mbpp_expected_sides_never_reach_the_sandbox() -> None:
    """Over every MBPP assert: each sandbox step is a part of the assert's left side, never the expected side."""
    rows = [json.loads(ln) for ln in (DATA / "mbpp.jsonl").read_text().splitlines() if ln.strip()]
    rows += json.loads((DATA / "sanitized-mbpp.json").read_text())
    n = 0
    for r in rows:
        plan = checks.make_plan("\n".join(r["test_list"]), "\n".join(r.get("test_imports") or []))
        asserts = [t for t in plan.tests if t.kind == "assert"]
        assert len(asserts) == len(r["test_list"])
        for t, src in zip(asserts, r["test_list"], strict=True):
            test = ast.parse(src).body[0].test
            left = test.left if isinstance(test, ast.Compare) else test
            parts = {ast.unparse(n) for n in ast.walk(left)}
            assert t.steps and all(plan.steps[k][1] in parts for k in t.steps), (r["task_id"], src)
            n += 1
    assert n > 4000


def test_host_refuses_unbounded_operations() -> None:
    with pytest.raises(checks.NotData):
        checks._binop("Mult", "x", 10 ** 12)
    with pytest.raises(checks.NotData):
        checks._binop("Pow", 2, 10 ** 9)
    assert checks._binop("Mult", "ab", 2) == "abab"


# ---- records -> verdict --------------------------------------------------------------------------------------


def verdict(tests: str, *recs, rc: int = 0, timeout: bool = False):
    text = "\n".join(json.dumps(r) for r in recs)
    return wire.to_result(checks.make_plan(tests), {"rc": rc, "timeout": timeout, "out": "", "dur": 0.1,
                                                    "recs": text}, 1000)


T2 = "assert f(1) == 2\nassert set(f(2)) == {4}"


@pytest.mark.parametrize(("recs", "kw", "passed", "reason"), [
    ((["start"], ["tests"], ["val", 0, 2], ["val", 1, {"list": [4]}], ["done"]), {}, True, "passed"),
    ((["start"], ["tests"], ["val", 0, 1], ["val", 1, {"list": [4]}], ["done"]), {}, False,
     "failed: assert f(1) == 2 (got 1)"),
    ((["start"], ["tests"], ["raise", 0, "ZeroDivisionError: x"], ["val", 1, {"list": [4]}], ["done"]), {}, False,
     "error: ZeroDivisionError: x (in assert f(1) == 2)"),
    ((["start"], ["tests"], ["val", 0, 2], ["val", 1, {"list": [{"list": [1]}]}], ["done"]), {}, False,
     "error: TypeError: unhashable type: 'list' (in assert set(f(2)) == {4})"),
    ((["start"], ["exit", "code", "0"]), {}, False, "exited before tests ran (SystemExit(0))"),
    ((["start"], ["err", "code", "NameError: x"]), {}, False, "error: NameError: x"),
    ((["start"], ["tests"], ["val", 0, 2], ["exit", 1, "None"]), {}, False, "exited during test 2 (SystemExit)"),
    ((["start"], ["tests"], ["val", 0, 2]), {}, False, "exited during test 2 (status 0, no test record)"),
    ((["start"],), {}, False, "exited before tests ran (status 0, no test record)"),
    ((["start"], ["tests"]), {"timeout": True}, False, "timeout"),
    ((["start"], ["tests"]), {"rc": -9}, False, "killed (memory)"),
    ((["done"],), {}, False, "exited before tests ran"),  # a forged 'done' carries no values
    ((["start"], ["tests"], ["val", 0, 2], ["val", 0, 1], ["val", 1, {"list": [4]}], ["done"]), {}, True, "passed"),
])
def test_records_to_verdict(recs, kw, passed, reason) -> None:
    r = verdict(T2, *recs, **kw)
    assert (r.passed, r.reason[: len(reason)]) == (passed, reason), r.reason


def test_died_runner_is_blamed() -> None:
    r = wire.to_result(checks.make_plan(T2), {"died": "error: sandbox runner died (x)", "out": "", "dur": 0}, 100)
    assert not r.passed and r.reason == "error: sandbox runner died (x)"


def test_driver_runs_a_program_in_a_fresh_dict(tmp_path) -> None:
    """The driver's own loop (fork, limits, capture), in this process: __name__ is not '__main__'."""
    prog = {"setup": "import math", "code": "print(__name__)\ndef f(x):\n    return math.floor(x)\n",
            "steps": [["eval", "f(2.5)"], ["exec", "y = f(1.5)"], ["eval", "y"]]}
    cfg = {"timeout": 5, "cap": 1000, "mem": 0, "fsize": 0, "nproc": 0, "killall": False}
    raw = driver.run_one(0, prog, cfg, str(tmp_path))
    assert raw["rc"] == 0 and not raw["timeout"] and raw["out"].strip() == "builtins"
    outcomes, final, phase = wire.records(raw["recs"])
    assert outcomes == {0: ("val", 2), 1: ("val", None), 2: ("val", 1)} and final == ["done"]
