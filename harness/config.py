"""Experiment configuration: YAML files validated by pydantic.

Every model forbids unknown keys, so a typo is an error that names the field and the file.
Secrets never live here: an endpoint names the environment variable that holds its key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from harness.errors import UserError

LOCAL_MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m")
LocalServer = Literal["llama-server", "python"]
LOCAL_SERVERS = get_args(LocalServer)
DEFAULT_LOCAL = {"task": "qwen2.5-coder-0.5b", "prompt": "qwen2.5-coder-1.5b"}


class ConfigError(UserError, ValueError):
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
    local_parallel: int | None = Field(None, gt=0, le=64, description="embedded model only: slots of its "
                                       "llama-server, and as many requests in flight (default: measured per model)")
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(20.0, ge=0)

    @model_validator(mode="after")
    def _model_with_url(self) -> EndpointConfig:
        if self.base_url is not None and not self.model:
            raise ValueError("an endpoint with a base_url needs 'model', the name the server serves")
        if self.base_url is not None and self.local_model:
            raise ValueError("set either base_url (a server) or local_model (the embedded one), not both")
        return self

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
    mode: Literal["read-write", "read-only", "off", "replay"] = Field(
        "read-write", description="replay: every reply from this cache, a miss is an error, no model started")


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
    local_context: int | None = Field(None, gt=256, description="context tokens per slot of an embedded server "
                                      "(default: the longest benchmark prompt plus its reply cap)")
    local_server: LocalServer = Field(
        "llama-server", description="embedded server: llama.cpp's llama-server (parallel slots, built once) or "
        "llama-cpp-python's server (one request at a time; the fallback)")


class SandboxConfig(Strict):
    backend: Literal["docker", "local"] = "docker"
    image: str = Field("sepo-sandbox:py3", description="the default is built offline on first use; any other "
                       "name must already exist in the Docker engine")
    timeout_s: float = Field(10.0, gt=0)
    memory_mb: int = Field(256, gt=16)
    pool_size: int = Field(2, gt=0)
    allow_local: bool = False  # the local backend is not isolation: the user must ask for it


class BenchmarkConfig(Strict):
    """One benchmark. n_train / n_val / n_test are split sizes (a subset of the default split, see
    harness/splits.py); `options` holds the benchmark's own options (variant, size, path, ...)."""

    name: str
    n_train: int | None = Field(None, gt=0, description="train split size (default: the benchmark's)")
    n_val: int | None = Field(None, gt=0, description="validation split size (default: the benchmark's)")
    n_test: int | None = Field(None, gt=0, description="test split size (default: the benchmark's)")
    max_tokens: int | None = Field(None, gt=0, description="the task agent's reply cap on this benchmark (default: "
                                   "llm.task.max_tokens when the config sets it, else the benchmark's own)")
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _no_sizes_in_options(cls, v: dict[str, Any]) -> dict[str, Any]:
        sizes = sorted(k for k in v if k in ("n_train", "n_val", "n_test"))
        if sizes:
            raise ValueError(f"{sizes[0]} belongs at the benchmark entry's top level, not in options")
        return v

    def split_options(self) -> dict[str, Any]:
        """The options a benchmark is built with: its own plus the split sizes."""
        sizes = {k: getattr(self, k) for k in ("n_train", "n_val", "n_test") if getattr(self, k) is not None}
        return {**self.options, **sizes}


class TrackingConfig(Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else a "
                            "sqlite store in output_dir")
    trace: bool = Field(False, description="trace every OpenAI call in MLflow")
    enabled: bool = True


class TuneParam(Strict):
    """One dimension of a `tune.space`: int or float in [low, high] (optionally log-scaled or stepped), or
    one of `choices`."""

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0)
    log: bool = False
    choices: list[str | int | float | bool | None] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TuneParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("a categorical parameter takes 'choices' only, not low/high/step/log")
            return self
        if self.choices is not None:
            raise ValueError(f"an {self.type} parameter takes low/high, not 'choices' (or use type: categorical)")
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} parameter needs both 'low' and 'high'")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled parameter needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("set either log or step, not both")
        if self.type == "int" and any(v is not None and float(v) != int(v) for v in (self.low, self.high, self.step)):
            raise ValueError("an int parameter needs whole-number low, high and step")
        return self


TUNE_OBJECTIVES = ("val_accuracy", "tokens", "usd", "requests", "evaluations")


class TuneConfig(Strict):
    """`sepo-bench tune`: an Optuna study over one method's settings (harness/tune.py). A trial runs the
    method on every benchmark x seed of the file (train/val only) with the trial's settings on top of the
    method's; its value is the validation accuracy of the method's best prompt (and, with a second
    objective, what the method spent)."""

    method: str | None = Field(None, description="the 'methods' entry to tune (default: the only one, else sepo)")
    space: dict[str, TuneParam] = Field(description="setting name -> its range; the names are the method's settings")
    n_trials: int = Field(20, gt=0, description="trials of the whole study, across every worker")
    objectives: list[Literal["val_accuracy", "tokens", "usd", "requests", "evaluations"]] = Field(
        default_factory=lambda: ["val_accuracy"], description="val_accuracy (maximized), optionally with one cost "
        "the method spent (minimized): a multi-objective study reports its Pareto front")
    storage: str | None = Field(None, description="Optuna storage URL: default sqlite under the run folder; "
                                "postgresql://user@host/db lets workers on several machines share the study")
    study_name: str | None = Field(None, description="default: '<name>-tune'")
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = Field(0, description="sampler seed (worker i of --workers uses seed + i)")
    pruner: Literal["median", "percentile", "hyperband", "none"] | None = Field(
        None, description="stops trials whose per-generation best train score lags; default median with one "
        "objective, none with two (Optuna prunes single-objective studies only)")
    pruner_startup_trials: int = Field(2, ge=0, description="trials finished before any is pruned")
    pruner_warmup_steps: int = Field(0, ge=0, description="generations of a trial before it may be pruned")
    enqueue_defaults: bool = Field(True, description="the first trial runs the method's own settings, the "
                                   "reference the best trial is compared with")
    enqueue: list[dict[str, Any]] = Field(default_factory=list, description="further trials to run first "
                                          "(setting -> value for names of the space)")

    @field_validator("space")
    @classmethod
    def _space_nonempty(cls, v: dict[str, TuneParam]) -> dict[str, TuneParam]:
        if not v:
            raise ValueError("needs at least one setting to search over")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TuneConfig:
        if "val_accuracy" not in self.objectives:
            raise ValueError("'objectives' must include val_accuracy")
        if len(set(self.objectives)) != len(self.objectives) or len(self.objectives) > 2:
            raise ValueError("'objectives' is val_accuracy, optionally with one cost (tokens, usd, requests or "
                             "evaluations), each once")
        if len(self.objectives) > 1 and self.pruner not in (None, "none"):
            raise ValueError("'pruner' works with one objective only (Optuna cannot prune multi-objective "
                             "studies); set pruner: none or keep one objective")
        if self.storage and not re.match(r"^(sqlite:///|postgresql(\+\w+)?://|mysql(\+\w+)?://)", self.storage):
            raise ValueError(f"'storage' {self.storage!r} is not an Optuna storage URL; use sqlite:///path.db or "
                             "postgresql://user@host:port/db")
        for i, trial in enumerate(self.enqueue):
            unknown = sorted(set(trial) - set(self.space))
            if unknown:
                raise ValueError(f"'enqueue.{i}' names {unknown[0]!r}, which is not in 'space'")
        return self

    @property
    def pruner_name(self) -> str:
        return self.pruner or ("median" if len(self.objectives) == 1 else "none")


class ExperimentConfig(Strict):
    name: str = Field("experiment", description="the experiment: its MLflow experiment and its output folder")
    description: str = ""
    data_dir: str | None = None
    output_dir: str = Field("runs", description="run outputs; a relative path is under the project folder")
    seeds: list[int] = Field(default_factory=lambda: [0])
    system_prompt: str = ""
    benchmarks: list[BenchmarkConfig] = Field(default_factory=list)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)
    budget_per_cell: BudgetConfig = Field(default_factory=BudgetConfig, description="one budget every method "
                                          "gets per cell (method x benchmark x seed); final test scoring is "
                                          "outside it. llm.budget caps the whole run")
    held_out: list[str] = Field(default_factory=lambda: ["sudoku"], description="benchmarks kept out of every "
                                "pre-training pool (the paper keeps Sudoku out)")
    parallel_cells: int | Literal["auto"] = Field(
        1, description="cells (and shared stages) run at once; auto = enough to keep both endpoints' "
        "max_concurrency busy (task + prompt concurrency; 1 on the embedded models)")
    stage_budget: BudgetConfig = Field(default_factory=BudgetConfig, description="one budget for each shared "
                                       "stage (SePO's pre-training, MetaSPO's meta-training), built once per key "
                                       "before the cells that use it; outside budget_per_cell")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    tune: TuneConfig | None = Field(None, description="`sepo-bench tune`: an Optuna study over a method's settings")
    simulated: bool = Field(False, description="set by `sepo-bench rehearse`: every endpoint is the built-in "
                            "simulated world, so no number of the run is a result")

    _source: Path | None = PrivateAttr(None)

    @field_validator("parallel_cells")
    @classmethod
    def _parallel_positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v <= 0:
            raise ValueError("must be a positive whole number or auto")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds_nonempty(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("needs at least one seed")
        if len(set(v)) != len(v):
            raise ValueError("lists a seed twice")
        return v

    @property
    def source(self) -> str:
        return str(self._source) if self._source else "<config>"

    @property
    def project_dir(self) -> Path:
        """Where relative output and cache paths live: $SEPO_PROJECT_DIR, else the nearest folder above
        the config file that holds a pyproject.toml, else the config file's folder (never the cwd)."""
        if os.environ.get("SEPO_PROJECT_DIR"):
            return Path(os.environ["SEPO_PROJECT_DIR"]).expanduser().resolve()
        if self._source is None:
            return Path.cwd()
        here = self._source.resolve().parent
        for d in (here, *here.parents):
            if (d / "pyproject.toml").is_file():
                return d
        return here

    def path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.project_dir / q

    @property
    def run_dir(self) -> Path:
        return self.path(self.output_dir) / self.name


def _field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at `loc` (for "did you mean")."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(str(part))
        if f is None:
            return []
        ann = f.annotation
        args = getattr(ann, "__args__", ())
        inner = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def suggest(word: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for a near miss, else ''."""
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _sentence(err: dict[str, Any], source: str) -> str:
    loc = err["loc"]
    field = _field_path(loc)
    if err["type"] == "extra_forbidden":
        hint = suggest(str(loc[-1]), _known_keys(ExperimentConfig, loc))
        return f"{source}: '{field}' is not a setting{hint}; remove or rename it."
    if err["type"] == "missing":
        return f"{source}: '{field}' is required; add it."
    msg = err["msg"].removeprefix("Value error, ")
    return f"{source}: '{field}': {msg}; fix the value."


def parse_config(data: dict[str, Any] | None, source: str = "<config>") -> ExperimentConfig:
    """Validate a config mapping; every problem is one sentence naming the source and the field."""
    try:
        return ExperimentConfig.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError("\n".join(_sentence(e, source) for e in exc.errors())) from None


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
    cfg = parse_config(expand_env(data, str(p)), str(p))
    cfg._source = p
    cfg.llm.cache.path = str(cfg.path(cfg.llm.cache.path))  # under the project folder, not the cwd
    forced = os.environ.get("SEPO_LOCAL_MODEL")  # e.g. smollm2-135m: every embedded role on one small model
    if forced:
        if forced not in LOCAL_MODELS:
            raise ConfigError(f"SEPO_LOCAL_MODEL={forced!r} is not a local model; use one of "
                              f"{', '.join(LOCAL_MODELS)}.")
        for ep in (cfg.llm.task, cfg.llm.prompt):
            if ep.embedded:
                ep.local_model = forced
    server = os.environ.get("SEPO_LOCAL_SERVER")  # python: the fallback server, e.g. to time a before/after
    if server:
        if server not in LOCAL_SERVERS:
            raise ConfigError(f"SEPO_LOCAL_SERVER={server!r} is not an embedded server; use one of "
                              f"{', '.join(LOCAL_SERVERS)}.")
        cfg.llm.local_server = server
    return cfg


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(data: Any, source: str, where: str = "") -> Any:
    """Replace ${VAR} and ${VAR:-default} in string values (not keys) with the environment's values."""
    if isinstance(data, dict):
        return {k: expand_env(v, source, f"{where}.{k}" if where else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, source, f"{where}.{i}") for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def sub(m: re.Match) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            if m.group(2) is None:
                raise ConfigError(f"{source}: '{where}' uses ${{{m.group(1)}}}, which is not set; export it "
                                  f"or write ${{{m.group(1)}:-default}}.")
            return m.group(2)
        return value

    return _ENV.sub(sub, data)
