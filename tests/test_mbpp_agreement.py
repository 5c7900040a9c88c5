"""The harness's MBPP verdict agrees with the field's exec protocol on canonical and reply-shaped programs.

Every MBPP task's canonical solution, plus reply-shaped variants of it (guarded doctest and unittest,
traceback in an except, example prints, typing imports) and broken ones (a stub, a syntax error, an
exception, an off-by-one, an exit), is judged twice in the sandbox image: by the harness (sandbox steps,
comparison on the host) and by plain exec of setup + program + tests into a fresh dict in a fresh
interpreter (human-eval's execution.py; a program passes when exec returns). Agreement must be 100%. Both
get a generous time limit (TIMEOUT_S): what is compared is the verdict, not the speed of a loaded machine
(task 123 takes seconds). A sample of tasks runs by default; all 974 with `-m slow`.
"""

from __future__ import annotations

import ast
import importlib.util
import re

import pytest

from sandboxes.base import Program
from sandboxes.wire import compose

pytest.register_assert_rewrite("tests.sandbox_fixtures")
from tests.sandbox_fixtures import ROOT, open_docker  # noqa: E402

pytestmark = pytest.mark.docker
TIMEOUT_S = 60.0
_spec = importlib.util.spec_from_file_location("mbpp_canonical", ROOT / "scripts" / "mbpp_canonical.py")
mbpp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mbpp)

# The reference judge, shipped in place of the driver: each program exec'd into a fresh dict in its own
# interpreter; it passes when exec returns (then the process ends at once, as human-eval's worker does).
REFERENCE = r'''
import json, os, subprocess, sys
RUN = ("import os, sys\nsrc = sys.stdin.read()\nexec(compile(src, '<program>', 'exec'), {})\n"
       "sys.stdout.flush()\nos.write(1, ('\\n' + sys.argv[1] + '\\n').encode())\nos._exit(0)\n")
cfg = json.loads("".join(sys.argv[1:]))
for prog in cfg["progs"]:
    marker = os.urandom(8).hex()
    try:
        p = subprocess.run([sys.executable, "-I", "-c", RUN, marker], input=prog["src"].encode(),
                           capture_output=True, timeout=cfg["timeout"], cwd="/tmp")
        ok = ("\n" + marker + "\n").encode() in p.stdout
    except subprocess.TimeoutExpired:
        ok = False
    print(json.dumps({"passed": ok, "rc": 0, "timeout": False}), flush=True)
'''


def _lhs(test: str) -> str:
    t = ast.parse(test).body[0].test
    t = t.operand if isinstance(t, ast.UnaryOp) else t
    t = t.left if isinstance(t, ast.Compare) else t
    wrapper = isinstance(t, ast.Call) and t.args and (  # math.isclose(f(x), y), set(f(x))
        isinstance(t.func, ast.Attribute) or isinstance(t.func, ast.Name) and t.func.id in ("set", "sorted"))
    t = t.args[0] if wrapper else t
    return ast.unparse(t)


def variants(code: str, tests: str) -> list[tuple[str, str]]:
    """(name, program) pairs: reply-shaped additions to a correct program, and broken programs."""
    first = next(ln for ln in tests.splitlines() if ln.strip().startswith("assert"))
    call = _lhs(first)
    name = re.match(r"\s*([A-Za-z_]\w*)", call).group(1)
    body = code.rstrip() + "\n"
    setup_bound = any(not ln.strip().startswith("assert") for ln in tests.splitlines() if ln.strip())
    return [
        ("canonical", body),
        ("guarded doctest", body + "\nif __name__ == '__main__':\n    import doctest\n    doctest.testmod()\n"),
        ("guarded unittest", body + "\nimport unittest\nclass TestIt(unittest.TestCase):\n    def test_it(self):\n"
         f"        {first.strip()}\nif __name__ == '__main__':\n    unittest.main()\n"),
        ("traceback in except", "import traceback\n" + body + f"\ntry:\n    print({call})\nexcept Exception:\n"
         "    traceback.print_exc()\n"),
        # MBPP 367 and 927 call with trees the tests build: printing one from the program is a NameError
        ("example prints" + (" (test setup's names)" if setup_bound else ""), body + f"\nprint('example:', {call})\n"),
        ("typing imports", "from typing import Any, Dict, List, Optional, Tuple\n" + body),
        ("stub", body + f"\ndef {name}(*args, **kwargs):\n    return None\n"),
        ("syntax error", body + "\n)\n"),
        ("raises", body + f"\ndef {name}(*args, **kwargs):\n    raise ValueError('no')\n"),
        ("off by one", body + f"\n_orig = {name}\ndef {name}(*a, **k):\n    r = _orig(*a, **k)\n"
         "    return r + 1 if type(r) is int else r\n"),
        ("exits", body + "\nimport sys\nsys.exit(0)\n"),
    ]


def programs(limit_every: int = 1, only: set[int] | None = None) -> list[tuple[int, str, Program]]:
    out = []
    for k, (task_id, p) in enumerate(mbpp.load_programs()):
        if k % limit_every == 0 and (only is None or task_id in only):
            out += [(task_id, name, Program(code, p.tests, p.setup)) for name, code in variants(p.code, p.tests)]
    return out


def judge(items: list[tuple[int, str, Program]]) -> tuple[list, dict]:
    """Harness and reference verdicts; returns (disagreements, per-variant pass counts of the harness)."""
    sb = open_docker(pool_size=2, timeout_s=TIMEOUT_S)
    try:
        progs = [p for _, _, p in items]
        mine = sb.run_many(progs)
        ref = sb.dispatch([{"src": compose(p)} for p in progs], TIMEOUT_S, driver=REFERENCE)
    finally:
        sb.close()
    bad, counts = [], {}
    for (tid, name, _), r, d in zip(items, mine, ref, strict=True):
        counts.setdefault(name, [0, 0])
        counts[name][0] += r.passed
        counts[name][1] += 1
        if r.passed != bool(d.get("passed")):
            bad.append((tid, name, r.reason, d.get("died")))
    return bad, counts


def _check(items: list) -> None:
    bad, counts = judge(items)
    print(f"\nagreement {len(items) - len(bad)}/{len(items)}; harness passes per variant: {counts}")
    assert not bad, bad[:20]
    for name in ("canonical", "guarded doctest", "guarded unittest", "traceback in except", "example prints",
                 "typing imports"):
        assert counts[name][0] == counts[name][1], (name, counts[name])
    for name in ("stub", "syntax error", "raises", "exits"):
        assert counts[name][0] <= counts[name][1] // 50, (name, counts[name])  # ~all fail (a None task may not)


def test_agreement_on_a_sample_of_tasks() -> None:
    items = programs(limit_every=32) + programs(only={123})  # 123: the slowest canonical solution
    assert len({tid for tid, _, _ in items}) >= 30
    _check(items)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~10,700 programs judged twice: 13 min on a quiet 2-core machine
def test_agreement_on_every_task() -> None:
    items = programs()
    assert len({tid for tid, _, _ in items}) == 974
    _check(items)
