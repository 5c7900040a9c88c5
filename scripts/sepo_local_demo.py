"""A real SePO run on the embedded local models: 4x4 Sudoku or MBPP, task agent Qwen2.5-Coder-0.5B, prompt
agent Qwen2.5-Coder-1.5B. Prints the initial and the best prompt with their train-minibatch and test scores.

    .venv/bin/python scripts/sepo_local_demo.py            # Sudoku 4x4, fine-tuning only (p~ hand-written)
    .venv/bin/python scripts/sepo_local_demo.py --benchmark mbpp   # MBPP in the Docker sandbox
    .venv/bin/python scripts/sepo_local_demo.py --pretrain # SePO-Specialist: first evolve p~ on the train split

A few minutes on 2 cores (the cache makes a rerun nearly free). The numbers are from a tiny minibatch and
test set: they show the machinery working, not a measured effect.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.benchmarks import get_benchmark
from harness.cell import run_cell
from harness.config import CacheConfig, EndpointConfig, LLMConfig
from harness.llm.session import open_llms
from harness.optimizer import Callbacks
from sepo import SePO

INITIAL = {"sudoku": "Solve the puzzle.", "mbpp": "Write the Python function."}  # deliberately plain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--children", type=int, default=2)
    ap.add_argument("--minibatch", type=int, default=6)
    ap.add_argument("--n-test", type=int, default=6)
    ap.add_argument("--blanks", type=int, default=6)
    ap.add_argument("--benchmark", choices=("sudoku", "mbpp"), default="sudoku")
    ap.add_argument("--sandbox", choices=("docker", "local"), default="docker",
                    help="MBPP only; 'local' runs generated code without isolation")
    ap.add_argument("--pretrain", action="store_true", help="SePO-Specialist pre-training on the train split")
    ap.add_argument("--out", default="runs/sepo-demo", help="checkpoints, p~* and the LLM cache go here")
    args = ap.parse_args()
    out = Path(args.out)

    cfg = LLMConfig(task=EndpointConfig(local_model="qwen2.5-coder-0.5b"),
                    prompt=EndpointConfig(local_model="qwen2.5-coder-1.5b", temperature=0.7, max_tokens=400),
                    cache=CacheConfig(path=str(out / "llm-cache.sqlite")))
    sizes = {"n_train": args.minibatch, "n_val": 3, "n_test": args.n_test}
    if args.benchmark == "mbpp":
        from sandboxes import make_sandbox

        sb = make_sandbox(args.sandbox, **({"allow": True} if args.sandbox == "local" else {}))
        bench = get_benchmark("mbpp", sandbox=sb, **sizes)
    else:
        bench = get_benchmark("sudoku", size=4, blanks=args.blanks, **sizes)
    t0 = time.monotonic()
    with open_llms(cfg) as llms:
        sepo = SePO(self_improve=args.pretrain, variant="specialist", generations=args.generations,
                    children=args.children, minibatch=args.minibatch, pretrain_generations=1,
                    pretrain_children=1, agent_max_tokens=400, val_top_n=1)

        def show(c) -> None:
            verdict = "admitted" if c.meta["admitted"] else "rejected"
            print(f"  candidate {c.id} <- {c.parent_id}: train {c.train_score:.3f} ({verdict})", flush=True)

        cell = run_cell(sepo, bench, args.seed, llms=llms, final=partial(bench.load, "test", args.seed),
                        initial_prompt=INITIAL[args.benchmark], checkpoint_dir=out / "ck",
                        callbacks=Callbacks(on_candidate=show), show_progress=True)
        res, best_test, init_test = cell.result, cell.test_accuracy, cell.initial.accuracy
        root = res.candidates[0]
        print("\n=== initial prompt ===\n" + root.prompt)
        print(f"train {root.train_score:.3f}  val {root.val_score}  test {init_test:.3f}")
        print(f"\n=== best prompt ({res.best.id}, parent {res.best.parent_id}) ===\n" + res.best.prompt)
        print(f"train {res.best.train_score:.3f}  val {res.best.val_score}  test {best_test:.3f}")
        if args.pretrain:
            print("\n=== evolved prompt-agent prompt p~* ===\n" + res.extra["prompt_agent"])
        print(f"\nLLM usage: {llms.ledger.summary()['total']}")
        print(f"{time.monotonic() - t0:.0f} s; checkpoints and cache under {out}")
    bench.close()


if __name__ == "__main__":
    main()
