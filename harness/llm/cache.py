"""A persistent, content-addressed response cache in sqlite.

The key is a sha256 over everything that determines a reply: model, messages, sampling
parameters, seed and sample index. Base URLs and API keys are not part of the key and
are never written: replicas of one model share entries, and no secret reaches the disk.

Modes: `read-write` (default), `read-only` (hits served, nothing written), `off`, and `replay`: every
reply must come from the cache (a recorded run, e.g. perf/regression/); a miss is an error instead of a
request, no model server is started, and the first time a process serves an entry it is accounted as
the paid request it was when recorded (later serves of it as cache hits, as in the live run), so
requests, tokens and budget caps come out as they did in the recorded run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Literal

CacheMode = Literal["read-write", "read-only", "off", "replay"]


def cache_key(model: str, messages: list[dict], params: dict[str, Any], sample: int) -> str:
    blob = json.dumps(
        {"model": model, "messages": messages, "params": params, "sample": sample},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path, mode: CacheMode = "read-write") -> None:
        self.mode = mode
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._served: set[str] = set()  # replay: keys this process has served
        if mode != "off":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; no fsync per entry
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )

    def get(self, key: str) -> dict[str, Any] | None:
        if self._db is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def first_serve(self, key: str) -> bool:
        """Replay mode: True the first time this process serves `key` (the recorded run paid for it then)."""
        with self._lock:
            if key in self._served:
                return False
            self._served.add(key)
            return True

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self._db is None or self.mode != "read-write":
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def __len__(self) -> int:
        if self._db is None:
            return 0
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
