"""Benchmarks: importing this package registers every built-in one; `get_benchmark` makes one by name."""

from __future__ import annotations

import inspect
from typing import Any

from harness.benchmarks import aime, arc, custom, gpqa, mbpp, sudoku  # noqa: F401 - fills the registry
from harness.benchmarks.base import Benchmark, Example, Score, Split, registry
from harness.config import ConfigError

ALIASES = {
    "aime25": "aime",
    "aime2025": "aime",
    "arc-agi-1": "arc",
    "arc_agi_1": "arc",
    "arc-agi": "arc",
    "gpqa-diamond": "gpqa",
    "gpqa_diamond": "gpqa",
    "mbpp-sanitized": "mbpp",
}


def normalize(name: str) -> str:
    """A name as the registries key it: stripped, lower case (the one normalisation; harness.registry)."""
    return str(name).strip().lower()


def canonical_benchmark(name: str) -> str:
    """The registered benchmark a name or alias means (an unknown name comes back normalised)."""
    key = normalize(name)
    return ALIASES.get(key, key)


def get_benchmark(name: str, data_dir: str | None = None, **options: Any) -> Benchmark:
    """A benchmark by registry name or alias, e.g. get_benchmark("mbpp", sandbox=sb, variant="sanitized")."""
    key = canonical_benchmark(name)
    if key == "mbpp" and normalize(name) == "mbpp-sanitized":
        options.setdefault("variant", "sanitized")
    known = registry()
    if key not in known:
        raise ConfigError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(sorted(known))}.")
    cls = known[key]
    if "sandbox" not in inspect.signature(cls.__init__).parameters:
        options.pop("sandbox", None)  # callers may hand every benchmark the run's sandbox
    return cls(data_dir, **options)


__all__ = ["ALIASES", "Benchmark", "Example", "Score", "Split", "canonical_benchmark", "get_benchmark", "normalize",
           "registry"]
