"""Code execution sandboxes: Docker (default) and a local subprocess backend (explicit opt-in)."""

from __future__ import annotations

import importlib
from typing import Any

from sandboxes.base import Program, RunResult, Sandbox, SandboxUnavailable

__all__ = ["DockerSandbox", "LocalSandbox", "Program", "RunResult", "Sandbox", "SandboxUnavailable",
           "make_sandbox"]


# backend name -> module:Class, imported when used (importing sandboxes must not need the docker SDK)
BACKENDS = {"docker": "sandboxes.docker:DockerSandbox", "local": "sandboxes.local:LocalSandbox"}


def _load(target: str) -> type[Sandbox]:
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def make_sandbox(backend: str = "docker", **kw: Any) -> Sandbox:
    """Create a sandbox: "docker" (DockerSandbox) or "local" (LocalSandbox; needs allow=True)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {backend!r}: use {' or '.join(map(repr, BACKENDS))}")
    return _load(BACKENDS[backend])(**kw)


def __getattr__(name: str) -> Any:  # DockerSandbox, LocalSandbox: lazily
    for target in BACKENDS.values():
        if target.endswith(f":{name}"):
            return _load(target)
    raise AttributeError(name)
