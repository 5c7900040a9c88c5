"""The errors a user can cause and fix: the CLI prints these as one sentence, no traceback."""

from __future__ import annotations


def user_error_types() -> tuple[type[BaseException], ...]:
    from harness.config import ConfigError
    from harness.data import DataFormatError, DatasetMissing
    from harness.llm.client import LLMError
    from harness.llm.local import ModelError
    from harness.llm.usage import BudgetExceeded
    from sandboxes.base import SandboxUnavailable

    return (ConfigError, DatasetMissing, DataFormatError, LLMError, ModelError, BudgetExceeded,
            SandboxUnavailable)
