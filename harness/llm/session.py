"""Open the LLMs of a run: task and prompt agents, one ledger, one cache, embedded servers.

Everything a user can get wrong (a missing key, an unreachable endpoint, a corrupted model)
is checked here, before any paid request.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from harness.aio import run_sync
from harness.config import DEFAULT_LOCAL, ConfigError, EndpointConfig, LLMConfig
from harness.llm.cache import ResponseCache
from harness.llm.client import LLMClient, resolve_api_key
from harness.llm.local import DEFAULT_PARALLEL, LlamaServer
from harness.llm.usage import Budget, Ledger

EMBEDDED_TIMEOUT_S = 900.0  # a request may wait for a free slot behind long replies


@dataclass
class LLMs:
    task: LLMClient
    prompt: LLMClient | None  # None when the run asked for the task role only
    ledger: Ledger
    cache: ResponseCache


def check_reachable(endpoint: EndpointConfig, role: str, timeout_s: float = 5.0) -> None:
    """GET {base_url}/models on every replica; one clear sentence if any cannot be reached."""
    key = resolve_api_key(endpoint, role)
    for url in endpoint.base_urls:
        req = urllib.request.Request(url.rstrip("/") + "/models", headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                json.load(r)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise ConfigError(f"The {role} endpoint {url} refused the API key (HTTP {exc.code}); "
                                  f"check {endpoint.api_key_env}.") from None
            # some servers do not implement /models: reachable is enough
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"The {role} endpoint {url} is not reachable ({reason}); start the server "
                              "or fix base_url in the config.") from None


def local_threads(cfg: LLMConfig, n_servers: int, concurrent: bool = False) -> int:
    """Threads per embedded server (llm.local_threads wins): every core when the roles take turns (one cell
    at a time), the cores split between the servers when cells run at once, as measured with
    perf/local_throughput.py --two-models (figures in the README, "Measured here")."""
    cores = os.cpu_count() or 2
    if cfg.local_threads:
        return cfg.local_threads
    return max(1, cores // n_servers) if concurrent and n_servers > 1 else cores


def _start_servers(cfg: LLMConfig, roles: dict[str, EndpointConfig], stack: ExitStack,
                   concurrent: bool) -> dict[str, LlamaServer]:
    """One embedded server per local model; a model shared by both roles gets the larger slot count."""
    slots: dict[str, int] = {}
    for role, ep in roles.items():
        if ep.embedded:
            name = ep.local_model or DEFAULT_LOCAL[role]
            slots[name] = max(slots.get(name, 0), ep.local_parallel or DEFAULT_PARALLEL.get(name, 4))
    threads = local_threads(cfg, len(slots), concurrent)
    return {name: stack.enter_context(LlamaServer(name, n_ctx=cfg.local_context, parallel=n, n_threads=threads,
                                                  backend=cfg.local_server))
            for name, n in slots.items()}


@contextmanager
def open_llms(cfg: LLMConfig, *, preflight: bool = True, prompt_agent: bool = True,
              concurrent: bool = False) -> Iterator[LLMs]:
    """Clients for the task role and (unless prompt_agent=False) the prompt role; embedded llama.cpp
    servers start here and stop on exit (`concurrent`: the roles will be busy at the same time, e.g.
    several cells at once, so two servers split the cores). An embedded role's max_concurrency is its
    server's slot count (llm.<role>.local_parallel, default per model; 1 with llm.local_server: python)."""
    roles = {"task": cfg.task, "prompt": cfg.prompt} if prompt_agent else {"task": cfg.task}
    for role, ep in roles.items():  # keys first: cheapest check, before any server starts
        if not ep.embedded:
            resolve_api_key(ep, role)
    if preflight and cfg.cache.mode != "replay":
        for role, ep in roles.items():
            if not ep.embedded:
                check_reachable(ep, role)
    ledger = Ledger(Budget(**cfg.budget.model_dump()))
    cache = ResponseCache(cfg.cache.path, cfg.cache.mode)
    with ExitStack() as stack:
        stack.callback(cache.close)
        servers = _start_servers(cfg, roles, stack, concurrent) if cfg.cache.mode != "replay" else {}
        clients: dict[str, LLMClient] = {}
        for role, ep in roles.items():
            if ep.embedded and cfg.cache.mode == "replay":  # recorded replies only: no server is started
                clients[role] = LLMClient(ep, role=role, ledger=ledger, cache=cache, model=ep.local_model
                                          or DEFAULT_LOCAL[role], base_urls=["http://replay.invalid/v1"])
            elif ep.embedded:
                srv = servers[ep.local_model or DEFAULT_LOCAL[role]]
                # as many requests in flight as the server has slots: more would only queue there
                ep = ep.model_copy(update={"max_concurrency": srv.parallel,
                                           "timeout_s": max(ep.timeout_s, EMBEDDED_TIMEOUT_S)})
                clients[role] = LLMClient(ep, role=role, ledger=ledger, cache=cache,
                                          base_urls=[srv.base_url], model=srv.name)
            else:
                clients[role] = LLMClient(ep, role=role, ledger=ledger, cache=cache)
        try:
            yield LLMs(clients["task"], clients.get("prompt"), ledger, cache)
        finally:
            for c in clients.values():
                run_sync(c.aclose())
