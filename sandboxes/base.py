"""The Sandbox interface: run untrusted Python with tests, get pass/fail and a reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Program:
    code: str  # the model's program
    tests: str  # test code appended after it (asserts); empty for a plain run
    setup: str = ""  # code run before the program (MBPP's test_setup_code)


@dataclass(frozen=True)
class RunResult:
    passed: bool
    output: str  # stdout+stderr, capped
    reason: str  # "passed", "timeout", "error: <last line>", "killed (memory)", ...
    duration_s: float


class SandboxUnavailable(RuntimeError):
    """The backend cannot run (e.g. Docker not reachable); the message says how to fix it."""


class Sandbox(Protocol):
    def run(self, program: Program, timeout_s: float | None = None) -> RunResult: ...

    def run_many(self, programs: list[Program], timeout_s: float | None = None) -> list[RunResult]: ...

    def close(self) -> None: ...
