"""LLM-layer throughput against the loopback server with a fixed reply latency.

Prints achieved requests/s at concurrency 1, 8 and 32 as a ratio of the ideal
(concurrency / latency), and the time to re-run the same requests from the cache as a
ratio of the first run. Targets: >= 0.85 of ideal at 32; cache re-run < 0.05.
Also: throughput with two replicas of an endpoint vs one (target ~2x).

    .venv/bin/python perf/llm_throughput.py [--latency 0.1] [--requests 256]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.aio import run_sync  # noqa: E402
from harness.config import EndpointConfig  # noqa: E402
from harness.llm.cache import ResponseCache  # noqa: E402
from harness.llm.client import LLMClient  # noqa: E402
from tests.loopback import serve_in_subprocess  # noqa: E402


async def burst(c: LLMClient, n: int, tag: str) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(c.chat([{"role": "user", "content": f"{tag} question {i}"}]) for i in range(n)))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--requests", type=int, default=256, help="requests per level (at least 32x concurrency)")
    args = ap.parse_args()
    server, url = serve_in_subprocess(args.latency)  # its own process: no GIL shared with the client
    with tempfile.TemporaryDirectory() as tmp:
        print(f"loopback latency {args.latency * 1000:.0f} ms")
        print(f"{'concurrency':>11} {'requests':>8} {'req/s':>8} {'ideal':>8} {'ratio':>6}")
        for conc in (1, 8, 32):
            n = max(conc * 32, 20 if conc == 1 else args.requests)
            cache = ResponseCache(Path(tmp) / f"c{conc}.sqlite")
            c = LLMClient(EndpointConfig(base_url=url, model="m", max_concurrency=conc), role="task",
                          cache=cache)
            run_sync(burst(c, conc, f"warm-up{conc}"))  # open the connections: steady state is measured
            first = run_sync(burst(c, n, f"c{conc}"))
            again = run_sync(burst(c, n, f"c{conc}"))
            rate, ideal = n / first, conc / args.latency
            print(f"{conc:>11} {n:>8} {rate:>8.1f} {ideal:>8.1f} {rate / ideal:>6.2f}"
                  f"   cache re-run {again:.3f} s = {again / first:.4f} of first run")
            run_sync(c.aclose())
        # Replicas: the same per-replica concurrency over two servers should double throughput.
        server2, url2 = serve_in_subprocess(args.latency)
        rates = []
        for urls in ([url], [url, url2]):
            c = LLMClient(EndpointConfig(base_url=urls, model="m", max_concurrency=8), role="task")
            run_sync(burst(c, 16, f"warm-up-r{len(urls)}"))
            rates.append(512 / run_sync(burst(c, 512, f"r{len(urls)}")))
            run_sync(c.aclose())
        print(f"replicas: 1 x conc 8 -> {rates[0]:.1f} req/s; 2 x conc 8 -> {rates[1]:.1f} req/s "
              f"({rates[1] / rates[0]:.2f}x)")
        server2.terminate()
    server.terminate()


if __name__ == "__main__":
    main()
