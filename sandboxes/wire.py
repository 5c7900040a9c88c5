"""What both backends share: the driver they ship, the payload, batching, and records -> RunResult.

The verdict is reached here, in the harness's process: sandboxes.checks splits the tests, the driver
(sandboxes/driver.py) sends back the values of the program's parts as data, and `to_result` decodes them
(never evaluating anything the program sent) and runs the host-side checks. A program passes only when
every test held and the driver recorded that the program returned control after the last one.
"""

from __future__ import annotations

import json
import signal
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

from sandboxes import checks
from sandboxes.base import Program, RunResult

DRIVER_PATH = Path(__file__).with_name("driver.py")
DEFAULT_CAP = 64 * 1024
MAX_BATCH = 32  # programs per driver process
MAX_PAYLOAD = 1_000_000  # bytes of JSON per driver process (argv holds ~2 MB in the container)

# exec_batch(wire programs) -> (raw result dicts in order, driver stderr, reason if the batch ended early)
ExecBatch = Callable[[list[dict]], tuple[list[dict], str, str | None]]


@cache
def driver_source() -> str:
    return DRIVER_PATH.read_text()


def compose(p: Program) -> str:
    """Setup, program and tests as one file (what plain exec of the whole would run)."""
    return "\n".join(part.rstrip("\n") for part in (p.setup, p.code, p.tests) if part.strip()) + "\n"


def signal_reason(rc: int) -> str:
    """The reason for a program process that ended on signal -rc."""
    if rc == -signal.SIGKILL:
        return "killed (memory)"
    if rc == -signal.SIGXCPU:
        return "timeout"
    return f"killed ({signal.Signals(-rc).name})" if -rc in signal.valid_signals() else f"killed ({-rc})"


def _size(p: dict) -> int:
    return len(json.dumps(p)) + 16


def chunks(sources: list[dict], n_workers: int) -> list[list[int]]:
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


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def run_pending(sources: list[dict], exec_batch: ExecBatch, cap: int) -> list[dict]:
    """Raw results for sources; if the driver dies mid-batch, blame the program it was running (a raw
    result with "died") and rerun the rest."""
    results: list[dict] = []
    while len(results) < len(sources):
        t0 = time.monotonic()
        got, err, early = exec_batch(sources[len(results):])
        results += got[: len(sources) - len(results)]
        if len(results) < len(sources):
            results.append({"rc": None, "timeout": early == "timeout", "out": err[-cap:], "recs": "",
                            "dur": time.monotonic() - t0,
                            "died": early or f"error: sandbox runner died ({_last_line(err)})"})
    return results


def parse_lines(data: bytes) -> list[dict]:
    """Complete result lines only (a driver killed mid-write leaves a partial last line)."""
    out = []
    for ln in data.split(b"\n")[:-1]:
        try:
            out.append(json.loads(ln))
        except ValueError:
            break
    return out


def run_programs(programs: list[Program], dispatch: Callable[[list[dict]], list[dict]], cap: int) -> list[RunResult]:
    """Plan each program's tests, send the runnable ones through dispatch (wire dicts -> raw results, in
    order) and decide every verdict here."""
    plans: list[checks.Plan | str] = []
    for p in programs:
        try:
            plans.append(checks.make_plan(p.tests, p.setup))
        except SyntaxError as e:
            plans.append(f"error: SyntaxError in tests: {e.msg} (line {e.lineno})")
    todo = [i for i, pl in enumerate(plans) if isinstance(pl, checks.Plan)]
    raws = dict(zip(todo, dispatch([{"setup": programs[i].setup, "code": programs[i].code,
                                     "steps": plans[i].steps} for i in todo]) if todo else [], strict=True))
    return [RunResult(False, "", plans[i], 0.0) if isinstance(plans[i], str)
            else to_result(plans[i], raws[i], cap) for i in range(len(programs))]


# ---- records -> verdict ----------------------------------------------------------------------------------

_TAGS = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def decode(v: Any, depth: int = 0) -> Any:
    """A value the driver sent (driver.encode's format) as a host object; ValueError when malformed."""
    if v is None or type(v) in (bool, int, float, str):
        return v
    if depth > 120 or type(v) is not dict or len(v) not in (1, 2):
        raise ValueError("a malformed value")
    (tag, body), *rest = v.items()
    if tag in _TAGS and type(body) is list:
        return _TAGS[tag](decode(x, depth + 1) for x in body)
    if tag == "dict" and type(body) is list and all(type(kv) is list and len(kv) == 2 for kv in body):
        return {decode(k, depth + 1): decode(x, depth + 1) for k, x in body}
    if tag == "deque" and type(body) is list and rest and rest[0][0] == "maxlen":
        return deque((decode(x, depth + 1) for x in body), rest[0][1])
    if tag == "bytes" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "complex" and type(body) is list and len(body) == 2:
        return complex(*(float(x) for x in body))
    if tag == "fraction" and type(body) is list and len(body) == 2 and all(type(x) is int for x in body):
        return Fraction(*body)
    if tag == "decimal" and type(body) is str and len(body) < 1000:
        return Decimal(body)
    if tag == "range" and type(body) is list and len(body) == 3 and all(type(x) is int for x in body):
        return range(*body)
    if tag == "object" and type(body) is str:
        return checks.Opaque(body[:80])
    if tag == "unsupported" and type(body) is str:
        raise checks.NotData(f"got {body[:120]}, not a built-in value")
    raise ValueError("a malformed value")


def records(text: str) -> tuple[dict[int, tuple[str, Any]], list, str]:
    """Step outcomes (first record per step wins), the final record (exit/err/done) if any, and the last
    phase reached ("", "start" or "tests")."""
    outcomes: dict[int, tuple[str, Any]] = {}
    final: list = []
    phase = ""
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if type(rec) is not list or not rec or rec[0] not in ("val", "raise", "exit", "err", "done", "start",
                                                               "tests"):
            continue
        kind = rec[0]
        if kind in ("start", "tests"):
            phase = kind
            continue
        if kind in ("val", "raise") and len(rec) == 3 and type(rec[1]) is int and rec[1] not in outcomes:
            if kind == "raise":
                outcomes[rec[1]] = ("raise", str(rec[2])[:300])
                continue
            try:
                outcomes[rec[1]] = ("val", decode(rec[2]))
            except checks.NotData as e:
                outcomes[rec[1]] = ("bad", e.args[0])
            except (ValueError, TypeError, ArithmeticError, RecursionError) as e:
                outcomes[rec[1]] = ("bad", f"got a malformed value ({type(e).__name__})")
        elif kind in ("exit", "err", "done") and not final:
            final = [str(x)[:300] for x in rec]
    return outcomes, final, phase


def to_result(plan: checks.Plan, raw: dict, cap: int) -> RunResult:
    """The verdict for one program from its raw result (see the module docstring)."""
    out, dur = str(raw.get("out", ""))[: cap + 64], round(float(raw.get("dur", 0.0)), 4)
    outcomes, final, phase = records(str(raw.get("recs", "")))
    n, held, failures, reached = len(plan.tests), 0, [], 0
    for t in plan.tests:
        try:
            ok, why = checks.check(plan, t, outcomes)
        except checks.Missing:
            break
        reached += 1
        held += ok
        if not ok:
            failures.append(why)
    step_test = {k: i for i, t in enumerate(plan.tests) for k in t.steps}

    def result(passed: bool, reason: str) -> RunResult:
        return RunResult(passed, out, reason, dur, held, n)

    before = "before tests ran" if n else "before the end of the program"
    if raw.get("died"):
        return result(False, raw["died"])
    if final[:1] == ["done"] and reached == n:
        return result(not failures, failures[0] if failures else "passed")
    if final[:1] == ["err"] and len(final) == 3:
        return result(False, f"error in setup: {final[2]}" if final[1] == "setup" else f"error: {final[2]}")
    if final[:1] == ["exit"] and len(final) == 3:
        if final[1] in ("setup", "code"):
            return result(False, f"exited {before} (SystemExit({final[2]}))")
        k = int(final[1]) if final[1].isdigit() else -1
        return result(False, f"exited during test {step_test.get(k, reached) + 1} (SystemExit)")
    rc = raw.get("rc")
    if raw.get("timeout"):
        return result(False, "timeout")
    if isinstance(rc, int) and rc < 0:
        return result(False, signal_reason(rc))
    if failures:
        return result(False, f"{failures[0]}; then exited during test {reached + 1} (status {rc})")
    if phase != "tests" and not outcomes:
        return result(False, f"exited {before} (status {rc}, no test record)")
    return result(False, f"exited during test {reached + 1} (status {rc}, no test record)")
