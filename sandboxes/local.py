"""LocalSandbox: run programs in subprocesses on this machine with rlimits. NOT isolation; opt-in only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Self

from sandboxes.base import Program, RunResult, SandboxUnavailable
from sandboxes.wire import DEFAULT_CAP, DRIVER_PATH, chunks, parse_lines, run_pending, run_programs


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
        return run_programs(programs, lambda sources: self._dispatch(sources, t), self.output_cap)

    def _dispatch(self, sources: list[dict], t: float) -> list[dict]:
        batches = chunks(sources, self.workers)
        with ThreadPoolExecutor(max(1, min(self.workers, len(batches)))) as ex:
            parts = list(ex.map(lambda idx: run_pending([sources[i] for i in idx],
                                                        lambda s: self._exec(s, t), self.output_cap), batches))
        out: list[dict] = [{}] * len(sources)
        for idx, res in zip(batches, parts, strict=True):
            for i, r in zip(idx, res, strict=True):
                out[i] = r
        return out

    def _exec(self, sources: list[dict], t: float) -> tuple[list[dict], str, str | None]:
        cfg = {"progs": sources, "timeout": t, "cap": self.output_cap, "mem": self.memory_mb << 20,
               "fsize": self.fsize_mb << 20, "killall": False,
               "nproc": 0 if os.getuid() == 0 else _user_procs() + self.pids}
        proc = subprocess.Popen([self.python, "-I", "-B", str(DRIVER_PATH)], stdin=subprocess.PIPE,
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
