"""The one place that connects to the Docker engine (used by the sandbox and the image builder)."""

from __future__ import annotations

from sandboxes.base import SandboxUnavailable

HOW_TO_START = ("start it with `make docker` or `dockerd --bridge=none --iptables=false --ip-forward=false "
                "--ip-masq=false &` (or set DOCKER_HOST)")


def connect(timeout: float = 600):
    """A docker client, or SandboxUnavailable saying how to start the engine."""
    try:
        import docker
    except ImportError as e:
        raise SandboxUnavailable("The `docker` Python SDK is missing: pip install 'docker>=7'.") from e
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as e:
        raise SandboxUnavailable(f"Docker engine not reachable ({type(e).__name__}); {HOW_TO_START}.") from e
    return client
