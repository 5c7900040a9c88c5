"""Where benchmark data comes from: local files (the default) or the Hugging Face hub (`source: hub`).

The data directory is resolved as: explicit `data_dir` argument > env SEPO_DATA_DIR > <repo>/../shared/data
(if it exists). A missing dataset raises DatasetMissing, one sentence naming where the harness looked.

Custom tasks (`read_table`, `FieldSpec`) come from the formats people have: JSONL (read line by line here,
so a malformed line is reported by number), JSON (a list of records, or {"data"/"rows"/...: [...]}), CSV,
Parquet (both through `datasets`), or a hub dataset id (`datasets.load_dataset`); a field mapping says which
column is the question, the answer, the id, the tests and the setup, like inspect-ai's FieldSpec.
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
from harness.errors import UserError

ENV_VAR = "SEPO_DATA_DIR"
_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = ("local", "hub")
COMMON_OPTIONS = frozenset({"n_train", "n_val", "n_test", "source"})


class DatasetMissing(UserError, FileNotFoundError):
    """A benchmark's data is not where the harness looked; the message says how to provide it."""


class DataFormatError(UserError, ValueError):
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


FORMATS = ("jsonl", "json", "csv", "parquet", "hub")
_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
           ".parquet": "parquet", ".pq": "parquet"}


def table_format(path: str, fmt: str | None = None, hub: bool = False) -> str:
    """The format of a custom-task source: explicit, 'hub' for a hub id, else from the file suffix."""
    if fmt:
        if fmt not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
        return fmt
    if hub:
        return "hub"
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIX:
        raise ConfigError(f"cannot tell the format of {path!r} from its suffix: set option format to one of "
                          f"{', '.join(FORMATS)}.")
    return _SUFFIX[suffix]


def read_table(path: str, fmt: str, *, config: str | None = None,
               split: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(where, record) for each record of a custom-task source; `where` names the file and line or row."""
    if fmt == "jsonl":
        return [(f"{path}, line {n}", row) for n, row in iter_jsonl(Path(path))]
    if fmt == "json":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}).") from None
        if isinstance(data, dict):
            lists = [v for k, v in data.items() if isinstance(v, list) and k in ("data", "rows", "examples",
                                                                                  "records", "train", "test")]
            data = lists[0] if len(lists) == 1 else data
        if not isinstance(data, list):
            raise DataFormatError(f"{path}: expected a JSON list of records (or {{'data': [...]}}).")
        out = []
        for n, row in enumerate(data, 1):
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}, record {n}: expected a JSON object, got {type(row).__name__}.")
            out.append((f"{path}, record {n}", row))
        return out
    if fmt in ("csv", "parquet"):
        try:
            from datasets import load_dataset

            kw = {"delimiter": "\t"} if fmt == "csv" and str(path).endswith(".tsv") else {}
            ds = load_dataset(fmt, data_files=str(path), split="train", **kw)
        except Exception as e:  # noqa: BLE001 - one sentence naming the file
            raise DataFormatError(f"{path}: could not read it as {fmt} ({type(e).__name__}: {str(e)[:200]}).") from e
        first = 2 if fmt == "csv" else 1  # a CSV's first data row is on line 2
        return [(f"{path}, {'line' if fmt == 'csv' else 'row'} {n}", dict(row)) for n, row in enumerate(ds, first)]
    if fmt == "hub":
        rows = hub_rows(path, config, [split] if split else None)
        return [(f"{path}, row {n}", row) for n, row in enumerate(rows, 1)]
    raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}.")


class FieldSpec:
    """Which record field is which, like inspect-ai's FieldSpec. Each role takes the configured field name,
    else the first present of its defaults (so MATH/AIME-style `problem` + `answer` rows need no mapping)."""

    DEFAULTS: dict[str, tuple[str, ...]] = {
        "question": ("question", "input", "problem", "prompt", "Question"),
        "answer": ("answer", "target", "label", "Answer", "final_answer"),
        "id": ("id", "task_id", "problem_id", "unique_id", "idx", "ID"),
        "tests": ("tests", "test_list", "test"),
        "setup": ("setup", "test_setup_code", "test_imports"),
    }

    def __init__(self, mapping: dict[str, str] | None = None) -> None:
        mapping = dict(mapping or {})
        unknown = sorted(set(mapping) - set(self.DEFAULTS))
        if unknown:
            raise ConfigError(f"fields: unknown role {', '.join(map(repr, unknown))}; roles: "
                              f"{', '.join(self.DEFAULTS)}.")
        for role, name in mapping.items():
            if not isinstance(name, str) or not name:
                raise ConfigError(f"fields.{role} must be a column name, got {name!r}.")
        self.mapping = mapping

    def name(self, role: str, row: dict[str, Any]) -> str | None:
        """The field of `row` that plays `role` (None when absent)."""
        if role in self.mapping:
            return self.mapping[role] if self.mapping[role] in row else None
        return next((k for k in self.DEFAULTS[role] if k in row), None)

    def get(self, role: str, row: dict[str, Any]) -> Any:
        key = self.name(role, row)
        return row[key] if key is not None else None

    def describe(self, role: str) -> str:
        if role in self.mapping:
            return repr(self.mapping[role])
        return " or ".join(repr(k) for k in self.DEFAULTS[role][:3])


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
