"""Code execution sandboxes: Docker (default) and a local subprocess backend (explicit opt-in)."""

from __future__ import annotations

from typing import Any

from sandboxes.base import Program, RunResult, Sandbox, SandboxUnavailable

__all__ = ["DockerSandbox", "LocalSandbox", "Program", "RunResult", "Sandbox", "SandboxUnavailable",
           "make_sandbox"]


def make_sandbox(backend: str = "docker", **kw: Any) -> Sandbox:
    """Create a sandbox: "docker" (DockerSandbox) or "local" (LocalSandbox; needs allow=True)."""
    if backend == "docker":
        from sandboxes.docker import DockerSandbox

        return DockerSandbox(**kw)
    if backend == "local":
        from sandboxes.local import LocalSandbox

        return LocalSandbox(**kw)
    raise ValueError(f"unknown sandbox backend {backend!r}: use 'docker' or 'local'")


def __getattr__(name: str) -> Any:  # lazy: importing sandboxes must not need the docker SDK
    if name == "DockerSandbox":
        from sandboxes.docker import DockerSandbox

        return DockerSandbox
    if name == "LocalSandbox":
        from sandboxes.local import LocalSandbox

        return LocalSandbox
    raise AttributeError(name)
