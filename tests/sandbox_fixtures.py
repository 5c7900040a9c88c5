"""Shared session fixtures for the sandbox tests (import them into a test module to use them).

Docker-backed fixtures FAIL with the SandboxUnavailable message when the engine is unreachable, unless
SEPO_SKIP_DOCKER=1 is set (then they skip).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the project may not be pip-installed in the test environment
    sys.path.insert(0, str(ROOT))

from sandboxes.base import Program, SandboxUnavailable

SKIP_DOCKER = os.environ.get("SEPO_SKIP_DOCKER") == "1"


def require_docker():
    """A docker client, or skip (SEPO_SKIP_DOCKER=1) / fail with the reason the engine is unreachable."""
    if SKIP_DOCKER:
        pytest.skip("SEPO_SKIP_DOCKER=1")
    from sandboxes.docker import connect

    try:
        return connect()
    except SandboxUnavailable as e:
        pytest.fail(str(e), pytrace=False)


def open_docker(**kw):
    """A DockerSandbox, or skip (SEPO_SKIP_DOCKER=1) / fail with the reason the engine is unusable."""
    if SKIP_DOCKER:
        pytest.skip("SEPO_SKIP_DOCKER=1")
    from sandboxes.docker import DockerSandbox

    try:
        return DockerSandbox(**kw)
    except SandboxUnavailable as e:
        pytest.fail(str(e), pytrace=False)


def own_containers(client) -> list:
    """Sandbox containers started by this process."""
    import socket

    from sandboxes.docker import LABEL, OWNER

    me = f"{socket.gethostname()}:{os.getpid()}"
    return [c for c in client.containers.list(all=True, filters={"label": LABEL}) if c.labels.get(OWNER) == me]


@pytest.fixture(scope="session")
def docker_sandbox() -> Iterator:
    sb = open_docker(timeout_s=10.0, pool_size=2)
    yield sb
    sb.close()
    leaked = own_containers(sb.client)
    assert not leaked, f"sandbox containers left after close(): {[c.name for c in leaked]}"


@pytest.fixture(scope="session")
def local_sandbox() -> Iterator:
    from sandboxes.local import LocalSandbox

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sb = LocalSandbox(allow=True, timeout_s=10.0)
    yield sb
    sb.close()


def ok_program(i: int = 0) -> Program:
    return Program(code=f"def f(x):\n    return x + {i}\n", tests=f"assert f(1) == {1 + i}\n")
