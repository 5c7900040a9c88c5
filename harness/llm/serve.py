"""A small OpenAI-compatible HTTP server on 127.0.0.1 (free port, daemon thread): what the MLflow bridge
(harness/llm/bridge.py) and the rehearsal's simulated world (harness/rehearsal/server.py) share."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = 512  # bursts of new connections from many cells
    daemon_threads = True


class JSONHandler(BaseHTTPRequestHandler):
    """Quiet, keep-alive JSON request handling."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass

    def read_json(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class LoopbackServer:
    """Serves `handler` on 127.0.0.1 at a free port while in a `with` block; `url` ends in /v1."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str) -> None:
        self._httpd = _HTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=name, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def models_list(model: str) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model, "object": "model"}]}


def chat_completion(rid: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
                    completion_tokens: int, created: int = 0) -> dict[str, Any]:
    """An OpenAI chat.completion reply."""
    return {"id": rid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}
