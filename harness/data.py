"""Where benchmark data comes from: local files (the default) or the Hugging Face hub (`source: hub`).

The data directory is resolved as: explicit `data_dir` argument > env SEPO_DATA_DIR > <repo>/../shared/data
(if it exists). A missing dataset raises DatasetMissing, one sentence naming where the harness looked.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.config import ConfigError

ENV_VAR = "SEPO_DATA_DIR"
_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = ("local", "hub")
COMMON_OPTIONS = frozenset({"n_train", "n_val", "n_test", "source"})


class DatasetMissing(FileNotFoundError):
    """A benchmark's data is not where the harness looked; the message says how to provide it."""


class DataFormatError(ValueError):
    """A data file has a malformed line; the message names the file and the line number."""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> tuple[Path | None, str]:
    """The data directory and how it was chosen ('data_dir setting', 'SEPO_DATA_DIR', 'default')."""
    if data_dir:
        return Path(data_dir).expanduser(), "the data_dir setting"
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"
    if _DEFAULT.is_dir():
        return _DEFAULT, "the default location"
    return None, "nowhere (no data_dir, no $SEPO_DATA_DIR, no default folder)"


def local_file(data_dir: str | os.PathLike[str] | None, relative: str, dataset: str) -> Path:
    """Path of `relative` inside the data directory, or DatasetMissing saying where it looked."""
    base, how = resolve_data_dir(data_dir)
    if base is not None and (base / relative).exists():
        return base / relative
    where = f"{base / relative} (data directory from {how})" if base is not None else how
    raise DatasetMissing(
        f"{dataset} data not found: looked for {where}; set {ENV_VAR} or data_dir in the config to the "
        f"folder that holds {relative}, or use source: hub when online."
    )


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a malformed line raises ValueError naming both."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}, line {n}: not valid JSON ({e.msg}).") from None
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}, line {n}: expected a JSON object, got {type(row).__name__}.")
            yield n, row


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path)]


def read_zipped_csv(path: Path, password: str) -> list[dict[str, str]]:
    """Rows of the single CSV in a password zip, read in memory (never extracted to disk)."""
    import pyzipper

    with pyzipper.AESZipFile(path) as z:
        z.setpassword(password.encode())
        name = next(n for n in z.namelist() if n.endswith(".csv"))
        text = z.read(name).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def hub_rows(hub_id: str, config: str | None = None, splits: Iterable[str] | None = None) -> list[dict]:
    """All rows of a hub dataset (the listed splits, or every split) through `datasets`."""
    try:
        from datasets import load_dataset

        ds = load_dataset(hub_id, config)
        names = list(splits) if splits is not None else list(ds)
        return [dict(row) for name in names for row in ds[name]]
    except Exception as e:  # any failure (offline, gated, renamed) has one remedy
        raise DatasetMissing(
            f"could not load {hub_id}{f' ({config})' if config else ''} from the Hugging Face hub "
            f"({type(e).__name__}: {str(e)[:200]}); use source: local with {ENV_VAR} or data_dir set."
        ) from e


def source_of(options: dict[str, Any]) -> str:
    source = options.get("source", "local")
    if source not in SOURCES:
        raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {source!r}.")
    return source


def check_options(benchmark: str, options: dict[str, Any], allowed: Iterable[str]) -> None:
    """Reject unknown options (typos) with a sentence listing the known ones."""
    known = set(allowed) | COMMON_OPTIONS
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"benchmark {benchmark!r} has no option {', '.join(map(repr, unknown))}; "
            f"known options: {', '.join(sorted(known))}."
        )
