"""Embedded-model throughput: llama.cpp's native llama-server (parallel slots) vs llama-cpp-python's server.

The same fixed prompts (the first N MBPP test problems under a fixed system prompt, greedy, a fixed
reply cap) go through the harness's LLM layer (LLMClient, cache off) to (a) the Python server at
concurrency 1 and (b) the native server at its default slots with as many requests in flight, in one
run. Prints generated tokens/s of each, the load average beside every figure, how many greedy
replies are identical, and

    ratio native/python: X        (target >= 1.8 on a quiet 2-core machine)

Other modes (how the defaults in harness/llm/local.py and session.py were chosen):
    --slots 1,2,4,8   the native server alone at each slot count (concurrency = slots)
    --two-models      0.5B task + 1.5B prompt servers both loaded: threads per server, turn-taking
                      and simultaneous load

    .venv/bin/python perf/local_throughput.py [--model qwen2.5-coder-0.5b] [--n 16] [--max-tokens 160]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.aio import run_sync  # noqa: E402
from harness.benchmarks import get_benchmark  # noqa: E402
from harness.config import EndpointConfig  # noqa: E402
from harness.llm.client import LLMClient  # noqa: E402
from harness.llm.local import DEFAULT_PARALLEL, LlamaServer  # noqa: E402

SYSTEM = ("You are an expert Python programmer. Write the requested function in one ```python code block, "
          "with no explanation.")


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def prompts(n: int) -> list[list[dict[str, str]]]:
    data_dir = os.environ.get("SEPO_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    bench = get_benchmark("mbpp", data_dir)
    return [bench.to_messages(SYSTEM, ex) for ex in bench.load("test", 0)[:n]]


async def _burst(c: LLMClient, msgs: list[list[dict[str, str]]], max_tokens: int) -> tuple[float, int, list[str]]:
    t0 = time.perf_counter()
    res = await asyncio.gather(*(c.chat(m, max_tokens=max_tokens) for m in msgs))
    return time.perf_counter() - t0, sum(r.completion_tokens for r in res), [r.text for r in res]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to read throughput per CPU-second under shared load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(srv: LlamaServer, msgs: list[list[dict[str, str]]], max_tokens: int, conc: int) -> tuple[float, list[str]]:
    """Generated tokens/s over all prompts with `conc` in flight, after one warm-up request. Also prints
    tokens per server CPU-second: on a machine shared with other work it varies less than the wall rate."""
    ep = EndpointConfig(max_tokens=max_tokens, temperature=0.0, max_concurrency=conc, timeout_s=3600)
    c = LLMClient(ep, role="task", base_urls=[srv.base_url], model=srv.name)
    try:
        warm = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Write a function add(a, b)."}]
        run_sync(c.chat(warm, max_tokens=16))
        assert srv.proc is not None
        cpu0 = cpu_seconds(srv.proc.pid)
        wall, tokens, texts = run_sync(_burst(c, msgs, max_tokens))
        cpu = cpu_seconds(srv.proc.pid) - cpu0
    finally:
        run_sync(c.aclose())
    print(f"  [{srv.backend}, {conc} in flight: {tokens} tokens in {wall:.1f} s wall, {cpu:.1f} s server CPU "
          f"= {tokens / cpu:.1f} tokens per CPU-second]", flush=True)
    return tokens / wall, texts


def compare(args: argparse.Namespace, msgs: list[list[dict[str, str]]]) -> None:
    """Alternating rounds (python, native, python, ...) so a change of machine load hits both alike."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        sys.exit("perf/local_throughput.py: the comparison needs llama-cpp-python's server, an optional extra that "
                 "is not installed; run `make install-python-server` (make bench does), or --slots for the native "
                 "server alone.")
    slots = DEFAULT_PARALLEL[args.model]
    print(f"{args.model}: {len(msgs)} MBPP prompts, greedy, max_tokens {args.max_tokens}; {os.cpu_count()} cores",
          flush=True)
    py_rates, nat_rates = [], []
    for r in range(args.rounds):
        with LlamaServer(args.model, backend="python") as srv:
            before = load()
            py, py_texts = measure(srv, msgs, args.max_tokens, 1)
        py_rates.append(py)
        print(f"python server   concurrency 1: {py:6.1f} generated tok/s   ({before} -> {load()})", flush=True)
        with LlamaServer(args.model, parallel=slots) as srv:
            before = load()
            nat, nat_texts = measure(srv, msgs, args.max_tokens, slots)
            print(f"native server   concurrency {slots}: {nat:6.1f} generated tok/s   ({before} -> {load()})",
                  flush=True)
            if args.native_c1 and r == 0:
                before = load()
                nat1, nat1_texts = measure(srv, msgs, args.max_tokens, 1)
                print(f"native server   concurrency 1: {nat1:6.1f} generated tok/s   ({before} -> {load()})",
                      flush=True)
        nat_rates.append(nat)
        if r == 0:
            same = sum(a == b for a, b in zip(py_texts, nat_texts, strict=True))
            print(f"identical greedy replies, python vs native with {slots} slots busy: {same}/{len(msgs)}")
            if args.native_c1:
                same1 = sum(a == b for a, b in zip(py_texts, nat1_texts, strict=True))
                print(f"identical greedy replies, python vs native at concurrency 1: {same1}/{len(msgs)}")
    if args.rounds > 1:
        print(f"per round ratios: {' '.join(f'{n / p:.2f}' for n, p in zip(nat_rates, py_rates, strict=True))}")
    print(f"ratio native/python: {sum(nat_rates) / sum(py_rates):.2f}")


def sweep(args: argparse.Namespace, msgs: list[list[dict[str, str]]]) -> None:
    for n in (int(s) for s in args.slots.split(",")):
        with LlamaServer(args.model, parallel=n) as srv:
            before = load()
            rate, _ = measure(srv, msgs, args.max_tokens, n)
        print(f"{args.model} slots {n:2d} concurrency {n:2d}: {rate:6.1f} generated tok/s   ({before} -> {load()})",
              flush=True)


def two_models(args: argparse.Namespace, msgs: list[list[dict[str, str]]]) -> None:
    """Task (0.5B) and prompt (1.5B) servers both loaded, with `t` threads each."""
    cores = os.cpu_count() or 2
    for t in sorted({max(1, cores // 2), cores}):
        with LlamaServer("qwen2.5-coder-0.5b", n_threads=t) as a, LlamaServer("qwen2.5-coder-1.5b", n_threads=t) as b:
            pa, pb = DEFAULT_PARALLEL[a.name], DEFAULT_PARALLEL[b.name]
            before = load()
            ra, _ = measure(a, msgs, args.max_tokens, pa)  # turn-taking: one model at a time
            rb, _ = measure(b, msgs[: len(msgs) // 2], args.max_tokens, pb)

            with ThreadPoolExecutor(2) as pool:  # both at once
                fa = pool.submit(measure, a, msgs, args.max_tokens, pa)
                fb = pool.submit(measure, b, msgs[: len(msgs) // 2], args.max_tokens, pb)
                (sa, _), (sb, _) = fa.result(), fb.result()
        print(f"threads {t} per server: alone 0.5B {ra:5.1f}, 1.5B {rb:5.1f} tok/s; at the same time 0.5B "
              f"{sa:5.1f} + 1.5B {sb:5.1f} = {sa + sb:5.1f} tok/s   ({before} -> {load()})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--n", type=int, default=16, help="prompts (MBPP test problems)")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--rounds", type=int, default=1, help="alternating python/native rounds")
    ap.add_argument("--native-c1", action="store_true", help="also the native server at concurrency 1")
    ap.add_argument("--slots", help="comma-separated slot counts: sweep the native server only")
    ap.add_argument("--two-models", action="store_true", help="thread sharing with both default models loaded")
    args = ap.parse_args()
    msgs = prompts(args.n)
    if args.slots:
        sweep(args, msgs)
    elif args.two_models:
        two_models(args, msgs)
    else:
        compare(args, msgs)


if __name__ == "__main__":
    main()
