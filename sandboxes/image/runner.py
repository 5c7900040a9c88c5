"""In-sandbox batch runner: runs each program in its own subprocess with limits, one JSON line per result.

Payload (JSON) comes from argv chunks (docker exec) or stdin (local):
{"progs": [src, ...], "timeout": s, "cap": bytes, "mem": bytes|0, "fsize": bytes, "nproc": n|0,
 "python": path, "killall": bool, "root": dir}
Each result: {"i": i, "rc": returncode, "timeout": bool, "out": text, "dur": seconds}.
This file must stay standalone (stdlib only): it runs inside the image with `python3 -c`.
"""
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def _prctl(dumpable):
    """Become a subreaper (orphans of our programs come to us, so we can kill and reap them) and,
    in the container, non-dumpable so same-uid programs cannot open /proc/<runner>/fd or mem."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        if not dumpable:
            libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except Exception:  # noqa: BLE001, S110 - best effort: no ctypes means no hardening, not no sandbox
        pass


def _children():
    me, kids = str(os.getpid()), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[-1].split()[1] == me:
                kids.append(int(name))
    return kids


def _limits(cfg):
    def apply():
        os.setsid()
        cpu = int(cfg["timeout"]) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        if cfg.get("mem"):
            resource.setrlimit(resource.RLIMIT_AS, (cfg["mem"], cfg["mem"]))
        if cfg.get("fsize"):
            resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["fsize"], cfg["fsize"]))
        if cfg.get("nproc"):
            resource.setrlimit(resource.RLIMIT_NPROC, (cfg["nproc"], cfg["nproc"]))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


class _Capture:
    """Keep the first and last cap/2 bytes of a stream."""

    def __init__(self, cap):
        self.half, self.head, self.tail, self.total = max(cap // 2, 1), bytearray(), bytearray(), 0

    def add(self, data):
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.half:
                del self.tail[: len(self.tail) - self.half]

    def text(self):
        tail = self.tail[-self.half:]
        cut = self.total - len(self.head) - len(tail)
        mid = b"\n...[%d bytes truncated]...\n" % cut if cut > 0 else b""
        return (bytes(self.head) + mid + bytes(tail)).decode("utf-8", "replace")


def _kill_rest(cfg, proc):
    """Kill the program and everything it started, then reap them (we are their subreaper)."""
    for _ in range(50):
        if cfg.get("killall"):  # inside the container: every process of our uid except us and pid 1
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
        else:
            for pid in [proc.pid] + _children():
                for kill, target in ((os.killpg, pid), (os.kill, pid)):
                    try:
                        kill(target, signal.SIGKILL)
                    except OSError:
                        pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not _children():
            return
        time.sleep(0.01)


def _wipe(path):
    for name in os.listdir(path):
        p = os.path.join(path, name)
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)
        except OSError:
            pass


def run_one(i, src, cfg, root):
    work = tempfile.mkdtemp(prefix=f"p{i}-", dir=root)
    path = os.path.join(work, "main.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(src)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONIOENCODING": "utf-8", "LANG": "C.UTF-8", "TMPDIR": work}
    cap, timed_out = _Capture(cfg["cap"]), False
    t0 = time.monotonic()
    deadline = t0 + cfg["timeout"]
    try:
        proc = subprocess.Popen([cfg["python"], "-I", "-B", path], cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, close_fds=True,
                                preexec_fn=_limits(cfg))  # noqa: PLW1509 - the runner is single-threaded
    except OSError as e:
        return {"i": i, "rc": 126, "timeout": False, "out": f"OSError: {e}", "dur": 0.0}
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    exited_at = None
    while True:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        if exited_at is not None and now - exited_at > 0.2:
            break  # a leftover child keeps the pipe open; stop waiting for it
        wait = min(deadline - now, 0.05 if exited_at is not None else 0.5)
        if not sel.select(wait):
            continue
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        if not data:
            break
        cap.add(data)
    sel.close()
    _kill_rest(cfg, proc)
    proc.stdout.close()
    rc = proc.returncode if proc.returncode is not None else -9
    return {"i": i, "rc": rc, "timeout": timed_out, "out": cap.text(), "dur": time.monotonic() - t0}


def main():
    raw = "".join(sys.argv[1:]) if len(sys.argv) > 1 else sys.stdin.read()
    cfg = json.loads(raw)
    cfg.setdefault("python", sys.executable)
    _prctl(dumpable=not cfg.get("killall"))
    own = cfg.get("root") is None
    root = tempfile.mkdtemp(prefix="sepo-run-") if own else cfg["root"]
    out = sys.stdout
    try:
        for i, src in enumerate(cfg["progs"]):
            res = run_one(i, src, cfg, root)
            _wipe(root)
            out.write(json.dumps(res) + "\n")
            out.flush()
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
