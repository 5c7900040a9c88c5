"""LocalSandbox: run programs in subprocesses on this machine with rlimits. NOT isolation; opt-in only.

Also holds the helpers both backends share (program composition, runner protocol, result mapping).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Self

from sandboxes.base import Program, RunResult, SandboxUnavailable

RUNNER_PATH = Path(__file__).with_name("image") / "runner.py"
DEFAULT_CAP = 64 * 1024
MAX_BATCH = 32  # programs per runner process
MAX_PAYLOAD = 1_000_000  # bytes of JSON per runner process (argv holds ~2 MB in the container)

# exec_batch(programs) -> (result dicts in order, runner stderr, reason if the batch ended early or None)
ExecBatch = Callable[[list[dict[str, str]]], tuple[list[dict], str, str | None]]


@cache
def runner_source() -> str:
    return RUNNER_PATH.read_text()


def compose(p: Program) -> str:
    """Setup, program and tests as one file (for bare baselines; the sandboxes send the parts, see to_wire)."""
    return "\n".join(part.rstrip("\n") for part in (p.setup, p.code, p.tests) if part.strip()) + "\n"


def to_wire(p: Program) -> dict[str, str]:
    """What the runner receives for one program: its parts, kept apart (the runner parses the tests)."""
    return {"code": p.code, "tests": p.tests, "setup": p.setup}


def _size(p: dict[str, str] | str) -> int:
    return (len(p) if isinstance(p, str) else sum(len(v) for v in p.values())) + 64


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def to_result(d: dict, cap: int) -> RunResult:
    """Map one runner record to a RunResult. The runner decides passed/reason from its own test records
    (see sandboxes/image/runner.py); the exit-status mapping below only serves records without a verdict."""
    out, rc = d["out"][:cap + 64], d["rc"]
    if "passed" in d:
        return RunResult(passed=bool(d["passed"]), output=out, reason=d["reason"], duration_s=round(d["dur"], 4),
                         tests_run=int(d.get("tests_run", 0)), tests_total=int(d.get("tests_total", 0)))
    if d["timeout"]:
        reason = "timeout"
    elif rc == 0:
        reason = "passed"
    elif rc == -signal.SIGKILL:
        reason = "killed (memory)"
    elif rc == -signal.SIGXCPU:
        reason = "timeout"
    elif rc < 0:
        reason = f"killed ({signal.Signals(-rc).name})" if -rc in signal.valid_signals() else f"killed ({-rc})"
    else:
        reason = f"error: {_last_line(out)}"
    return RunResult(passed=False, output=out, reason=reason if reason != "passed" else "error: no test record",
                     duration_s=round(d["dur"], 4))


def chunks(sources: list[dict[str, str]], n_workers: int) -> list[list[int]]:
    """Split program indices into batches: enough to keep every worker busy, bounded in count and size."""
    size = max(1, min(MAX_BATCH, -(-len(sources) // (n_workers * 3))))
    out: list[list[int]] = [[]]
    used = 0
    for i, s in enumerate(sources):
        if out[-1] and (len(out[-1]) >= size or used + _size(s) > MAX_PAYLOAD):
            out.append([])
            used = 0
        out[-1].append(i)
        used += _size(s)
    return [c for c in out if c]


def run_pending(sources: list[dict[str, str]], exec_batch: ExecBatch, cap: int) -> list[RunResult]:
    """Run sources through exec_batch; if the runner dies mid-batch, blame the program it was running and
    rerun the rest."""
    results: list[RunResult] = []
    while len(results) < len(sources):
        t0 = time.monotonic()
        got, err, early = exec_batch(sources[len(results):])
        results += [to_result(d, cap) for d in got]
        if len(results) < len(sources):
            reason = early or f"error: sandbox runner died ({_last_line(err)})"
            results.append(RunResult(False, err[-cap:], reason, round(time.monotonic() - t0, 4)))
    return results


def parse_lines(data: bytes) -> list[dict]:
    """Complete result lines only (a runner killed mid-write leaves a partial last line)."""
    out = []
    for ln in data.split(b"\n")[:-1]:
        try:
            out.append(json.loads(ln))
        except ValueError:
            break
    return out


def _user_procs() -> int:
    uid, n = os.getuid(), 0
    for name in os.listdir("/proc"):
        try:
            n += name.isdigit() and os.stat(f"/proc/{name}").st_uid == uid
        except OSError:
            pass
    return n


class LocalSandbox:
    """Subprocess per program with rlimits (CPU, address space, file size, NPROC for non-root), a wall-clock
    timeout and an output cap, in a fresh temp dir. Programs can still read and write your files."""

    def __init__(self, allow: bool = False, *, timeout_s: float = 10.0, memory_mb: int = 256, pids: int = 64,
                 fsize_mb: int = 16, output_cap: int = DEFAULT_CAP, workers: int = 2,
                 python: str = sys.executable) -> None:
        if not allow:
            raise SandboxUnavailable("LocalSandbox runs untrusted code without isolation: pass allow=True to opt "
                                     "in, or use the docker backend (make_sandbox('docker')).")
        warnings.warn("LocalSandbox is not isolation: programs run as you, on this machine, with only rlimits.",
                      RuntimeWarning, stacklevel=2)
        self.timeout_s, self.memory_mb, self.pids, self.fsize_mb = timeout_s, memory_mb, pids, fsize_mb
        self.output_cap, self.workers, self.python = output_cap, workers, python
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def run(self, program: Program, timeout_s: float | None = None) -> RunResult:
        return self.run_many([program], timeout_s)[0]

    def run_many(self, programs: list[Program], timeout_s: float | None = None) -> list[RunResult]:
        t = float(timeout_s or self.timeout_s)
        sources = [to_wire(p) for p in programs]
        batches = chunks(sources, self.workers)
        with ThreadPoolExecutor(max(1, min(self.workers, len(batches)))) as ex:
            parts = list(ex.map(lambda idx: run_pending([sources[i] for i in idx],
                                                        lambda s: self._exec(s, t), self.output_cap), batches))
        out: list[RunResult | None] = [None] * len(programs)
        for idx, res in zip(batches, parts, strict=True):
            for i, r in zip(idx, res, strict=True):
                out[i] = r
        return out  # type: ignore[return-value]

    def _exec(self, sources: list[dict[str, str]], t: float) -> tuple[list[dict], str, str | None]:
        cfg = {"progs": sources, "timeout": t, "cap": self.output_cap, "mem": self.memory_mb << 20,
               "fsize": self.fsize_mb << 20, "python": self.python, "killall": False,
               "nproc": 0 if os.getuid() == 0 else _user_procs() + self.pids}
        proc = subprocess.Popen([self.python, "-I", "-B", str(RUNNER_PATH)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        with self._lock:
            self._procs.add(proc)
        early = None
        try:
            out, err = proc.communicate(json.dumps(cfg).encode(), timeout=len(sources) * (t + 2) + 10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            early = "timeout"
        finally:
            with self._lock:
                self._procs.discard(proc)
        return parse_lines(out), err.decode("utf-8", "replace"), early

    def close(self) -> None:
        with self._lock:
            for p in list(self._procs):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
