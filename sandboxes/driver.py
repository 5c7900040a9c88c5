"""In-sandbox driver: runs a batch of programs, one forked process each, and reports raw records.

Stdlib only: the host ships this file's source into the container (`python3 -I -c <source> <payload>`) or
runs it locally (`python -I -B driver.py`, payload on stdin). Payload (JSON):
{"progs": [{"setup": src, "code": src, "steps": [["exec" | "eval", src], ...]}, ...], "timeout": s,
 "cap": bytes, "mem": bytes | 0, "fsize": bytes, "nproc": n | 0, "killall": bool, "root": dir | null}
One JSON line per program on stdout: {"i", "rc", "timeout", "out", "dur", "recs"}.

Each program runs as the field's exec protocol runs it (human-eval's execution.py): setup, program and the
test steps are exec'd into one fresh dict (`__name__` is not "__main__"). An "eval" step is the part of a
test that calls into the program (the left-hand side of an assert); its value goes back serialised
(`encode`), and the host compares it with the expected value in its own process, so nothing here can
change a verdict except the values the program computes. `recs` holds the program's records, one JSON
list per line: ["val", k, value], ["raise", k, "Type: message"], ["exit", where, code],
["err", where, "Type: message"], ["done"] (where: "setup", "code" or a step index); ["start"] and
["tests"] mark the phases.
"""

import builtins
import json
import os
import resource
import selectors
import shutil
import signal
import sys
import tempfile
import time

MAX_VALUE = 1 << 20  # bytes of one encoded value
MAX_RECORDS = 8 << 20  # bytes of records kept per program
MAX_DEPTH = 100


class Unsupported(Exception):
    """A value that does not travel: anything but built-in data (and the few value types below)."""


def _truth_is_default(t):
    """True when no class of t defines __bool__ or __len__ (Python's default truth: always true)."""
    return not any("__bool__" in vars(c) or "__len__" in vars(c) for c in type.__dict__["__mro__"].__get__(t))


def encode(x, depth=0):
    """x as JSON data: scalars as themselves, containers and value types tagged by a one-key object.

    Subclasses of built-in types travel as their base type (a namedtuple as a tuple, a Counter as a dict):
    the comparison on the host is then Python's own on honest data. An object with Python's default truth
    travels as {"object": type name} (usable in a truth test only); anything else raises Unsupported.
    """
    t = type(x)
    if x is None or t is bool or t is str or t is float:
        return x
    if t is int:
        if x.bit_length() > 14000:
            raise Unsupported("an int of more than 4000 digits")
        return x
    if depth > MAX_DEPTH:
        raise Unsupported("a value nested more than 100 deep")
    name = t.__module__ + "." + t.__qualname__
    if name in ("fractions.Fraction", "decimal.Decimal", "collections.deque", "builtins.range",
                "builtins.complex"):
        if name == "fractions.Fraction":
            return {"fraction": [encode(x.numerator), encode(x.denominator)]}
        if name == "decimal.Decimal":
            return {"decimal": str(x)}
        if name == "collections.deque":
            return {"deque": [encode(v, depth + 1) for v in x], "maxlen": x.maxlen}
        if name == "builtins.range":
            return {"range": [x.start, x.stop, x.step]}
        return {"complex": [x.real, x.imag]}
    coll = sys.modules.get("collections")
    if coll is not None and isinstance(x, (coll.UserList, coll.UserDict, coll.UserString)):
        return encode(x.data, depth + 1)
    for base, tag in ((int, int.__int__), (float, float.__float__), (str, str.__str__), (complex, "complex"),
                      (bytes, "bytes"), (bytearray, "bytes"), (list, "list"), (tuple, "tuple"),
                      (dict, "dict"), (set, "set"), (frozenset, "frozenset")):
        if not isinstance(x, base):
            continue
        if not isinstance(tag, str):
            return encode(tag(x), depth)  # the base type's own value, not what the subclass says
        if tag == "complex":
            return {"complex": [complex.__complex__(x).real, complex.__complex__(x).imag]}
        if tag == "bytes":
            return {"bytes": bytes(x).hex()}
        if tag == "dict":
            return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in dict.items(x)]}
        return {tag: [encode(v, depth + 1) for v in base.__iter__(x)]}
    if _truth_is_default(t):
        return {"object": t.__qualname__ if isinstance(t.__qualname__, str) else "object"}
    raise Unsupported("a " + str(t.__qualname__))


def _describe(e):
    try:
        name, msg = type(e).__name__, str(e)
    except BaseException:  # noqa: BLE001 - a program's exception may refuse to print
        name, msg = "Exception", "<unprintable>"
    return name + (": " + msg if msg else "")


def _print_tb(e):
    """The traceback without the driver's own frame."""
    try:
        import traceback

        sys.stdout.flush()
        traceback.print_exception(type(e), e, e.__traceback__.tb_next, file=sys.stderr)
    except BaseException:  # noqa: BLE001, S110 - a program may have broken stdout or traceback itself
        pass


def _exit_code(e):
    c = getattr(e, "code", None)
    return repr(c) if c is None or type(c) in (int, bool) else type(c).__name__


def run_program(prog, rec_fd):
    """The child: exec setup, program and steps into a fresh dict, recording each step's outcome."""
    ours, bdict = dict(builtins.__dict__), builtins.__dict__

    def emit(rec, value=None):
        """Write one record (encoding `value` into it first) with the original builtins in place, so a
        program that replaced builtins.isinstance breaks its own code, not the driver's."""
        theirs = {k: bdict.get(k, ours) for k, v in ours.items() if bdict.get(k, ours) is not v}
        if theirs:  # only what the program changed is swapped (its threads may be running)
            bdict.update(ours)
        try:
            if len(rec) == 3 and rec[0] == "val":
                rec[2] = _encoded(value)
            data = json.dumps(rec).encode() + b"\n"
        finally:
            for k, v in theirs.items():
                if v is ours:
                    del bdict[k]
                else:
                    bdict[k] = v
        view = memoryview(data)
        while view:
            view = view[os.write(rec_fd, view):]

    def finish(rec):
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except BaseException:  # noqa: BLE001, S110
                pass
        emit(rec)
        os._exit(0)

    import linecache

    def show(path, src):  # so a traceback shows the line of the setup or test step it passed through
        linecache.cache[path] = (len(src), None, src.splitlines(True), path)

    g = {}
    emit(["start"])
    for where, src, path in (("setup", prog.get("setup") or "", "<setup>"), ("code", prog["code"], "main.py")):
        if not src.strip():
            continue
        if path != "main.py":  # the program's lines come from main.py in the working directory
            show(path, src)
        try:
            exec(compile(src, path, "exec", dont_inherit=True), g)  # noqa: S102 - the sandbox's job
        except SystemExit as e:
            finish(["exit", where, _exit_code(e)])
        except BaseException as e:  # noqa: BLE001
            _print_tb(e)
            finish(["err", where, _describe(e)[:300]])
    emit(["tests"])
    for k, (kind, src) in enumerate(prog["steps"]):
        show("<tests>", src)
        try:
            if kind == "exec":
                exec(compile(src, "<tests>", "exec", dont_inherit=True), g)  # noqa: S102
                value = None
            else:
                value = eval(compile(src, "<tests>", "eval", dont_inherit=True), g)  # noqa: S307
        except SystemExit as e:
            finish(["exit", k, _exit_code(e)])
        except BaseException as e:  # noqa: BLE001
            _print_tb(e)
            emit(["raise", k, _describe(e)[:300]])
            continue
        emit(["val", k, None], value)
    finish(["done"])


def _encoded(value):
    try:
        data = encode(value)
        if len(json.dumps(data)) > MAX_VALUE:
            raise Unsupported("a value of more than 1 MB")
        return data
    except Unsupported as e:
        return {"unsupported": str(e.args[0])}
    except BaseException as e:  # noqa: BLE001 - e.g. a container whose iteration raises
        return {"unsupported": "a value that could not be read (" + _describe(e)[:100] + ")"}


def _limits(cfg):
    cpu = int(cfg["timeout"]) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    for key, limit in (("mem", resource.RLIMIT_AS), ("fsize", resource.RLIMIT_FSIZE),
                       ("nproc", resource.RLIMIT_NPROC)):
        if cfg.get(key):
            resource.setrlimit(limit, (cfg[key], cfg[key]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _start(prog, cfg, work, out_w, rec_w):
    """Fork the program's process; the child never returns."""
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        _limits(cfg)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.closerange(3, rec_w)
        os.closerange(rec_w + 1, 1 << 16)
        os.chdir(work)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work,
                           "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"})
        tempfile.tempdir = None
        sys.argv[:] = ["main.py"]
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        run_program(prog, rec_w)
    finally:
        os._exit(70)


class Capture:
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


def _children():
    me, kids = str(os.getpid()), []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/" + name + "/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[-1].split()[1] == me:
                kids.append(int(name))
    return kids


def _reap():
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _kill_rest(cfg, pid):
    """Kill the program and everything it started, then reap them (we are their subreaper)."""
    for _ in range(50):
        if cfg.get("killall"):  # in the container: every process of our uid but us and pid 1
            targets = [(os.kill, -1)]
        else:
            targets = [(k, p) for p in [pid, *_children()] for k in (os.killpg, os.kill)]
        for kill, target in targets:
            try:
                kill(target, signal.SIGKILL)
            except OSError:
                pass
        _reap()
        if not _children():
            return
        time.sleep(0.01)


def _status(st):
    return -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)


def run_one(i, prog, cfg, root):
    """Run one program; its raw result (the host decides the verdict)."""
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix=f"p{i}-", dir=root)
    with open(os.path.join(work, "main.py"), "w", encoding="utf-8") as f:
        f.write(prog["code"])  # so tracebacks and inspect show the program's lines
    out_r, out_w = os.pipe()
    rec_r, rec_w = os.pipe()
    try:
        pid = _start(prog, cfg, work, out_w, rec_w)
    except OSError as e:
        for fd in (out_r, out_w, rec_r, rec_w):
            os.close(fd)
        return {"i": i, "rc": 126, "timeout": False, "out": f"could not start the program: {e}",
                "dur": 0.0, "recs": ""}
    os.close(out_w)
    os.close(rec_w)
    sel = selectors.DefaultSelector()
    for fd, what in ((out_r, "out"), (rec_r, "rec")):
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, what)
    cap, recs, status = Capture(cfg["cap"]), bytearray(), None
    deadline, exited_at, timed_out, open_fds = t0 + cfg["timeout"], None, False, 2
    while open_fds:
        now = time.monotonic()
        if now >= deadline:
            timed_out = True
            break
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status, exited_at = _status(st), now
        if exited_at is not None and now - exited_at > 0.2:
            break  # a leftover process keeps the pipes open; stop waiting for it
        for key, _ in sel.select(min(deadline - now, 0.05)):
            try:
                data = os.read(key.fd, 65536)
            except (BlockingIOError, InterruptedError):
                continue
            if not data:
                sel.unregister(key.fd)
                open_fds -= 1
            elif key.data == "out":
                cap.add(data)
            elif len(recs) < MAX_RECORDS:
                recs += data
    sel.close()
    if status is None:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        status = _status(os.waitpid(pid, 0)[1])
    _kill_rest(cfg, pid)
    try:  # whatever the program recorded before it was stopped
        while len(recs) < MAX_RECORDS and (data := os.read(rec_r, 65536)):
            recs += data
    except OSError:
        pass
    os.close(rec_r)
    os.close(out_r)
    return {"i": i, "rc": status, "timeout": timed_out, "out": cap.text(), "dur": time.monotonic() - t0,
            "recs": recs.decode("utf-8", "replace")}


def _prctl(dumpable):
    """Become a subreaper (orphans of our programs come to us, so we can kill and reap them) and, in the
    container, non-dumpable so the programs (same uid) cannot open /proc/<driver>/mem or fd."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
        if not dumpable:
            libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    except Exception:  # noqa: BLE001, S110 - best effort: no ctypes means no hardening, not no sandbox
        pass


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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cfg = json.loads("".join(argv) if argv else sys.stdin.read())
    _prctl(dumpable=not cfg.get("killall"))
    own = cfg.get("root") is None
    root = tempfile.mkdtemp(prefix="sepo-run-") if own else cfg["root"]
    try:
        for i, prog in enumerate(cfg["progs"]):
            res = run_one(i, prog, cfg, root)
            _wipe(root)
            sys.stdout.write(json.dumps(res) + "\n")
            sys.stdout.flush()
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
