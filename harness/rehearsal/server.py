"""One simulated OpenAI-compatible server (one per role): POST /v1/chat/completions, GET /v1/models.

A ThreadingHTTPServer on 127.0.0.1 at a free port; the real `openai` client talks to it over HTTP. Each
request waits its latency (fixed, or uniform in mean x [1 - jitter, 1 + jitter]) and is recorded in the
role's Meter. Replies come from an agent with `reply(body) -> Reply`.
"""

from __future__ import annotations

import random
import time
from typing import Any, Protocol

from harness.llm.serve import JSONHandler, LoopbackServer, chat_completion, models_list
from harness.rehearsal.meter import Meter
from harness.rehearsal.task_agent import Reply


class Agent(Protocol):
    def reply(self, body: dict[str, Any]) -> Reply: ...


class SimServer(LoopbackServer):
    def __init__(self, agent: Agent, meter: Meter, *, latency_s: float = 0.0, jitter: float = 0.0,
                 model: str = "simulated") -> None:
        self.agent, self.meter, self.latency_s, self.jitter, self.model = agent, meter, latency_s, jitter, model
        self._rng = random.Random(0)
        super().__init__(self._handler(), "rehearsal-server")

    def delay(self) -> float:
        if not self.jitter:
            return self.latency_s
        return self.latency_s * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.agent.reply(body)
        return chat_completion(f"sim-{self.meter.requests}", body.get("model", self.model), r.text, r.finish_reason,
                               r.prompt_tokens, r.completion_tokens, created=int(time.time()))

    def _handler(self) -> type[JSONHandler]:
        server = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:
                self.send_json(200, models_list(server.model))

            def do_POST(self) -> None:
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self.send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                body = self.read_json()
                started = server.meter.start()
                cpu, tokens = time.thread_time(), (0, 0)
                try:
                    payload = server.completion(body)
                    cpu = time.thread_time() - cpu
                    tokens = (payload["usage"]["prompt_tokens"], payload["usage"]["completion_tokens"])
                    time.sleep(max(0.0, server.delay() - (time.monotonic() - started)))
                    self.send_json(200, payload)
                except Exception as exc:  # a bug in the world: a 500 the client retries, never a crash
                    cpu = time.thread_time() - cpu
                    self.send_json(500, {"error": {"message": f"simulated world: {exc!r}", "type": "server_error"}})
                finally:
                    server.meter.end(started, cpu, tokens)

        return Handler
