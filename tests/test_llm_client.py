"""The LLM layer against the loopback server: cache, retries, concurrency, accounting, budgets."""

from __future__ import annotations

import asyncio

import pytest

from harness.aio import run_sync
from harness.config import EndpointConfig
from harness.llm.cache import ResponseCache
from harness.llm.client import LLMClient, LLMError
from harness.llm.usage import Budget, BudgetExceeded, Ledger
from tests.loopback import Fault, LoopbackServer, count_tokens

MSG = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what is two plus two"}]


def client(url: str | list[str], cache: ResponseCache | None = None, ledger: Ledger | None = None,
           **kw) -> LLMClient:
    settings = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2.0} | kw
    ep = EndpointConfig(base_url=url, model="m", **settings)
    return LLMClient(ep, role="task", cache=cache, ledger=ledger)


def test_cache_hit_sends_no_request(loopback, tmp_path):
    c = client(loopback.url, ResponseCache(tmp_path / "c.sqlite"))
    first = run_sync(c.chat(MSG))
    second = run_sync(c.chat(MSG))
    assert len(loopback.requests) == 1
    assert second.cached and not first.cached and second.text == first.text
    assert c.ledger.role("task").cache_hits == 1 and c.ledger.role("task").requests == 1


def test_cache_key_covers_params_and_sample(loopback, tmp_path):
    c = client(loopback.url, ResponseCache(tmp_path / "c.sqlite"))
    variants = [{}, {"temperature": 0.7}, {"max_tokens": 7}, {"seed": 3}, {"sample": 1}]
    for kw in variants:
        run_sync(c.chat(MSG, **kw))
    assert len(loopback.requests) == len(variants)
    for kw in variants:  # every variant is now cached under its own key
        assert run_sync(c.chat(MSG, **kw)).cached
    assert len(loopback.requests) == len(variants)


def test_cache_survives_reopen_and_modes(loopback, tmp_path):
    path = tmp_path / "c.sqlite"
    run_sync(client(loopback.url, ResponseCache(path)).chat(MSG))
    assert run_sync(client(loopback.url, ResponseCache(path, "read-only")).chat(MSG)).cached
    ro = client(loopback.url, ResponseCache(path, "read-only"))
    run_sync(ro.chat(MSG, sample=5))
    assert not run_sync(ro.chat(MSG, sample=5)).cached  # read-only never writes
    off = client(loopback.url, ResponseCache(path, "off"))
    assert not run_sync(off.chat(MSG)).cached
    assert len(loopback.requests) == 4  # first write, two read-only misses, one with the cache off


@pytest.mark.parametrize("fault", [
    Fault(status=429, retry_after=0.01), Fault(status=500), Fault(status=503), Fault(delay_s=3.0),
    Fault(malformed=True), Fault(drop=True),
], ids=["429", "500", "503", "timeout", "malformed", "dropped"])
def test_retries_recover_from_transient_faults(loopback, fault):
    loopback.inject(fault, times=2)
    c = client(loopback.url, max_retries=2)
    res = run_sync(c.chat(MSG))
    assert res.text == "echo: what is two plus two"
    assert len(loopback.requests) == 3  # two faults, then success
    assert c.ledger.role("task").retries == 2 and c.ledger.role("task").requests == 1


def test_retries_give_up_after_configured_attempts(loopback):
    loopback.inject(Fault(status=500), times=10)
    c = client(loopback.url, max_retries=3)
    with pytest.raises(LLMError, match="after 4 attempts"):
        run_sync(c.chat(MSG))
    assert len(loopback.requests) == 4


def test_retry_after_header_is_honoured(loopback):
    import time

    loopback.inject(Fault(status=429, retry_after=0.3))
    c = client(loopback.url, max_retries=1, backoff_max_s=1.0)
    t0 = time.monotonic()
    run_sync(c.chat(MSG))
    assert time.monotonic() - t0 >= 0.3


@pytest.mark.parametrize("status,match", [(401, "refused the API key"), (404, "does not serve model"),
                                          (400, "rejected the request")])
def test_client_errors_fail_at_once(loopback, status, match):
    loopback.inject(Fault(status=status), times=5)
    c = client(loopback.url, max_retries=4)
    with pytest.raises(LLMError, match=match):
        run_sync(c.chat(MSG))
    assert len(loopback.requests) == 1


def test_concurrency_never_exceeds_limit():
    with LoopbackServer(latency_s=0.05) as srv:
        c = client(srv.url, max_concurrency=3)

        async def many():
            return await asyncio.gather(*(c.chat(MSG, sample=i) for i in range(20)))

        assert len(run_sync(many())) == 20
        assert srv.max_in_flight == 3 and c.max_in_flight == 3


def test_tokens_and_dollars_add_up(loopback):
    c = client(loopback.url, price_input_per_m=2.0, price_output_per_m=10.0)

    async def many():
        return await asyncio.gather(*(c.chat(MSG, sample=i) for i in range(7)))

    results = run_sync(many())
    prompt = " ".join(m["content"] for m in MSG)
    pt, ct = count_tokens(prompt), count_tokens("echo: what is two plus two")
    u = c.ledger.role("task")
    assert (u.requests, u.prompt_tokens, u.completion_tokens) == (7, 7 * pt, 7 * ct)
    assert u.usd == pytest.approx(7 * (pt * 2.0 + ct * 10.0) / 1e6)
    assert sum(r.usd for r in results) == pytest.approx(u.usd)


def test_budget_stops_work_and_keeps_results(loopback, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    c = client(loopback.url, cache, ledger=Ledger(Budget(max_requests=4)), max_concurrency=2)

    async def many():
        return await asyncio.gather(*(c.chat(MSG, sample=i) for i in range(10)), return_exceptions=True)

    out = run_sync(many())
    done = [r for r in out if not isinstance(r, BaseException)]
    assert len(done) == 4 and all(isinstance(r, BudgetExceeded) for r in out if r not in done)
    assert len(loopback.requests) == 4 and len(cache) == 4
    # Finished work is kept: cached answers stay free even past the cap.
    assert all(run_sync(c.chat(MSG, sample=i)).cached for i in range(10) if not isinstance(out[i], Exception))


def test_token_budget():
    with LoopbackServer() as srv:
        c = client(srv.url, ledger=Ledger(Budget(max_tokens=20)))
        run_sync(c.chat(MSG))  # 11 tokens
        run_sync(c.chat(MSG, sample=1))  # 22 tokens: now past the cap
        with pytest.raises(BudgetExceeded, match="tokens"):
            run_sync(c.chat(MSG, sample=2))


def test_replicas_share_load_and_skip_dead_ones():
    with LoopbackServer(latency_s=0.02) as a, LoopbackServer(latency_s=0.02) as b:
        c = client([a.url, b.url], max_concurrency=2)

        async def many(n: int, offset: int = 0):
            return await asyncio.gather(*(c.chat(MSG, sample=offset + i) for i in range(n)))

        run_sync(many(20))
        assert len(a.requests) >= 5 and len(b.requests) >= 5
        dead = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    with LoopbackServer() as live:
        c = client([dead, live.url], max_retries=3)
        results = run_sync(many_for(c, 10))
        assert len(results) == 10 and len(live.requests) == 10


def many_for(c: LLMClient, n: int):
    async def go():
        return await asyncio.gather(*(c.chat(MSG, sample=i) for i in range(n)))

    return go()
