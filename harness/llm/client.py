"""One async chat client for every OpenAI-compatible endpoint, built on `openai.AsyncOpenAI`.

It adds what an evaluation harness needs around each request: a content-addressed cache,
a concurrency limit, retries with exponential backoff and jitter on transient failures
(429, 5xx, timeouts, dropped connections, malformed replies), a clear error at once on other
4xx, usage and cost accounting per role, budget caps, and load spreading over replicas.
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import openai

from harness.config import ConfigError, EndpointConfig
from harness.errors import UserError
from harness.llm.cache import ResponseCache, cache_key
from harness.llm.usage import Ledger

UNHEALTHY_COOLDOWN_S = 5.0


class LLMError(UserError, RuntimeError):
    """A request that cannot succeed by retrying (bad key, unknown model, bad request)."""


class ReplayMiss(LLMError):
    """Replay mode (llm.cache.mode: replay): a request whose reply was never recorded."""


@dataclass(frozen=True)
class ChatResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    usd: float
    finish_reason: str | None = None


def resolve_api_key(endpoint: EndpointConfig, role: str) -> str:
    """The key from the endpoint's environment variable; a clear error if it is named but unset."""
    if endpoint.api_key_env is None:
        return "sk-no-key"  # local servers (llama.cpp, vLLM without auth) accept any key
    key = os.environ.get(endpoint.api_key_env)
    if not key:
        raise ConfigError(
            f"The {role} endpoint needs an API key: set the environment variable {endpoint.api_key_env}."
        )
    return key


class _Replica:
    def __init__(self, base_url: str, api_key: str, timeout_s: float) -> None:
        self.base_url = base_url
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)
        self.in_flight = 0
        self.unhealthy_until = 0.0


class LLMClient:
    """Chat with one endpoint in one role ("task" or "prompt"); share a Ledger across a run."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        *,
        role: str,
        ledger: Ledger | None = None,
        cache: ResponseCache | None = None,
        base_urls: list[str] | None = None,
        model: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.role = role
        self.ledger = ledger or Ledger()
        self.cache = cache
        self.model = model or endpoint.model or endpoint.local_model or "local"
        urls = base_urls or endpoint.base_urls
        if not urls:
            raise ConfigError(f"The {role} endpoint has no base_url and no embedded server was started.")
        api_key = resolve_api_key(endpoint, role)
        self._replicas = [_Replica(u, api_key, endpoint.timeout_s) for u in urls]
        self._sem = asyncio.Semaphore(endpoint.max_concurrency * len(self._replicas))
        self._rng = random.Random()
        self.max_in_flight = 0
        self._in_flight = 0

    def _params(self, temperature: float | None, max_tokens: int | None, seed: int | None) -> dict[str, Any]:
        p: dict[str, Any] = {
            "temperature": self.endpoint.temperature if temperature is None else temperature,
            "max_tokens": self.endpoint.max_tokens if max_tokens is None else max_tokens,
        }
        if seed is not None:
            p["seed"] = seed
        return p

    def _pick(self) -> _Replica:
        now = time.monotonic()
        healthy = [r for r in self._replicas if r.unhealthy_until <= now] or self._replicas
        return min(healthy, key=lambda r: (r.in_flight, self._rng.random()))

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        e = self.endpoint
        return (prompt_tokens * e.price_input_per_m + completion_tokens * e.price_output_per_m) / 1e6

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        sample: int = 0,
    ) -> ChatResult:
        """One chat completion. `sample` distinguishes repeated draws of the same request."""
        params = self._params(temperature, max_tokens, seed)
        key = cache_key(self.model, messages, params, sample)
        hit = self.cache.get(key) if self.cache is not None else None
        replay = self.cache is not None and self.cache.mode == "replay"
        if hit is not None and not (replay and self.cache.first_serve(key)):
            self.ledger.record_hit(self.role, hit["prompt_tokens"] + hit["completion_tokens"],
                                   self._cost(hit["prompt_tokens"], hit["completion_tokens"]))
            return ChatResult(hit["text"], hit["prompt_tokens"], hit["completion_tokens"], True, 0.0,
                              hit.get("finish_reason"))
        if replay:
            return self._replayed(hit, key)
        self.ledger.start_request()
        async with self._sem:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                result = await self._with_retries(messages, params)
            finally:
                self._in_flight -= 1
        self.ledger.record(self.role, result.prompt_tokens, result.completion_tokens, result.usd)
        if self.cache is not None:
            self.cache.put(key, {"text": result.text, "prompt_tokens": result.prompt_tokens,
                                 "completion_tokens": result.completion_tokens,
                                 "finish_reason": result.finish_reason})
        return result

    def _replayed(self, hit: dict[str, Any] | None, key: str) -> ChatResult:
        """Replay mode: the recorded reply, accounted as the paid request it was; a miss is an error."""
        if hit is None:
            raise ReplayMiss(f"The replay cache {self.cache.path} has no recorded reply for this {self.role} request "
                             f"(model {self.model}, key {key[:12]}): the code now asks something the recording "
                             "never did; re-record the cache if that change is intended.")
        self.ledger.start_request()
        pt, ct = hit["prompt_tokens"], hit["completion_tokens"]
        usd = self._cost(pt, ct)
        self.ledger.record(self.role, pt, ct, usd)
        return ChatResult(hit["text"], pt, ct, False, usd, hit.get("finish_reason"))

    async def _with_retries(self, messages: list[dict[str, str]], params: dict[str, Any]) -> ChatResult:
        e = self.endpoint
        for attempt in range(e.max_retries + 1):
            replica = self._pick()
            replica.in_flight += 1
            try:
                return await self._request(replica, messages, params)
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise LLMError(f"The {self.role} endpoint {replica.base_url} refused the API key "
                               f"(HTTP {exc.status_code}); check {e.api_key_env or 'its api_key_env'}.") from None
            except openai.NotFoundError:
                raise LLMError(f"The {self.role} endpoint {replica.base_url} does not serve model "
                               f"'{self.model}' (HTTP 404); check the model name and base_url.") from None
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError, _Malformed) as exc:
                if isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError):
                    replica.unhealthy_until = time.monotonic() + UNHEALTHY_COOLDOWN_S
                if attempt == e.max_retries:
                    raise LLMError(f"The {self.role} endpoint failed after {attempt + 1} attempts: "
                                   f"{type(exc).__name__}: {exc}") from None
                self.ledger.record_retry(self.role)
                await asyncio.sleep(self._delay(attempt, exc))
            except openai.APIStatusError as exc:  # other 4xx: retrying will not help
                raise LLMError(f"The {self.role} endpoint rejected the request (HTTP {exc.status_code}): "
                               f"{exc.message}") from None
            finally:
                replica.in_flight -= 1
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, exc: Exception) -> float:
        e = self.endpoint
        retry_after = None
        if isinstance(exc, openai.APIStatusError):
            try:
                retry_after = float(exc.response.headers.get("retry-after", ""))
            except ValueError:
                retry_after = None
        if retry_after is not None:
            return min(retry_after, e.backoff_max_s)
        return min(e.backoff_max_s, e.backoff_base_s * 2**attempt) * self._rng.uniform(0.5, 1.5)

    async def _request(self, replica: _Replica, messages: list[dict[str, str]],
                       params: dict[str, Any]) -> ChatResult:
        try:
            resp = await replica.client.chat.completions.create(model=self.model, messages=messages, **params)
        except openai.APIResponseValidationError as exc:
            raise _Malformed(str(exc)) from None
        except ValueError as exc:  # a body that is not JSON
            raise _Malformed(f"unparseable reply: {exc}") from None
        if not getattr(resp, "choices", None) or resp.choices[0].message is None:
            raise _Malformed("reply has no choices")
        usage = resp.usage
        pt = usage.prompt_tokens if usage else 0
        ct = usage.completion_tokens if usage else 0
        return ChatResult(resp.choices[0].message.content or "", pt, ct, False, self._cost(pt, ct),
                          resp.choices[0].finish_reason)

    def with_ledger(self, ledger: Ledger) -> LLMClient:
        """The same endpoint, connections, concurrency limit and cache, accounted on another ledger."""
        clone = copy.copy(self)
        clone.ledger = ledger
        return clone

    async def aclose(self) -> None:
        for r in self._replicas:
            await r.client.close()


class _Malformed(Exception):
    """The server answered, but not with a usable chat completion."""
