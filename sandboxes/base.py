"""The Sandbox interface: run untrusted Python with tests, get pass/fail and a reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Program:
    code: str  # the model's program
    tests: str  # test statements (asserts), split between the sandbox and the host; empty for a plain run
    setup: str = ""  # code run before the program (MBPP's test_setup_code)


@dataclass(frozen=True)
class RunResult:
    """passed is True only when every test held, compared in the harness's process on the values the
    sandbox sent back, and the program returned control after the last one (never from an exit status)."""

    passed: bool
    output: str  # stdout+stderr, capped
    reason: str  # "passed", "failed: <test> (got ...)", "error: <Type: message>", "exited before tests ran
    #              (...)", "timeout", "killed (memory)", ...
    duration_s: float
    tests_run: int = 0  # test statements that executed and held
    tests_total: int = 0  # test statements in Program.tests


class SandboxUnavailable(RuntimeError):
    """The backend cannot run (e.g. Docker not reachable); the message says how to fix it."""


class Sandbox(Protocol):
    def run(self, program: Program, timeout_s: float | None = None) -> RunResult: ...

    def run_many(self, programs: list[Program], timeout_s: float | None = None) -> list[RunResult]: ...

    def close(self) -> None: ...
