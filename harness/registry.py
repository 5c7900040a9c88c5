"""Names, aliases and metadata of benchmarks, methods and sandboxes, in one place to look them up.

- benchmarks: `normalize(name)` (the one name normalisation), `canonical_benchmark(name)` (aliases such as
  "gpqa-diamond" -> "gpqa"), `needs_sandbox(name, options)`: the benchmark's class says whether scoring runs
  code (the runner builds a sandbox first);
- methods: `method_info(name)` -> MethodInfo (family "sepo" | "baseline" | "peer", the method an ablation
  ablates), from harness/methods.py's table;
- sandboxes: `sandbox_backends()`, the backends sandboxes.make_sandbox knows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.methods import MethodInfo

from harness.benchmarks import ALIASES as BENCHMARK_ALIASES
from harness.benchmarks import canonical_benchmark, normalize, registry

__all__ = ["BENCHMARK_ALIASES", "canonical_benchmark", "method_info", "needs_sandbox", "normalize", "sandbox_backends"]


def needs_sandbox(name: str, options: dict[str, Any] | None = None) -> bool:
    """Whether benchmark `name` with these options runs model-written code when it scores (False when unknown)."""
    cls = registry().get(canonical_benchmark(name))
    return cls is not None and cls.needs_sandbox(dict(options or {}))


def method_info(name: str) -> MethodInfo:
    """A registered method's family and what it is an ablation of (harness.methods.method_info)."""
    from harness.methods import method_info as info

    return info(name)


def sandbox_backends() -> list[str]:
    """The sandbox backends sandboxes.make_sandbox knows."""
    from sandboxes import BACKENDS

    return list(BACKENDS)
