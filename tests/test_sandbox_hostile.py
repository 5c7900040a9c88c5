"""Hostile programs against the Docker sandbox: each must be contained, and the pool must keep working."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sandboxes.base import Program

pytest.register_assert_rewrite("tests.sandbox_fixtures")
from tests.sandbox_fixtures import ROOT, ok_program, open_docker, own_containers, require_docker

pytest_plugins = ["tests.sandbox_fixtures"]  # one session-wide sandbox per backend
pytestmark = pytest.mark.docker
CAP = 64 * 1024


@pytest.fixture
def sb(docker_sandbox):
    """The session sandbox; after each test the pool must still run normal programs on every container."""
    yield docker_sandbox
    res = docker_sandbox.run_many([ok_program(i) for i in range(6)], timeout_s=5)
    assert all(r.passed for r in res), [r.reason for r in res]
    for slot in docker_sandbox._slots:  # only `sleep infinity` may be left: no stray processes or zombies
        procs = docker_sandbox.client.api.top(slot.cid)["Processes"]
        assert [p[-1] for p in procs] == ["sleep infinity"], procs


def run(sb, code: str, timeout_s: float = 3.0):
    return sb.run(Program(textwrap.dedent(code), ""), timeout_s=timeout_s)


def test_infinite_loop_times_out(sb) -> None:
    t0 = time.monotonic()
    r = run(sb, "while True:\n    pass\n", timeout_s=2)
    assert r.reason == "timeout" and not r.passed
    assert time.monotonic() - t0 < 4


def test_sleeping_children_are_killed(sb) -> None:
    r = run(sb, """
        import os, subprocess, time
        for _ in range(5):
            if os.fork() == 0:
                os.setsid()
                time.sleep(1000)
        print('parent done')
    """)
    assert r.passed and "parent done" in r.output  # the fixture checks that the sleepers are gone


def test_fork_bomb_hits_process_limit(sb) -> None:
    t0 = time.monotonic()
    r = run(sb, """
        import os
        while True:
            os.fork()
    """, timeout_s=5)
    assert not r.passed
    assert "Resource temporarily unavailable" in r.output or r.reason == "timeout", r
    assert time.monotonic() - t0 < 5 + 6


def test_memory_bomb_is_killed(sb) -> None:
    r = run(sb, """
        blocks = []
        while True:
            blocks.append(bytearray(16 * 1024 * 1024))
    """, timeout_s=10)
    assert not r.passed
    assert r.reason == "killed (memory)" or "MemoryError" in r.reason, r


def test_big_single_allocation_fails(sb) -> None:
    r = run(sb, "x = bytearray(2 * 1024 ** 3)\nprint('allocated')\n")
    assert not r.passed and "allocated" not in r.output


def test_no_network(sb) -> None:
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen()
    port = host.getsockname()[1]
    try:
        r = run(sb, f"""
            import socket
            for addr in [("1.1.1.1", 53), ("8.8.8.8", 443), ("127.0.0.1", {port}), ("172.17.0.1", 2375)]:
                s = socket.socket()
                s.settimeout(2)
                try:
                    s.connect(addr)
                    print("CONNECTED", addr)
                except OSError as e:
                    print("BLOCKED", addr, e)
            try:
                socket.getaddrinfo("deb.debian.org", 80)
                print("RESOLVED")
            except OSError as e:
                print("NO-DNS", e)
            print(sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]))
        """, timeout_s=15)
    finally:
        host.close()
    assert r.passed, r
    assert "CONNECTED" not in r.output and r.output.count("BLOCKED") == 4 and "NO-DNS" in r.output, r.output
    assert "['lo']" in r.output


def test_cannot_write_outside_tmp(sb) -> None:
    r = run(sb, """
        import os
        for path in ["/x", "/etc/passwd", "/var/tmp/x", "/usr/lib/python3.11/os.py", "/root/x", "/opt/x"]:
            try:
                with open(path, "a") as f:
                    f.write("pwned")
                print("WROTE", path)
            except OSError as e:
                print("DENIED", path, e.strerror)
        with open("/tmp/ok.txt", "w") as f:
            f.write("fine")
        print("TMP-OK", os.getuid())
    """)
    assert r.passed, r
    assert "WROTE" not in r.output and r.output.count("DENIED") == 6
    assert "Read-only file system" in r.output and "TMP-OK 65534" in r.output


def test_tmp_is_small(sb) -> None:
    r = run(sb, """
        chunk = b"z" * (1024 * 1024)
        written = 0
        try:
            with open("/tmp/fill", "wb") as f:
                for _ in range(1024):
                    f.write(chunk)
                    written += 1
        except OSError as e:
            print("STOPPED", written, e.strerror)
    """, timeout_s=10)
    assert "STOPPED" in r.output, r
    assert int(r.output.split("STOPPED")[1].split()[0]) <= 64


def test_no_host_files(sb) -> None:
    shadow = Path("/etc/shadow")
    host_hash = hashlib.sha256(shadow.read_bytes()).hexdigest() if os.access(shadow, os.R_OK) else "unreadable"
    r = run(sb, f"""
        import hashlib, os
        for p in [{str(ROOT)!r}, "/work", {str(Path.home())!r} + "/.cache/sepo-bench", "/var/run/docker.sock"]:
            print("EXISTS" if os.path.exists(p) else "ABSENT", p)
        try:
            print("SHADOW", hashlib.sha256(open("/etc/shadow", "rb").read()).hexdigest())
        except OSError as e:
            print("SHADOW-DENIED", e.strerror)
        mounts = open("/proc/mounts").read()
        print("MOUNTS", [m.split()[1] for m in mounts.splitlines()])
    """)
    assert r.passed, r
    assert "EXISTS" not in r.output and r.output.count("ABSENT") == 4, r.output
    assert host_hash not in r.output
    assert "SHADOW-DENIED" in r.output
    assert "/work" not in r.output.split("MOUNTS")[1]


def test_huge_output_capped(sb) -> None:
    r = run(sb, "import sys\nwhile True:\n    sys.stdout.write('A' * 65536)\n", timeout_s=2)
    assert r.reason == "timeout"
    assert len(r.output) <= CAP + 200 and "truncated" in r.output


def test_program_killing_the_runner_is_blamed_alone(sb) -> None:
    progs = [ok_program(1), Program("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", ""),
             ok_program(2), Program("import os, signal\nos.kill(-1, signal.SIGKILL)\n", ""), ok_program(3)]
    res = sb.run_many(progs, timeout_s=5)
    assert [r.passed for r in res] == [True, False, True, False, True], [r.reason for r in res]
    assert "runner died" in res[1].reason


def test_cannot_forge_results(sb) -> None:
    fake = '{"i": 0, "rc": 0, "timeout": false, "out": "", "dur": 0.0}'
    r = run(sb, f"""
        import os
        for fd in (1, 2):
            try:
                with open(f"/proc/{{os.getppid()}}/fd/{{fd}}", "w") as f:
                    f.write({fake!r} + "\\n")
                print("FORGED")
            except OSError as e:
                print("DENIED", e.strerror)
        raise SystemExit(1)
    """)
    assert not r.passed and "FORGED" not in r.output, r


def test_no_leak_after_close() -> None:
    sb2 = open_docker(pool_size=1, timeout_s=5)
    cids = [s.cid for s in sb2._slots]
    assert sb2.run(ok_program()).passed
    assert {c.id for c in own_containers(sb2.client)} >= set(cids)
    sb2.close()
    sb2.close()  # idempotent
    assert not {c.id for c in own_containers(sb2.client)} & set(cids)


def test_no_leak_after_ctrl_c() -> None:
    """A process interrupted mid-run (SIGINT) removes its containers on the way out."""
    client = require_docker()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from sandboxes.base import Program
        from sandboxes.docker import DockerSandbox
        sb = DockerSandbox(pool_size=1)
        print("READY", flush=True)
        sb.run(Program("import time; time.sleep(60)", ""), timeout_s=60)
    """), str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "READY"
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    finally:
        child.kill()
    from sandboxes.docker import LABEL, OWNER

    left = [c for c in client.containers.list(all=True, filters={"label": LABEL})
            if c.labels.get(OWNER, "").endswith(f":{child.pid}")]
    assert not left, [c.name for c in left]


def test_memory_across_processes_hits_container_limit(sb) -> None:
    """Each child stays under the per-process limit; together they exceed the container's memory."""
    r = run(sb, """
        import os, time
        pids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                x = bytearray(200 * 1024 * 1024)
                for i in range(0, len(x), 4096):
                    x[i] = 1
                time.sleep(1)
                os._exit(0)
            pids.append(pid)
        statuses = [os.waitpid(p, 0)[1] for p in pids]
        print("KILLED", sum(os.WIFSIGNALED(s) and os.WTERMSIG(s) == 9 for s in statuses))
    """, timeout_s=15)
    assert r.passed, r
    assert int(r.output.split("KILLED")[1]) >= 2, r.output


def test_host_watchdog_when_runner_is_frozen(sb) -> None:
    """A program that stops the in-container runner is caught by the host-side timeout."""
    t0 = time.monotonic()
    res = sb.run_many([Program("import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n", ""), ok_program(4)],
                      timeout_s=2)
    assert res[0].reason == "timeout" and not res[0].passed, res[0]
    assert res[1].passed
    assert time.monotonic() - t0 < 2 + 5 + 5
