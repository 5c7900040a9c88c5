"""Shared fixtures: the repo on sys.path, the loopback server, one MLflow/LLM store per session."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SEPO_DATA_DIR", str(ROOT.parent / "shared" / "data"))
# A shell's background job (`make test &` in a script) starts with SIGINT ignored, and an ignored signal
# stays ignored through exec: the Ctrl-C tests' children would never see their SIGINT. Catching it here
# gives every child the default again (a caught signal resets on exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from tests.loopback import LoopbackServer


@pytest.fixture
def loopback():
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def local_server():
    """The embedded llama.cpp server with the 0.5B model, started once per test session
    (SEPO_LOCAL_SERVER=python: the fallback server, as experiment configs would get it)."""
    from harness.llm.local import LlamaServer

    backend = os.environ.get("SEPO_LOCAL_SERVER", "llama-server")
    with LlamaServer("qwen2.5-coder-0.5b", n_ctx=2048, backend=backend) as srv:
        yield srv
