"""The shared harness: config, LLM layer, benchmarks, evaluator, optimizer interface, runner, tracking, CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sepo-bench")
except PackageNotFoundError:  # run from a source tree without installing
    __version__ = "0+unknown"
