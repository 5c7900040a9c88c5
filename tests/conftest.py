"""Shared fixtures: the repo on sys.path, the loopback server, one MLflow/LLM store per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SEPO_DATA_DIR", str(ROOT.parent / "shared" / "data"))

from tests.loopback import LoopbackServer


@pytest.fixture
def loopback():
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def local_server():
    """The embedded llama.cpp server with the 0.5B model, started once per test session."""
    from harness.llm.local import LlamaServer

    with LlamaServer("qwen2.5-coder-0.5b", n_ctx=2048) as srv:
        yield srv
