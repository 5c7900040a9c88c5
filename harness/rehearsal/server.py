"""One simulated OpenAI-compatible server (one per role): POST /v1/chat/completions, GET /v1/models.

A ThreadingHTTPServer on 127.0.0.1 at a free port; the real `openai` client talks to it over HTTP. Each
request waits its latency (fixed, or uniform in mean x [1 - jitter, 1 + jitter]) and is recorded in the
role's Meter. Replies come from an agent with `reply(body) -> Reply`.
"""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from harness.rehearsal.meter import Meter
from harness.rehearsal.task_agent import Reply


class Agent(Protocol):
    def reply(self, body: dict[str, Any]) -> Reply: ...


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = 512  # bursts of new connections from many cells
    daemon_threads = True


class SimServer:
    def __init__(self, agent: Agent, meter: Meter, *, latency_s: float = 0.0, jitter: float = 0.0,
                 model: str = "simulated") -> None:
        self.agent, self.meter, self.latency_s, self.jitter, self.model = agent, meter, latency_s, jitter, model
        self._rng = random.Random(0)
        self._httpd = _HTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="rehearsal-server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> SimServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def delay(self) -> float:
        if not self.jitter:
            return self.latency_s
        return self.latency_s * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.agent.reply(body)
        return {"id": f"sim-{self.meter.requests}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", self.model),
                "choices": [{"index": 0, "finish_reason": r.finish_reason,
                             "message": {"role": "assistant", "content": r.text}}],
                "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                          "total_tokens": r.prompt_tokens + r.completion_tokens}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})

            def do_POST(self) -> None:
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                started = server.meter.start()
                cpu, tokens = time.thread_time(), (0, 0)
                try:
                    payload = server.completion(body)
                    cpu = time.thread_time() - cpu
                    tokens = (payload["usage"]["prompt_tokens"], payload["usage"]["completion_tokens"])
                    time.sleep(max(0.0, server.delay() - (time.monotonic() - started)))
                    self._send(200, payload)
                except Exception as exc:  # a bug in the world: a 500 the client retries, never a crash
                    cpu = time.thread_time() - cpu
                    self._send(500, {"error": {"message": f"simulated world: {exc!r}", "type": "server_error"}})
                finally:
                    server.meter.end(started, cpu, tokens)

        return Handler
