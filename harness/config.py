"""Experiment configuration: YAML files validated by pydantic.

Every model forbids unknown keys, so a typo is an error that names the field and the file.
Secrets never live here: an endpoint names the environment variable that holds its key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

LOCAL_MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m")
DEFAULT_LOCAL = {"task": "qwen2.5-coder-0.5b", "prompt": "qwen2.5-coder-1.5b"}


class ConfigError(ValueError):
    """A configuration problem a user can fix; the message is one sentence that says how."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EndpointConfig(Strict):
    """One model behind one or more OpenAI-compatible base URLs (replicas of the same model).

    With no base_url the harness starts the embedded llama.cpp server with `local_model`.
    """

    model: str | None = None
    base_url: str | list[str] | None = None
    api_key_env: str | None = None
    local_model: Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"] | None = None
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(1024, gt=0)
    price_input_per_m: float = Field(0.0, ge=0.0)
    price_output_per_m: float = Field(0.0, ge=0.0)
    max_concurrency: int = Field(4, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(20.0, ge=0)

    @property
    def base_urls(self) -> list[str]:
        if self.base_url is None:
            return []
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)

    @property
    def embedded(self) -> bool:
        return self.base_url is None


class CacheConfig(Strict):
    path: str = ".cache/llm-cache.sqlite"
    mode: Literal["read-write", "read-only", "off"] = "read-write"


class BudgetConfig(Strict):
    """Caps for one run; None means unlimited. Work stops cleanly when one is reached."""

    max_requests: int | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    max_usd: float | None = Field(None, gt=0)
    max_evaluations: int | None = Field(None, gt=0)  # examples scored, the unit every method shares


class LLMConfig(Strict):
    task: EndpointConfig = Field(default_factory=EndpointConfig)
    prompt: EndpointConfig = Field(default_factory=EndpointConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    local_threads: int | None = Field(None, gt=0)
    local_context: int = Field(4096, gt=256)


class SandboxConfig(Strict):
    backend: Literal["docker", "local"] = "docker"
    image: str = "sepo-sandbox:py3"
    timeout_s: float = Field(10.0, gt=0)
    memory_mb: int = Field(256, gt=16)
    pool_size: int = Field(2, gt=0)
    allow_local: bool = False  # the local backend is not isolation: the user must ask for it


class BenchmarkConfig(Strict):
    name: str
    n_train: int | None = Field(None, gt=0)
    n_val: int | None = Field(None, gt=0)
    n_test: int | None = Field(None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)


class ExperimentConfig(Strict):
    name: str = "experiment"
    data_dir: str | None = None
    output_dir: str = "runs"
    seeds: list[int] = Field(default_factory=lambda: [0])
    system_prompt: str = ""
    benchmarks: list[BenchmarkConfig] = Field(default_factory=list)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("seeds")
    @classmethod
    def _seeds_nonempty(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("needs at least one seed")
        return v


def _field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_config(data: dict[str, Any] | None, source: str = "<config>") -> ExperimentConfig:
    """Validate a config mapping; errors name the field and the source."""
    try:
        return ExperimentConfig.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(f"{source}: field '{field}': {msg}{more}.") from None


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Read and validate a YAML experiment file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file {p} does not exist; pass a YAML file such as configs/local.yaml.")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc.__class__.__name__}: {exc}).") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys to values.")
    return parse_config(data, str(p))
