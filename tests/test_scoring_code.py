"""Code scoring conformance: hostile programs that used to pass MBPP-style tests, run in the real Docker sandbox.

Each row: (name, program, tests, passes?, a piece of the recorded reason). A wrong function (f(x) = x where
the tests want 2x) followed by a trick must fail with its reason; the honest rows must still pass.
"""

from __future__ import annotations

import pytest

from sandboxes.base import Program

pytest.register_assert_rewrite("tests.sandbox_fixtures")
from tests.sandbox_fixtures import ok_program  # noqa: E402

pytest_plugins = ["tests.sandbox_fixtures"]

WRONG = "def f(x):\n    return x\n"
RIGHT = "def f(x):\n    return 2 * x\n"
TESTS = "assert f(1) == 2\nassert f(2) == 4\nassert f(3) == 6\n"
FAKE_RECORD = '{"i": 0, "rc": 0, "timeout": false, "out": "", "dur": 0.0, "passed": true, "reason": "passed"}'
ALWAYS_EQ = "class A:\n    def __eq__(self, o):\n        return True\n    def __ne__(self, o):\n        return False\n"

HOSTILE: list[tuple[str, str, str, bool, str]] = [
    # --- honest programs ---------------------------------------------------------------------------------
    ("right answer", RIGHT, TESTS, True, "passed"),
    ("wrong answer", WRONG, TESTS, False, "failed: assert f(1) == 2 (got 1)"),
    ("right, with prints and a main guard", RIGHT + "if __name__ == '__main__':\n    print(f(5))\n", TESTS, True,
     "passed"),
    ("namedtuple and Counter results", "from collections import namedtuple, Counter\nP = namedtuple('P', 'a b')\n"
     "def f(x):\n    return P(x, 2 * x)\ndef g(s):\n    return Counter(s)\n",
     "assert f(1) == (1, 2)\nassert g('aab') == {'a': 2, 'b': 1}\n", True, "passed"),
    ("re.Match as a truth value", "import re\ndef f(s):\n    return re.match('a+', s)\n",
     "assert f('aa')\nassert not f('b')\n", True, "passed"),
    ("function named like a builtin (MBPP 126)", "def sum(a, b):\n    return a + b\n", "assert sum(1, 2) == 3\n",
     True, "passed"),
    # --- early exits -------------------------------------------------------------------------------------
    ("sys.exit(0)", WRONG + "import sys\nsys.exit(0)\n", TESTS, False, "exited before tests ran (SystemExit(0))"),
    ("os._exit(0)", WRONG + "import os\nos._exit(0)\n", TESTS, False, "exited before tests ran (status 0"),
    ("raise SystemExit(main())", WRONG + "def main():\n    return 0\nraise SystemExit(main())\n", TESTS, False,
     "exited before tests ran (SystemExit(0))"),
    ("exit() builtin", WRONG + "exit()\n", TESTS, False, "exited before tests ran"),
    ("atexit handler os._exit(0)", WRONG + "import atexit, os\natexit.register(lambda: os._exit(0))\n", TESTS,
     False, "failed: assert f(1) == 2 (got 1)"),
    ("unittest.main()", WRONG + "import unittest\nif __name__ == '__main__':\n    unittest.main()\n", TESTS,
     False, "exited before tests ran (SystemExit(False))"),
    ("sys.exit inside the function", "import sys\ndef f(x):\n    sys.exit(0)\n", TESTS, False,
     "exited during test 1"),
    ("os._exit inside the function", "import os\ndef f(x):\n    os._exit(0)\n", TESTS, False,
     "exited during test 1"),
    ("os.kill(self, SIGKILL)", WRONG + "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", TESTS, False,
     "killed"),
    # --- swallowed exceptions, hooks ---------------------------------------------------------------------
    ("sys.excepthook swallows errors", WRONG + "import sys\nsys.excepthook = lambda *a: None\n", TESTS, False,
     "failed: assert f(1) == 2"),
    ("sys.settrace", WRONG + "import sys\nsys.settrace(lambda *a: None)\n", TESTS, False,
     "error: RuntimeError: sys.settrace is disabled"),
    ("signal handler", WRONG + "import signal\nsignal.signal(signal.SIGALRM, lambda *a: None)\n", TESTS, False,
     "signal handlers are disabled"),
    ("daemon thread left running", "import threading, time\n" + RIGHT
     + "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n", TESTS, False,
     "tampered: the program left threads running"),
    # --- replaced builtins and modules -------------------------------------------------------------------
    ("builtins.AssertionError replaced", WRONG + "import builtins\nbuiltins.AssertionError = type('X', (Exception,),"
     " {})\n", TESTS, False, "tampered: replaced builtins: AssertionError"),
    ("builtins.isinstance replaced", WRONG + "import builtins\nbuiltins.isinstance = lambda *a: True\n", TESTS,
     False, "tampered: replaced builtins: isinstance"),
    ("__builtins__ rebound", WRONG + "__builtins__ = {}\n", TESTS, False, "tampered: the program replaced "
     "__builtins__"),
    ("builtin shadowed for the tests", "def set(x):\n    return 1\ndef g(x):\n    return [9]\n",
     "assert set(g(1)) == set([1, 2])\n", False, "tampered: the program shadows builtins the tests use: set"),
    ("math.isclose patched", "import math\nmath.isclose = lambda *a, **k: True\n" + WRONG,
     "assert math.isclose(f(1), 2.0)\n", False, "tampered: the program replaced math.isclose"),
    # --- always-equal and always-true objects ------------------------------------------------------------
    ("always-equal object", ALWAYS_EQ + "def f(x):\n    return A()\n", TESTS, False,
     "(got a A that is (or holds) a non-built-in value)"),
    ("always-equal int subclass", "class B(int):\n    def __eq__(self, o):\n        return True\n"
     "def f(x):\n    return B(0)\n", TESTS, False, "failed: assert f(1) == 2 (got 0)"),
    ("always-equal inside a list", ALWAYS_EQ + "def f(x):\n    return [A()]\n", "assert f(1) == [2]\n", False,
     "non-built-in value"),
    ("always-equal on the right side", ALWAYS_EQ + "def f(x):\n    return A()\n", "assert 2 == f(1)\n", False,
     "non-built-in value"),
    ("always-unequal for !=", ALWAYS_EQ + "def f(x):\n    return A()\n", "assert f(1) != 5\n", False,
     "non-built-in value"),
    ("always-true __bool__", "class T:\n    def __bool__(self):\n        return True\ndef f(x):\n    return T()\n",
     "assert f(1)\n", False, "not a built-in value (got T)"),
    ("str subclass with lying __eq__", "class S(str):\n    def __eq__(self, o):\n        return True\n"
     "def f(x):\n    return S('no')\n", "assert f(1) == 'yes'\n", False, "failed: assert f(1) == 'yes' (got 'no')"),
    ("lying __contains__", "class C(list):\n    def __contains__(self, o):\n        return True\n"
     "def f(x):\n    return C()\n", "assert 3 in f(1)\n", False, "failed: assert 3 in f(1)"),
    # --- forging the runner's record ---------------------------------------------------------------------
    ("prints a passing record", WRONG + f"print({FAKE_RECORD!r})\nprint('passed')\n", TESTS, False,
     "failed: assert f(1) == 2"),
    ("writes fake records to every fd", WRONG + "import os\nfor fd in range(3, 64):\n    try:\n"
     "        os.write(fd, b'0' * 32 + b' done \\n')\n    except OSError:\n        pass\n", TESTS, False,
     "failed: assert f(1) == 2"),
    ("fake records then os._exit", WRONG + "import os\nfor fd in range(3, 64):\n    try:\n"
     "        os.write(fd, b'ok 0\\nok 1\\nok 2\\ndone \\n')\n    except OSError:\n        pass\nos._exit(0)\n",
     TESTS, False, "exited before tests ran"),
    ("writes a result file", WRONG + f"for p in ('result.json', '/tmp/result.json'):\n    open(p, 'w').write("
     f"{FAKE_RECORD!r})\n", TESTS, False, "failed: assert f(1) == 2"),
    ("walks frames to the harness", WRONG + "import sys\nprint(sys._getframe(1).f_locals)\n", TESTS, False,
     "error: ValueError: frame access is disabled"),
    ("walks a traceback to the harness", WRONG + "try:\n    1 / 0\nexcept Exception as e:\n"
     "    print(e.__traceback__.tb_frame.f_back.f_locals)\n", TESTS, False, "frame access is disabled"),
    ("scans the heap", WRONG + "import gc\nprint(len(gc.get_objects()))\n", TESTS, False,
     "gc.get_objects is disabled"),
    ("ctypes", WRONG + "import ctypes\n", TESTS, False, "ctypes is disabled"),
    ("reads its own memory", WRONG + "open('/proc/self/mem', 'rb')\n", TESTS, False,
     "reading process memory is disabled"),
    ("forked child reports instead", WRONG + "import os, time\nif os.fork():\n    os._exit(0)\n"
     "time.sleep(0.3)\n", TESTS, False, "exited before tests ran"),
    ("exec a new interpreter", WRONG + "import os, sys\nos.execv(sys.executable, [sys.executable, '-c', "
     "'print(1)'])\n", TESTS, False, "exited before tests ran"),
]


@pytest.fixture(scope="module")
def results(docker_sandbox):
    programs = [Program(code, tests) for _, code, tests, _, _ in HOSTILE]
    return dict(zip([row[0] for row in HOSTILE], docker_sandbox.run_many(programs, timeout_s=10), strict=True))


@pytest.mark.docker
@pytest.mark.parametrize(("name", "passes", "reason"), [(r[0], r[3], r[4]) for r in HOSTILE],
                         ids=[r[0] for r in HOSTILE])
def test_hostile_program(results, name, passes, reason) -> None:
    r = results[name]
    assert r.passed is passes, (name, r.reason, r.output[-400:])
    assert reason in r.reason, (name, r.reason)


@pytest.mark.docker
def test_pool_still_healthy_after_hostile_table(results, docker_sandbox) -> None:
    res = docker_sandbox.run_many([ok_program(i) for i in range(4)], timeout_s=5)
    assert all(r.passed for r in res), [r.reason for r in res]
