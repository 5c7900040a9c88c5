"""An OpenAI-compatible endpoint in front of an LLMClient, for code that only takes a litellm model string.

MLflow's GepaPromptOptimizer and MetaPromptOptimizer call their reflection model through litellm
(`"openai:/<model>"` plus litellm keyword arguments). Pointing litellm's `api_base` at a `Bridge` sends every
such call through this project's LLM layer: the client's endpoint (a remote server or the embedded model),
its cache, retries, prices, budget and ledger (the cell's). A request the budget forbids is answered with
HTTP 400 "budget reached" (litellm does not retry it) and `budget_hit` keeps the reason, so the caller can
stop the run cleanly. The server listens on 127.0.0.1 on a free port, in a daemon thread.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.aio import run_sync
from harness.llm.client import LLMClient, LLMError
from harness.llm.usage import BudgetExceeded


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class Bridge:
    """`with Bridge(client) as b:` litellm with `model=f"openai/{b.model}"`, `api_base=b.url`."""

    def __init__(self, client: LLMClient) -> None:
        self.client = client
        self.model = client.model
        self.requests = 0
        self.budget_hit: str | None = None
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="llm-bridge", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def litellm_kwargs(self) -> dict[str, Any]:
        """What litellm needs to reach this bridge (model prefix `openai/`)."""
        return {"api_base": self.url, "api_key": "bridge"}

    def __enter__(self) -> Bridge:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def complete(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON reply) for one chat completion request."""
        if self.budget_hit is not None:
            return 400, _error(self.budget_hit, "budget_reached")
        messages = [{"role": m["role"], "content": _text(m.get("content"))} for m in body.get("messages", [])]
        cap = self.client.endpoint.max_tokens
        asked = body.get("max_tokens") or body.get("max_completion_tokens")
        try:
            res = run_sync(self.client.chat(messages, temperature=body.get("temperature"),
                                            max_tokens=min(int(asked), cap) if asked else cap, seed=body.get("seed")))
        except BudgetExceeded as exc:
            self.budget_hit = str(exc)
            return 400, _error(str(exc), "budget_reached")
        except LLMError as exc:
            return 502, _error(str(exc), "upstream_error")
        self.requests += 1
        return 200, {"id": f"bridge-{self.requests}", "object": "chat.completion", "created": 0, "model": self.model,
                     "choices": [{"index": 0, "finish_reason": res.finish_reason or "stop",
                                  "message": {"role": "assistant", "content": res.text}}],
                     "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                               "total_tokens": res.prompt_tokens + res.completion_tokens}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        bridge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # /v1/models
                self._send(200, {"object": "list", "data": [{"id": bridge.model, "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                self._send(*bridge.complete(body))

        return Handler


def _text(content: Any) -> str:
    """Message content as text (a list of parts keeps its text parts)."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}
