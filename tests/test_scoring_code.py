"""Code scoring conformance: hostile and ordinary programs against MBPP-style tests, in the real Docker sandbox.

Each row: (name, program, tests, passes?, a piece of the recorded reason). A wrong function (f(x) = x where
the tests want 2x) followed by a trick must fail with its reason; the honest rows, including the ordinary
programs the field's exec protocol accepts (guarded doctest/unittest, traceback, asyncio, ...), must pass.
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

# The issue-20 attacks: each looks for the expected values inside its own process (where the old driver
# kept them) and returns what it finds; the driver now holds only the calls into the program, so each
# finds nothing and returns None.
SEARCH = (
    "import re\n"
    "def _search(things, x):\n"
    "    pat = re.compile(r'f\\(%d\\)\\s*==\\s*(\\d+)' % x)\n"
    "    for t in things:\n"
    "        t = t.decode('latin-1') if isinstance(t, bytes) else t\n"
    "        m = pat.search(t) if isinstance(t, str) else None\n"
    "        if m:\n"
    "            return int(m.group(1))\n"
    "    return None\n"
    "def _strings(v, depth=0):\n"
    "    if isinstance(v, (str, bytes)):\n"
    "        yield v\n"
    "    elif depth < 6 and isinstance(v, (list, tuple, set, frozenset)):\n"
    "        for w in v:\n"
    "            yield from _strings(w, depth + 1)\n"
    "    elif depth < 6 and isinstance(v, dict):\n"
    "        for w in v.values():\n"
    "            yield from _strings(w, depth + 1)\n"
    "    elif type(v).__name__ == 'code':\n"
    "        yield from _strings(v.co_consts, depth + 1)\n"
)
SIGNAL_FRAME_WALK = SEARCH + (
    "import importlib.util, os\n"
    "def f(x):\n"
    "    spec = importlib.util.find_spec('_signal')\n"
    "    sig = importlib.util.module_from_spec(spec)\n"
    "    spec.loader.exec_module(sig)\n"
    "    seen = []\n"
    "    def handler(n, frame):\n"
    "        while frame is not None:\n"
    "            seen.extend(_strings(list(frame.f_locals.values()) + list(frame.f_globals.values())))\n"
    "            frame = frame.f_back\n"
    "    sig.signal(sig.SIGUSR1, handler)\n"
    "    os.kill(os.getpid(), sig.SIGUSR1)\n"
    "    return _search(seen, x)\n"
)
PROC_MEM = SEARCH + (
    "import os, re\n"
    "def f(x):\n"
    "    d = os.open('/proc/self', os.O_RDONLY)\n"
    "    maps = open('//proc/self/maps').read().splitlines()\n"
    "    try:\n"
    "        mem = os.open('mem', os.O_RDONLY, dir_fd=d)\n"
    "    except OSError:  # the driver's processes are not dumpable: read what /proc allows\n"
    "        return _search([open('/proc/self/cmdline', 'rb').read()], x)\n"
    "    chunks = []\n"
    "    for line in maps:\n"
    "        lo, hi = (int(v, 16) for v in line.split()[0].split('-'))\n"
    "        if 'r' in line.split()[1] and hi - lo < 64 << 20:\n"
    "            try:\n"
    "                chunks.append(os.pread(mem, hi - lo, lo))\n"
    "            except OSError:\n"
    "                pass\n"
    "    return _search(chunks, x)\n"
)
SUBINTERPRETER = (
    "import _xxsubinterpreters as si, os\n"
    "def f(x):\n"
    "    i = si.create()\n"
    "    si.run_string(i, 'import gc, re\\nhits = [m for o in gc.get_objects() if isinstance(o, str) '\n"
    "                     'for m in re.findall(r\"f\\\\(1\\\\) == (\\\\d+)\", o)]\\n'\n"
    "                     'open(\"/tmp/oracle\", \"w\").write(hits[0] if hits else \"\")')\n"
    "    got = open('/tmp/oracle').read() if os.path.exists('/tmp/oracle') else ''\n"
    "    return int(got) if got else None\n"
)
GC_SCAN = SEARCH + "import gc\ndef f(x):\n    return _search(_strings(gc.get_objects()), x)\n"
SHADOW_DURING = (
    "import builtins, math\n"
    "_set, _isclose = builtins.set, math.isclose\n"
    "calls = [0]\n"
    "def f(x):\n"
    "    calls[0] += 1\n"
    "    builtins.set = lambda *a: 1\n"
    "    math.isclose = lambda *a, **k: True\n"
    "    if calls[0] == 3:\n"
    "        builtins.set, math.isclose = _set, _isclose\n"
    "    return [x]\n"
)
FORGE = ("import os, json\ndef f(x):\n    return x\nfor fd in range(3, 64):\n    try:\n"
         "        os.write(fd, ({lines!r}).encode())\n    except OSError:\n        pass\n{after}")

HOSTILE: list[tuple[str, str, str, bool, str]] = [
    # --- honest programs, including the ordinary ones the old driver failed ------------------------------
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
    ("guarded doctest.testmod()", RIGHT.replace("return", '"""\n    >>> f(2)\n    4\n    """\n    return')
     + "if __name__ == '__main__':\n    import doctest\n    doctest.testmod()\n", TESTS, True, "passed"),
    ("guarded unittest.main()", RIGHT + "import unittest\nclass T(unittest.TestCase):\n    def test(self):\n"
     "        self.assertEqual(f(1), 2)\nif __name__ == '__main__':\n    unittest.main()\n", TESTS, True, "passed"),
    ("traceback.print_exc() in except", "import traceback\ndef f(x):\n    try:\n        return 2 * x\n"
     "    except Exception:\n        traceback.print_exc()\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n"
     "    traceback.print_exc()\n", TESTS, True, "passed"),
    ("asyncio.run", "import asyncio\nasync def g(x):\n    return 2 * x\ndef f(x):\n    return asyncio.run(g(x))\n",
     TESTS, True, "passed"),
    ("signal.alarm guard", "import signal\ndef f(x):\n    signal.signal(signal.SIGALRM, lambda *a: None)\n"
     "    signal.alarm(5)\n    try:\n        return 2 * x\n    finally:\n        signal.alarm(0)\n", TESTS, True,
     "passed"),
    ("logging.exception", "import logging\ndef f(x):\n    try:\n        {}[x]\n    except KeyError:\n"
     "        logging.exception('no key')\n    return 2 * x\n", TESTS, True, "passed"),
    ("thread pool left open", "from concurrent.futures import ThreadPoolExecutor\nPOOL = ThreadPoolExecutor(2)\n"
     "def f(x):\n    return POOL.submit(lambda: 2 * x).result()\n", TESTS, True, "passed"),
    ("daemon thread left running", "import threading, time\n" + RIGHT
     + "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n", TESTS, True, "passed"),
    ("example prints and typing imports", "from typing import List, Optional\n" + RIGHT
     + "print(f(3))\nprint('example:', [f(i) for i in range(3)])\n", TESTS, True, "passed"),
    ("values Python compares equal", "from fractions import Fraction\nfrom decimal import Decimal\n"
     "from collections import UserList, OrderedDict, deque\n"
     "def f(x):\n    return [Fraction(40), Decimal('2.5'), UserList([1]), OrderedDict(a=1), 3.0, True][x]\n",
     "assert f(0) == 40\nassert f(1) == 2.5\nassert f(2) == [1]\nassert f(3) == {'a': 1}\nassert f(4) == 3\n"
     "assert f(5) == 1\n", True, "passed"),
    # --- early exits -------------------------------------------------------------------------------------
    ("sys.exit(0)", WRONG + "import sys\nsys.exit(0)\n", TESTS, False, "exited before tests ran (SystemExit(0))"),
    ("os._exit(0)", WRONG + "import os\nos._exit(0)\n", TESTS, False, "exited before tests ran (status 0"),
    ("raise SystemExit(main())", WRONG + "def main():\n    return 0\nraise SystemExit(main())\n", TESTS, False,
     "exited before tests ran (SystemExit(0))"),
    ("exit() builtin", WRONG + "exit()\n", TESTS, False, "exited before tests ran"),
    ("atexit handler os._exit(0)", WRONG + "import atexit, os\natexit.register(lambda: os._exit(0))\n", TESTS,
     False, "failed: assert f(1) == 2 (got 1)"),
    ("unguarded unittest.main()", WRONG + "import unittest\nunittest.main()\n", TESTS, False,
     "exited before tests ran (SystemExit("),
    ("sys.exit inside the function", "import sys\ndef f(x):\n    sys.exit(0)\n", TESTS, False,
     "exited during test 1"),
    ("os._exit inside the function", "import os\ndef f(x):\n    os._exit(0)\n", TESTS, False,
     "exited during test 1"),
    ("os.kill(self, SIGKILL)", WRONG + "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", TESTS, False,
     "killed"),
    ("forked child reports instead", WRONG + "import os, time\nif os.fork():\n    os._exit(0)\n"
     "time.sleep(1)\n", TESTS, False, "exited before tests ran"),
    ("exec a new interpreter", WRONG + "import os, sys\nos.execv(sys.executable, [sys.executable, '-c', "
     "'print(1)'])\n", TESTS, False, "exited before tests ran"),
    # --- hooks and replaced names: the host's comparison does not see them -------------------------------
    ("sys.excepthook swallows errors", WRONG + "import sys\nsys.excepthook = lambda *a: None\n", TESTS, False,
     "failed: assert f(1) == 2 (got 1)"),
    ("sys.settrace", WRONG + "import sys\nsys.settrace(lambda *a: None)\n", TESTS, False,
     "failed: assert f(1) == 2 (got 1)"),
    ("builtins.AssertionError replaced", WRONG + "import builtins\nbuiltins.AssertionError = type('X', (Exception,),"
     " {})\n", TESTS, False, "failed: assert f(1) == 2 (got 1)"),
    ("builtins.isinstance replaced", WRONG + "import builtins\nbuiltins.isinstance = lambda *a: True\n", TESTS,
     False, "failed: assert f(1) == 2 (got 1)"),
    ("__builtins__ rebound", WRONG + "__builtins__ = {}\n", TESTS, False, "failed: assert f(1) == 2 (got 1)"),
    ("builtin shadowed for the tests", "def set(x):\n    return 1\ndef g(x):\n    return [9]\n",
     "assert set(g(1)) == set([1, 2])\n", False, "failed: assert set(g(1)) == set([1, 2]) (got [9])"),
    ("math.isclose patched", "import math\nmath.isclose = lambda *a, **k: True\n" + WRONG,
     "assert math.isclose(f(1), 2.0)\n", False, "failed: assert math.isclose(f(1), 2.0) (got 1)"),
    ("set and math.isclose shadowed during the tests, restored after", SHADOW_DURING,
     "assert set(f(1)) == set([2])\nassert math.isclose(f(2)[0], 4.0)\nassert f(3) == [6]\n", False,
     "failed: assert set(f(1)) == set([2]) (got [1])"),
    # --- issue 20: looking for the expected values in the program's own process --------------------------
    ("second _signal copy, handler frame walk", SIGNAL_FRAME_WALK, TESTS, False,
     "failed: assert f(1) == 2 (got None)"),
    ("/proc/self/mem via dir_fd and //proc", PROC_MEM, TESTS, False, "failed: assert f(1) == 2 (got None)"),
    ("sub-interpreter scans the heap", SUBINTERPRETER, TESTS, False, "failed: assert f(1) == 2 (got None)"),
    ("gc scan of every object", GC_SCAN, TESTS, False, "failed: assert f(1) == 2 (got None)"),
    # --- objects that lie about equality or truth ---------------------------------------------------------
    ("always-equal object", ALWAYS_EQ + "def f(x):\n    return A()\n", TESTS, False,
     "(got a A, not a built-in value)"),
    ("always-equal int subclass", "class B(int):\n    def __eq__(self, o):\n        return True\n"
     "def f(x):\n    return B(0)\n", TESTS, False, "failed: assert f(1) == 2 (got 0)"),
    ("always-equal inside a list", ALWAYS_EQ + "def f(x):\n    return [A()]\n", "assert f(1) == [2]\n", False,
     "not a built-in value"),
    ("always-equal on the right side", ALWAYS_EQ + "def f(x):\n    return A()\n", "assert 2 == f(1)\n", False,
     "not a built-in value"),
    ("always-unequal for !=", ALWAYS_EQ + "def f(x):\n    return A()\n", "assert f(1) != 5\n", False,
     "not a built-in value"),
    ("always-true __bool__", "class T:\n    def __bool__(self):\n        return True\ndef f(x):\n    return T()\n",
     "assert f(1)\n", False, "got a T, not a built-in value"),
    ("default-truth object compared", "def f(x):\n    return object()\n", "assert f(1) != 2\n", False,
     "got a object, not a built-in value"),
    ("str subclass with lying __eq__", "class S(str):\n    def __eq__(self, o):\n        return True\n"
     "def f(x):\n    return S('no')\n", "assert f(1) == 'yes'\n", False, "failed: assert f(1) == 'yes' (got 'no')"),
    ("lying __contains__", "class C(list):\n    def __contains__(self, o):\n        return True\n"
     "def f(x):\n    return C()\n", "assert 3 in f(1)\n", False, "failed: assert 3 in f(1) (got [])"),
    ("__class__ claims list", "class L:\n    __class__ = list\ndef f(x):\n    return L()\n", "assert f(1) == []\n",
     False, "not a built-in value"),
    ("value too large to send", "def f(x):\n    return 'x' * 3_000_000\n", "assert f(1) == 'x'\n", False,
     "got a value of more than 1 MB, not a built-in value"),
    ("huge int", "def f(x):\n    return 10 ** 5000\n", "assert f(1) == 2\n", False, "more than 4000 digits"),
    ("deep nesting", "def f(x):\n    v = []\n    for _ in range(500):\n        v = [v]\n    return v\n",
     "assert f(1) == []\n", False, "nested more than 100 deep"),
    # --- forging the driver's records ---------------------------------------------------------------------
    ("prints a passing record", WRONG + f"print({FAKE_RECORD!r})\nprint('passed')\n", TESTS, False,
     "failed: assert f(1) == 2"),
    ("writes fake done records to every fd", FORGE.format(lines='["done"]\n["ok", 0]\n', after="import os\n"
     "os._exit(0)\n"), TESTS, False, "exited before tests ran (status 0, no test record)"),
    ("writes malformed values to every fd", FORGE.format(lines='["val", 0, {"set": [{"list": []}]}]\n'
     '["val", 1, {"fraction": [1, 0]}]\n["val", 2, {"eval": "2 * 3"}]\n["done"]\n', after="import os\nos._exit(0)\n"),
     TESTS, False, "failed: assert f(1) == 2 (got a malformed value (TypeError))"),
    ("writes a result file", WRONG + f"for p in ('result.json', '/tmp/result.json'):\n    open(p, 'w').write("
     f"{FAKE_RECORD!r})\n", TESTS, False, "failed: assert f(1) == 2"),
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
