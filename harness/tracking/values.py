"""Values as MLflow accepts them: its length limits, keys (_key), truncated values, JSON-safe values,
flattened settings, artifact and prompt names, search-filter literals, finite metrics."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

# MLflow's limits (mlflow.utils.validation), kept here so flattening does not depend on a private module.
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
PER_BATCH = 100  # params + tags per log_batch
METRICS_PER_BATCH = 1000
RECORD_COLUMNS = ["example_id", "correct", "score", "extracted", "reason", "prompt_tokens", "completion_tokens",
                  "tokens", "truncated", "attempts", "cached"]


def _key(name: str) -> str:
    """A name MLflow accepts for a param, metric or tag: [A-Za-z0-9_-. ], no path tricks, <= 250 chars."""
    k = re.sub(r"[^A-Za-z0-9_\-. ]", "_", str(name))
    k = re.sub(r"\.{2,}", ".", k).strip(". ") or "_"
    if len(k) > MAX_KEY:
        digest = hashlib.sha1(k.encode()).hexdigest()[:8]
        k = k[: MAX_KEY - 9] + "_" + digest
    return k


def _truncate(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    note = f"...[{len(value) - limit} more chars]"
    return value[: limit - len(note)] + note


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as dotted keys with string values (lists as JSON, None as 'None')."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        elif isinstance(v, Mapping):
            out[key] = "{}"
        elif isinstance(v, list | tuple | set):
            out[key] = json.dumps(_jsonable(v), sort_keys=True)
        elif isinstance(v, bool) or v is None or isinstance(v, str | int | float):
            out[key] = str(v)
        else:
            out[key] = json.dumps(_jsonable(v), sort_keys=True)
    return out


def _artifact_name(candidate_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_\-.]", "_", candidate_id)[:60].strip(".") or "c"
    return f"{safe}-{hashlib.sha1(candidate_id.encode()).hexdigest()[:8]}.json"


def _prompt_name(name: str) -> str:
    """MLflow prompt names: letters, digits, '-', '_', '.'."""
    return re.sub(r"[^A-Za-z0-9_\-.]", "-", name).strip(".-")[:200] or "prompt"



def _filter_value(value: str) -> str:
    if "'" in value or "\\" in value:
        raise ValueError(f"a cell key may not contain quotes or backslashes: {value!r}")
    return f"'{value}'"



def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, int | float) and math.isfinite(float(v)):
            out[k] = float(v)
    return out
