"""One background event loop for the whole process, so sync code can call async clients.

Async clients (openai.AsyncOpenAI, semaphores) belong to the loop they first ran on; running
every coroutine on this one loop lets optimizers, TextGrad engines and GEPA adapters stay sync.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="harness-aio", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the shared loop and wait for its result (not from inside that loop)."""
    lp = loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is lp:
        raise RuntimeError("run_sync called from the harness loop itself; await the coroutine instead")
    fut = asyncio.run_coroutine_threadsafe(coro, lp)
    try:
        return fut.result()
    except BaseException:  # Ctrl-C or an error: do not leave the work running behind our back
        fut.cancel()
        raise
