"""Secrets out of everything tracked: Scrubber replaces API keys (given, or read from key-like environment
variables) by *** in strings, dicts and lists."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

# Environment variables whose values are scrubbed unasked: names ending in KEY/TOKEN/PASSWORD/... or holding
# SECRET (OPENAI_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY; not TOKENIZERS_PARALLELISM).
SECRET_ENV = re.compile(r"(KEY|TOKEN|PASSWORD|PASSWD|CREDENTIALS?)$|SECRET", re.IGNORECASE)


class Scrubber:
    """Replaces secret values by *** in strings, recursively in dicts and lists."""

    def __init__(self, secrets: Iterable[str] = (), *, from_env: bool = True) -> None:
        values = {s for s in secrets if isinstance(s, str)}
        if from_env:
            values |= {v for k, v in os.environ.items() if SECRET_ENV.search(k)}
        # Very short values would blank out ordinary text; a real key is long.
        self.secrets = sorted((v for v in values if len(v) >= 6), key=len, reverse=True)

    def text(self, s: str) -> str:
        for v in self.secrets:
            if v in s:
                s = s.replace(v, "***")
        return s

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {self(str(k)): self(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple | set):
            return [self(v) for v in obj]
        return obj
