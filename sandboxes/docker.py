"""DockerSandbox: a warm pool of locked-down containers; programs run in batches through `docker exec`.

Each container: no network, read-only root, small /tmp tmpfs, uid 65534, memory/pids/cpu limits, all
capabilities dropped, no-new-privileges, no host mounts. The driver (sandboxes/driver.py, shipped as source)
runs each program in its own forked process with a wall-clock timeout, sends back the values of the tests'
calls into the program, and kills everything the program left behind; the verdict is decided on the host
(sandboxes/wire.py). The host kills and replaces a container whose driver stalls or dies. Containers are
labelled and removed on close(), at interpreter exit, on errors and on Ctrl-C.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import socket
import threading
import time
import uuid
import weakref
from collections import deque
from typing import Self

from sandboxes.base import Program, RunResult, SandboxUnavailable
from sandboxes.engine import connect
from sandboxes.image import DEFAULT_TAG, ensure_image
from sandboxes.wire import DEFAULT_CAP, chunks, driver_source, run_pending, run_programs

LABEL = "sepo-bench.sandbox"
OWNER = "sepo-bench.owner"
GRACE_S = 5.0  # host-side slack on top of the in-container timeout before a container is killed
ARG_CHUNK = 100_000  # one argv string may hold at most 128 KiB
_LIVE: weakref.WeakSet[DockerSandbox] = weakref.WeakSet()


def remove_labelled(client=None, only_dead_owners: bool = False) -> int:
    """Remove sandbox containers (all, or only those whose owning process on this host has exited)."""
    client = client or connect()
    n = 0
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        if only_dead_owners:
            host, _, pid = c.labels.get(OWNER, "").rpartition(":")
            if host != socket.gethostname() or not pid.isdigit() or _pid_alive(int(pid)):
                continue
        with contextlib.suppress(Exception):  # already gone
            c.remove(force=True)
            n += 1
    return n


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class _Slot:
    """One warm container; `deadline` is watched by the sandbox's monitor thread."""

    def __init__(self, sb: DockerSandbox) -> None:
        self.sb, self.cid, self.deadline, self.killed = sb, "", None, False
        self.start()

    def start(self) -> None:
        sb = self.sb
        c = sb.client.containers.run(
            sb.image, ["sleep", "infinity"], detach=True, name=f"sepo-sbx-{os.getpid()}-{uuid.uuid4().hex[:8]}",
            labels={LABEL: "1", OWNER: f"{socket.gethostname()}:{os.getpid()}"},
            network_mode="none", read_only=True, tmpfs={"/tmp": f"size={sb.tmpfs_mb}m,mode=1777"},
            user="65534:65534", working_dir="/tmp", ipc_mode="none", cap_drop=["ALL"],
            security_opt=["no-new-privileges"], mem_limit=f"{sb.memory_mb}m", memswap_limit=f"{sb.memory_mb}m",
            pids_limit=sb.pids, nano_cpus=int(sb.cpus * 1e9), stop_signal="SIGKILL",
            log_config={"type": "none", "config": {}}, environment={"HOME": "/tmp"})
        self.cid, self.deadline, self.killed = c.id, None, False

    def remove(self) -> None:
        with contextlib.suppress(Exception):  # already gone
            self.sb.client.api.remove_container(self.cid, force=True)

    def replace(self) -> None:
        self.remove()
        self.start()

    def running(self) -> bool:
        try:
            return bool(self.sb.client.api.inspect_container(self.cid)["State"]["Running"])
        except Exception:  # noqa: BLE001
            return False

    def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(Exception):
            self.sb.client.api.kill(self.cid)

    def exec_batch(self, sources: list[dict], t: float,
                   driver: str | None = None) -> tuple[list[dict], str, str | None]:
        """Run sources through the driver in this container (driver: another driver's source, for perf/)."""
        sb, api = self.sb, self.sb.client.api
        if self.killed or not self.running():
            self.replace()
        payload = json.dumps({"progs": sources, "timeout": t, "cap": sb.output_cap, "mem": sb.memory_mb << 20,
                              "fsize": sb.fsize_mb << 20, "python": "python3", "killall": True, "root": "/tmp"})
        args = [payload[i:i + ARG_CHUNK] for i in range(0, len(payload), ARG_CHUNK)]
        got: list[dict] = []
        err, buf = bytearray(), b""
        try:
            eid = api.exec_create(self.cid, ["python3", "-I", "-c", driver or driver_source(), *args],
                                  user="65534:65534",
                                  workdir="/tmp", environment={"HOME": "/tmp"})["Id"]
            self.deadline = time.monotonic() + t + GRACE_S
            for out, e in api.exec_start(eid, stream=True, demux=True):
                if e and len(err) < sb.output_cap:
                    err += e
                if out:
                    buf += out
                    *lines, buf = buf.split(b"\n")
                    got += [json.loads(ln) for ln in lines if ln.strip()]
                    self.deadline = time.monotonic() + t + GRACE_S
        except Exception as e:  # noqa: BLE001 - engine or stream failure: blame the current program, go on
            err += f"\n{type(e).__name__}: {e}".encode()
        finally:
            self.deadline = None
        early = None
        if len(got) < len(sources):
            early = "timeout" if self.killed else None
            self.killed = True  # the runner died: start from a clean container
        elif any(d["timeout"] or d["rc"] < 0 for d in got) and not self.running():
            self.killed = True  # e.g. the memory limit took pid 1 with it
        return got, err.decode("utf-8", "replace"), early


class DockerSandbox:
    """Sandbox on a warm pool of Docker containers (see the module docstring)."""

    def __init__(self, image: str = DEFAULT_TAG, *, memory_mb: int = 256, pids: int = 64, cpus: float = 1.0,
                 pool_size: int = 2, timeout_s: float = 10.0, output_cap: int = DEFAULT_CAP, tmpfs_mb: int = 64,
                 fsize_mb: int = 16, build: bool = True, client=None) -> None:
        self.client = client or connect()
        self.image, self.memory_mb, self.pids, self.cpus = image, memory_mb, pids, cpus
        self.pool_size, self.timeout_s, self.output_cap = pool_size, timeout_s, output_cap
        self.tmpfs_mb, self.fsize_mb = tmpfs_mb, fsize_mb
        self._ensure_image(build)
        remove_labelled(self.client, only_dead_owners=True)
        self._slots: list[_Slot] = []
        self._idle: queue.Queue[_Slot] = queue.Queue()
        self._closed = threading.Event()
        _LIVE.add(self)
        try:
            errors: list[BaseException] = []
            threads = [threading.Thread(target=self._add_slot, args=(errors,), daemon=True) for _ in range(pool_size)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if errors:
                raise SandboxUnavailable(f"Could not start sandbox containers from {image}: {errors[0]}")
        except BaseException:
            self.close()
            raise
        threading.Thread(target=self._monitor, daemon=True, name="sepo-sandbox-monitor").start()

    def _ensure_image(self, build: bool) -> None:
        import docker

        try:
            self.client.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            if not build:
                raise SandboxUnavailable(f"Sandbox image {self.image} is missing: build it with "
                                         "`python -m sandboxes.image`.") from None
        try:
            ensure_image(self.image, client=self.client)
        except Exception as e:
            raise SandboxUnavailable(f"Sandbox image {self.image} is missing and building it failed ({e}); "
                                     "run `python -m sandboxes.image` as root.") from e

    def _add_slot(self, errors: list[BaseException]) -> None:
        try:
            slot = _Slot(self)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
            return
        self._slots.append(slot)
        self._idle.put(slot)

    def _monitor(self) -> None:
        while not self._closed.wait(0.25):
            now = time.monotonic()
            for slot in list(self._slots):
                if slot.deadline is not None and now > slot.deadline:
                    slot.kill()

    def run(self, program: Program, timeout_s: float | None = None) -> RunResult:
        return self.run_many([program], timeout_s)[0]

    def run_many(self, programs: list[Program], timeout_s: float | None = None) -> list[RunResult]:
        if self._closed.is_set():
            raise SandboxUnavailable("This DockerSandbox is closed; create a new one.")
        t = float(timeout_s or self.timeout_s)
        return run_programs(programs, lambda sources: self.dispatch(sources, t), self.output_cap)

    def dispatch(self, sources: list[dict], t: float, driver: str | None = None) -> list[dict]:
        """Raw results for wire programs, in order, over the pool (driver: see _Slot.exec_batch)."""
        todo = deque(chunks(sources, self.pool_size))
        out: list[dict | None] = [None] * len(sources)
        errors: list[BaseException] = []

        def worker() -> None:
            slot = self._idle.get()
            try:
                while not self._closed.is_set():
                    try:
                        idx = todo.popleft()
                    except IndexError:
                        return
                    res = run_pending([sources[i] for i in idx], lambda s: slot.exec_batch(s, t, driver),
                                      self.output_cap)
                    for i, r in zip(idx, res, strict=True):
                        out[i] = r
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
            finally:
                self._idle.put(slot)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(self.pool_size, len(todo)))]
        try:
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        except BaseException:  # Ctrl-C: take the containers down with us
            self.close()
            raise
        if errors:
            raise errors[0]
        if self._closed.is_set() and any(r is None for r in out):
            raise SandboxUnavailable("The DockerSandbox was closed while programs were running.")
        return out  # type: ignore[return-value]

    def close(self) -> None:
        """Remove every container of this sandbox (idempotent)."""
        self._closed.set()
        slots, self._slots = self._slots, []
        threads = [threading.Thread(target=s.remove, daemon=True) for s in slots]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=30)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    for sb in list(_LIVE):
        sb.close()
