"""The errors a user can cause and fix: the CLI prints these as one sentence, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """Base of every error a user can cause and fix (bad config or flag, missing data, key, model, Docker,
    a budget cap): its message is one sentence per problem that says what to do."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """UserError, plus SandboxUnavailable (sandboxes/base.py), which does not subclass it yet: once it does,
    this goes and the CLI catches UserError."""
    from sandboxes.base import SandboxUnavailable

    return (UserError, SandboxUnavailable)
