"""One conformance suite, run against every sandbox backend (docker and local)."""

from __future__ import annotations

import time

import pytest

from sandboxes.base import Program, RunResult

pytest.register_assert_rewrite("tests.sandbox_fixtures")
from tests.sandbox_fixtures import ok_program

pytest_plugins = ["tests.sandbox_fixtures"]  # one session-wide sandbox per backend

CAP = 64 * 1024


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker), "local"])
def sandbox(request):
    return request.getfixturevalue(f"{request.param}_sandbox")


def test_passing_program(sandbox) -> None:
    r = sandbox.run(ok_program(3))
    assert isinstance(r, RunResult)
    assert (r.passed, r.reason) == (True, "passed"), r
    assert r.duration_s > 0


def test_failing_assert_names_the_test_and_the_value(sandbox) -> None:
    r = sandbox.run(Program("def f(x):\n    return x\n", "assert f(1) == 2\n"))
    assert not r.passed
    assert r.reason == "failed: assert f(1) == 2 (got 1)", r.reason
    assert (r.tests_run, r.tests_total) == (0, 1)


def test_exception_in_a_test_has_a_traceback(sandbox) -> None:
    r = sandbox.run(Program("def f(x):\n    return 1 / x\n", "assert f(1) == 1\nassert f(0) == 0\n"))
    assert not r.passed and r.reason == "error: ZeroDivisionError: division by zero (in assert f(0) == 0)", r.reason
    assert "Traceback" in r.output and 'File "main.py", line 2, in f' in r.output, r.output
    assert (r.tests_run, r.tests_total) == (1, 2)


def test_syntax_error(sandbox) -> None:
    r = sandbox.run(Program("def f(x) return x\n", "assert f(1) == 1\n"))
    assert not r.passed and "SyntaxError" in r.reason, r.reason


def test_runtime_error_and_exits_never_pass(sandbox) -> None:
    r1, r2, r3 = sandbox.run_many([Program("print(undefined_name)", ""), Program("import sys; sys.exit(3)", ""),
                                   Program("import sys; sys.exit(0)", "")])
    assert "NameError" in r1.reason and not r1.passed
    assert not r2.passed and r2.reason == "exited before the end of the program (SystemExit(3))", r2.reason
    assert not r3.passed and r3.reason == "exited before the end of the program (SystemExit(0))", r3.reason


def test_timeout_returns_promptly(sandbox) -> None:
    t0 = time.monotonic()
    r = sandbox.run(Program("while True:\n    pass\n", ""), timeout_s=1.5)
    wall = time.monotonic() - t0
    assert (r.passed, r.reason) == (False, "timeout"), r
    assert 1.4 <= wall < 1.5 + 2.0, wall


def test_huge_output_is_capped(sandbox) -> None:
    code = "import sys\nsys.stdout.write('x' * 20_000_000)\nprint()\nprint('THE-END')\n"
    r = sandbox.run(Program(code, "assert True\n"))
    assert r.passed, r.reason
    assert len(r.output) <= CAP + 200, len(r.output)
    assert "truncated" in r.output and r.output.rstrip().endswith("THE-END")


def test_error_after_huge_output_keeps_last_line(sandbox) -> None:
    r = sandbox.run(Program("print('y' * 5_000_000)\nraise ValueError('boom')\n", ""))
    assert not r.passed and r.reason == "error: ValueError: boom", r.reason


def test_run_many_preserves_order(sandbox) -> None:
    progs = [Program(f"print('out-{i}')", f"assert {i} % 3 != 0\n") for i in range(25)]
    res = sandbox.run_many(progs)
    assert len(res) == 25
    for i, r in enumerate(res):
        assert f"out-{i}" in r.output and f"out-{i + 1}\n" not in r.output
        assert r.passed == (i % 3 != 0), (i, r)
    assert sandbox.run_many([]) == []


def test_setup_runs_first_then_code_then_tests(sandbox) -> None:
    p = Program(code="print('code', BASE)\ndef g():\n    return BASE * 2\n", tests="print('tests')\nassert g() == 14\n",
                setup="print('setup')\nBASE = 7\n")
    r = sandbox.run(p)
    assert r.passed, r
    assert r.output.split() == ["setup", "code", "7", "tests"]


def test_unicode_and_stderr_captured(sandbox) -> None:
    r = sandbox.run(Program("import sys\nprint('héllo ✓')\nprint('to-stderr', file=sys.stderr)\n", ""))
    assert r.passed and "héllo ✓" in r.output and "to-stderr" in r.output
