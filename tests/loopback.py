"""A loopback OpenAI-compatible chat server for tests: scripted replies and injected faults.

A test fixture only: its replies are scripted, so nothing it returns is ever a reported result.

    with LoopbackServer(reply=lambda body: "42") as srv:
        srv.inject(Fault(status=429, retry_after=0.05), times=2)
        ... AsyncOpenAI(base_url=srv.url) ...
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Fault:
    status: int | None = None  # answer with this HTTP status (429, 500, 401, 404, ...)
    retry_after: float | None = None  # Retry-After header, with status 429/503
    delay_s: float = 0.0  # sleep before answering (past the client's timeout = a timeout)
    malformed: bool = False  # answer 200 with a body that is not JSON
    drop: bool = False  # close the connection without answering


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops bursts of new connections
    daemon_threads = True


def default_reply(body: dict[str, Any]) -> str:
    return "echo: " + body["messages"][-1]["content"]


def count_tokens(text: str) -> int:
    return len(text.split())


class LoopbackServer:
    def __init__(self, reply: Callable[[dict[str, Any]], str] = default_reply, latency_s: float = 0.0,
                 model: str = "loopback") -> None:
        self.reply = reply
        self.latency_s = latency_s
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def inject(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # /v1/models
                self._send(200, json.dumps({"object": "list", "data": [{"id": server.model}]}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server._lock:
                    server.requests.append(body)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(body)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, body: dict[str, Any]) -> None:
                fault = server._next_fault() or Fault()
                time.sleep(server.latency_s + fault.delay_s)
                if fault.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault.malformed:
                    self._send(200, b'{"id": "x", "choices": [ this is not json')
                    return
                if fault.status is not None:
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                    err = {"error": {"message": f"injected {fault.status}", "type": "injected", "code": None}}
                    self._send(fault.status, json.dumps(err).encode(), headers)
                    return
                text, finish = server.reply(body), "stop"
                cap = body.get("max_tokens")
                if cap and count_tokens(text) > cap:  # like a real server: stop at the token cap
                    text, finish = " ".join(text.split()[:cap]), "length"
                prompt = " ".join(m["content"] for m in body["messages"])
                usage = {"prompt_tokens": count_tokens(prompt), "completion_tokens": count_tokens(text)}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                out = {
                    "id": f"cmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", server.model),
                    "choices": [{"index": 0, "finish_reason": finish,
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": usage,
                }
                self._send(200, json.dumps(out).encode())

        return Handler


def serve_in_subprocess(latency_s: float = 0.0):
    """Start a loopback server in its own process (so it does not share the client's GIL).

    Returns (process, url); the caller terminates the process.
    """
    import subprocess
    import sys

    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from tests.loopback import LoopbackServer; "
            "srv = LoopbackServer(latency_s=float(sys.argv[1])).__enter__(); print(srv.url, flush=True); "
            "sys.stdin.read()")
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", code, str(latency_s), str(root)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()
