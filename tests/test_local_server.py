"""llama.cpp's native llama-server: the pinned build, its errors, slots and concurrency set together."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.aio import run_sync
from harness.config import EndpointConfig, parse_config
from harness.llm import local, session
from harness.llm.client import LLMClient


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def toolchain(tmp_path, monkeypatch):
    """A fake PATH with cmake, a compiler and make; the `cmake` script is what the test writes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("cc", "c++", "make"):
        _script(bin_dir / tool, "exit 0\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")  # the fake tools first
    which = shutil.which
    monkeypatch.setattr(local.shutil, "which", lambda cmd: which(cmd, path=str(bin_dir)))  # and only they
    monkeypatch.setenv("SEPO_CACHE_DIR", str(tmp_path / "cache"))
    return bin_dir


def _fake_sdist(dest: Path, quiet: bool) -> Path:
    sdist = dest / local.LLAMA_CPP_SDIST_FILE
    with tarfile.open(sdist, "w:gz") as tf:
        for name, data in [(local._VENDOR + "CMakeLists.txt", b"project(x)\n"), (local._VENDOR + ".git", b"gitdir: x"),
                           ("llama_cpp_python-0.3.36/setup.py", b"")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return sdist


def test_missing_cmake_is_one_sentence(toolchain):
    (toolchain / "c++").unlink()
    with pytest.raises(local.ModelError) as e:
        local.server_binary(quiet=True)
    msg = str(e.value)
    assert "needs cmake, a C++ compiler" in msg and "apt-get install" in msg and msg.count(". ") == 0


def test_build_once_then_cached_and_keyed_by_the_pinned_hash(toolchain, monkeypatch, capsys):
    monkeypatch.setattr(local, "_download_sdist", _fake_sdist)
    calls = toolchain / "calls"
    # configure: checks the vendored source was unpacked without its dangling .git; build: makes the binary
    _script(toolchain / "cmake", f'echo "$@" >> {calls}\n'
            'if [ "$1" = "-S" ]; then test -f "$2/CMakeLists.txt" && test ! -e "$2/.git" || exit 1; exit 0; fi\n'
            'echo "[ 50%] Building x"; echo "[100%] Linking llama-server"\n'
            'mkdir -p "$2/bin" && printf "#!/bin/sh\\n" > "$2/bin/llama-server" && chmod +x "$2/bin/llama-server"\n')
    exe = local.server_binary()
    assert exe.is_file() and local.LLAMA_CPP_SDIST_SHA256[:16] in str(exe)
    assert "once" in capsys.readouterr().err  # the progress message
    assert local.server_binary() == exe  # cached: no second build
    lines = calls.read_text().splitlines()
    assert len(lines) == 2 and "-DLLAMA_CURL=OFF" in lines[0] and "--target llama-server" in lines[1]


def test_failed_build_names_the_error_and_the_log(toolchain, monkeypatch):
    monkeypatch.setattr(local, "_download_sdist", _fake_sdist)
    _script(toolchain / "cmake", 'echo "-- The C compiler identification is GNU"\n'
            'echo "CMake Error at CMakeLists.txt:1 (project): No CMAKE_CXX_COMPILER could be found."\nexit 1\n')
    with pytest.raises(local.ModelError, match=r"failed while configuring \(CMake Error.*CMAKE_CXX_COMPILER.*"
                                               r"the full log is .*build\.log\.$"):
        local.server_binary(quiet=True)
    assert not (local.server_dir() / "llama-server").exists()


def test_source_with_the_wrong_hash_is_refused(tmp_path, monkeypatch):
    def fake_pip(cmd, **kw):
        (Path(cmd[cmd.index("--dest") + 1]) / local.LLAMA_CPP_SDIST_FILE).write_bytes(b"tampered")
        return type("P", (), {"returncode": 0, "stderr": ""})()

    monkeypatch.setattr(local.subprocess, "run", fake_pip)
    with pytest.raises(local.ModelError, match="does not match its pinned sha256"):
        local._download_sdist(tmp_path, True)


def _fake_server(tmp_path, monkeypatch, body: str) -> None:
    monkeypatch.setenv("SEPO_CACHE_DIR", str(tmp_path))
    exe = local.server_dir() / "llama-server"
    exe.parent.mkdir(parents=True)
    _script(exe, body)
    monkeypatch.setattr(local, "ensure_model", lambda name: tmp_path / "m.gguf")


def test_failed_start_is_one_sentence(tmp_path, monkeypatch):
    _fake_server(tmp_path, monkeypatch, 'echo "load_model: loading model"\n'
                 'echo "gguf_init_from_file_impl: failed to read magic" >&2\necho "main: exiting"\nexit 1\n')
    with pytest.raises(local.ModelError, match=r"^The llama.cpp server for smollm2-135m exited at start: "
                                               r"gguf_init_from_file_impl: failed to read magic\.$"):
        local.LlamaServer("smollm2-135m").start()


def test_command_line_slots_context_and_loopback(tmp_path, monkeypatch):
    _fake_server(tmp_path, monkeypatch, "exit 1\n")
    srv = local.LlamaServer("qwen2.5-coder-0.5b", n_ctx=2048, parallel=3, n_threads=1)
    cmd = srv._command(Path("m.gguf"))
    arg = {cmd[i]: cmd[i + 1] for i in range(1, len(cmd) - 1) if cmd[i].startswith("--")}
    assert arg["--host"] == "127.0.0.1" and arg["--parallel"] == "3" and arg["--ctx-size"] == str(3 * 2048)
    assert arg["--threads"] == "1" and "--cache-prompt" in cmd and "--no-kv-unified" in cmd
    py = local.LlamaServer("qwen2.5-coder-0.5b", parallel=4, backend="python")
    assert py.parallel == 1 and "harness.llm.pyserver" in py._command(Path("m.gguf"))  # no repack on AMX
    with pytest.raises(local.ModelError, match="choose one of"):
        local.LlamaServer("qwen2.5-coder-0.5b", backend="ollama")


class _FakeServer:
    started: list[_FakeServer] = []

    def __init__(self, name, *, n_ctx=None, parallel=None, n_threads=None, backend="llama-server"):
        self.name, self.n_ctx, self.n_threads, self.backend = name, n_ctx, n_threads, backend
        self.parallel = 1 if backend == "python" else parallel
        self.base_url = f"http://127.0.0.1:1/{name}/v1"
        _FakeServer.started.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@contextmanager
def _opened(monkeypatch, llm: dict):
    _FakeServer.started = []
    monkeypatch.setattr(session, "LlamaServer", _FakeServer)
    cfg = parse_config({"llm": {**llm, "cache": {"mode": "off"}}}).llm
    with session.open_llms(cfg) as llms:
        yield llms


def test_slots_and_concurrency_are_set_together(monkeypatch):
    llm = {"task": {"local_model": "qwen2.5-coder-0.5b", "local_parallel": 3},
           "prompt": {"local_model": "qwen2.5-coder-1.5b"}, "local_context": 4096}
    with _opened(monkeypatch, llm) as llms:
        by_name = {s.name: s for s in _FakeServer.started}
        assert by_name["qwen2.5-coder-0.5b"].parallel == 3 and llms.task.endpoint.max_concurrency == 3
        default = local.DEFAULT_PARALLEL["qwen2.5-coder-1.5b"]
        assert by_name["qwen2.5-coder-1.5b"].parallel == default and llms.prompt.endpoint.max_concurrency == default
        assert by_name["qwen2.5-coder-0.5b"].n_ctx == 4096


def test_one_model_for_both_roles_is_one_server_with_the_larger_slot_count(monkeypatch):
    llm = {"task": {"local_model": "smollm2-135m", "local_parallel": 2},
           "prompt": {"local_model": "smollm2-135m", "local_parallel": 5}}
    with _opened(monkeypatch, llm) as llms:
        assert len(_FakeServer.started) == 1 and _FakeServer.started[0].parallel == 5
        assert llms.task.endpoint.max_concurrency == 5 and llms.prompt.endpoint.max_concurrency == 5


def test_python_fallback_is_one_request_at_a_time(monkeypatch):
    with _opened(monkeypatch, {"local_server": "python", "task": {"local_parallel": 4}}) as llms:
        assert all(s.backend == "python" for s in _FakeServer.started)
        assert llms.task.endpoint.max_concurrency == 1 and llms.prompt.endpoint.max_concurrency == 1


def test_unknown_local_server_is_a_config_error():
    from harness.config import ConfigError

    with pytest.raises(ConfigError, match="local_server"):
        parse_config({"llm": {"local_server": "vllm"}})


@pytest.mark.local_model
def test_native_server_decodes_its_slots_at_once(local_server):
    """The session's server: llama-server with parallel slots, all busy at once through the LLM layer."""
    import asyncio
    import json
    import urllib.request

    if os.environ.get("SEPO_LOCAL_SERVER") == "python":
        pytest.skip("SEPO_LOCAL_SERVER=python: the session's server is the one-slot fallback")
    assert local_server.backend == "llama-server"
    with urllib.request.urlopen(f"http://127.0.0.1:{local_server.port}/props", timeout=5) as r:
        assert json.load(r)["total_slots"] == local_server.parallel > 1
    n = local_server.parallel
    ep = EndpointConfig(max_tokens=8, timeout_s=300, max_concurrency=n)
    c = LLMClient(ep, role="task", base_urls=[local_server.base_url], model=local_server.name)

    async def burst():
        return await asyncio.gather(*(c.chat([{"role": "user", "content": f"Say the number {i}."}])
                                      for i in range(2 * n)))

    res = run_sync(burst())
    run_sync(c.aclose())
    assert len(res) == 2 * n and all(r.completion_tokens > 0 for r in res)
    assert c.max_in_flight == n
