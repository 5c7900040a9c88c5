"""An OpenAI-compatible endpoint in front of an LLMClient, for code that only takes a litellm model string.

MLflow's GepaPromptOptimizer and MetaPromptOptimizer call their reflection model through litellm
(`"openai:/<model>"` plus litellm keyword arguments). Pointing litellm's `api_base` at a `Bridge` sends every
such call through this project's LLM layer: the client's endpoint (a remote server or the embedded model),
its cache, retries, prices, budget and ledger (the cell's). A request the budget forbids is answered with
HTTP 400 "budget reached" (litellm does not retry it) and `budget_hit` keeps the reason, so the caller can
stop the run cleanly. The server listens on 127.0.0.1 on a free port, in a daemon thread.
"""

from __future__ import annotations

from typing import Any

from harness.aio import run_sync
from harness.llm.client import LLMClient, LLMError
from harness.llm.serve import JSONHandler, LoopbackServer, chat_completion, models_list
from harness.llm.usage import BudgetExceeded


class Bridge(LoopbackServer):
    """`with Bridge(client) as b:` litellm with `model=f"openai/{b.model}"`, `api_base=b.url`."""

    def __init__(self, client: LLMClient) -> None:
        self.client = client
        self.model = client.model
        self.requests = 0
        self.budget_hit: str | None = None
        super().__init__(self._handler(), "llm-bridge")

    def litellm_kwargs(self) -> dict[str, Any]:
        """What litellm needs to reach this bridge (model prefix `openai/`)."""
        return {"api_base": self.url, "api_key": "bridge"}

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
        return 200, chat_completion(f"bridge-{self.requests}", self.model, res.text, res.finish_reason or "stop",
                                    res.prompt_tokens, res.completion_tokens)

    def _handler(self) -> type[JSONHandler]:
        bridge = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:  # /v1/models
                self.send_json(200, models_list(bridge.model))

            def do_POST(self) -> None:
                self.send_json(*bridge.complete(self.read_json()))

        return Handler


def _text(content: Any) -> str:
    """Message content as text (a list of parts keeps its text parts)."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}
