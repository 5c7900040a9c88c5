"""Where a store lives: tracking URIs (resolve_uri), the file of a sqlite store, the local file of a run's
artifact."""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_RUNS_DIR = "runs"


def _is_uri(s: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", s)) and not re.match(r"^[A-Za-z]:[\\/]", s)


def resolve_uri(uri: str | None) -> str:
    """A tracking URI: `uri` when it is one; else $MLFLOW_TRACKING_URI; else a sqlite store in the
    directory `uri` names (default runs/)."""
    if uri and _is_uri(uri):
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    d = Path(uri or DEFAULT_RUNS_DIR).resolve()
    return f"sqlite:///{d}/mlflow.db"


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:////") else Path(uri[len("sqlite://"):])


def _local_artifact(artifact_uri: str | None, path: str) -> Path | None:
    """The file of a run's artifact when the run's artifacts are on this machine (file:// URI), else None."""
    if not artifact_uri or not artifact_uri.startswith("file://"):
        return None
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(artifact_uri).path)) / path
