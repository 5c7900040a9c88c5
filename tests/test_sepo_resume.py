"""Kill-and-resume: a SePO run SIGKILLed mid-way and resumed ends exactly like an uninterrupted run,
and no request whose reply was already paid for (stored in the cache) is ever sent again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from harness.llm.cache import ResponseCache, cache_key
from tests.loopback import LoopbackServer
from tests.worlds import archive_view, reply

ROOT = Path(__file__).resolve().parents[1]
TASK_CONCURRENCY = 2  # the worker's task endpoint limit: at most this many requests in flight at a kill


def _run_worker(url: str, d: Path, *, kill_after: int | None = None) -> bool:
    """Run the worker; with kill_after, SIGKILL it once its checkpoint holds that many candidates."""
    ck, out = d / "ck.json", d / "out.json"
    proc = subprocess.Popen([sys.executable, "-m", "tests.worlds", url, str(d / "cache.sqlite"),
                             str(ck), str(out)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if kill_after is not None and ck.is_file():
                try:
                    n = len(json.loads(ck.read_text())["archive"]["entries"])
                except (json.JSONDecodeError, OSError):  # cannot happen with os.replace, but be safe
                    n = 0
                if n >= kill_after:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return False
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.returncode
    return True


def _key(body: dict) -> str:
    params = {k: body[k] for k in ("temperature", "max_tokens", "seed") if k in body}
    return cache_key(body["model"], body["messages"], params, 0)


def _canon(body: dict) -> str:
    return json.dumps(body, sort_keys=True)


def test_sigkill_and_resume_matches_an_uninterrupted_run(tmp_path):
    with LoopbackServer(reply=reply, latency_s=0.02) as ref_srv:
        assert _run_worker(ref_srv.url, tmp_path / "ref")
        ref_requests = list(ref_srv.requests)
    ref = json.loads((tmp_path / "ref" / "out.json").read_text())
    # sanity: our reconstruction of cache keys from request bodies matches what the client stored
    assert {_key(b) for b in ref_requests} == set(_cache_keys(tmp_path / "ref" / "cache.sqlite"))

    run = tmp_path / "run"
    with LoopbackServer(reply=reply, latency_s=0.02) as srv:
        assert not _run_worker(srv.url, run, kill_after=4)
        killed = list(srv.requests)
        paid = set(_cache_keys(run / "cache.sqlite"))  # replies stored before the kill
        mid = json.loads((run / "ck.json").read_text())
        assert 4 <= len(mid["archive"]["entries"]) < len(ref["archive"])
        assert _run_worker(srv.url, run)
        resumed = srv.requests[len(killed):]
    out = json.loads((run / "out.json").read_text())

    assert archive_view(out["archive"]) == archive_view(ref["archive"])  # texts, scores, lineage, admission
    assert out["new"] == len(ref["archive"]) - len(mid["archive"]["entries"])
    # no paid request is repeated; the only requests sent twice are those in flight at the kill
    assert not [b for b in resumed if _key(b) in paid]
    lost = [b for b in killed if _key(b) not in paid]
    assert len(lost) <= TASK_CONCURRENCY
    assert Counter(map(_canon, killed)) - Counter(map(_canon, lost)) + Counter(map(_canon, resumed)) \
        == Counter(map(_canon, ref_requests))


def _cache_keys(path: Path) -> list[str]:
    c = ResponseCache(path, "read-only")
    try:
        return [k for (k,) in c._db.execute("SELECT key FROM responses")]
    finally:
        c.close()
