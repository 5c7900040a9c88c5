"""A synthetic store of the paper's full grid (9 methods x 5 benchmarks x seeds), written through
harness.tracking.Tracker the way the runner writes it: a simulated paper-protocol experiment, shared stages
(SePO's p~* per key, MetaSPO's meta-training), cells with family/ablation tags, budget stops (some before the
schedule ended), one failed cell, truncated replies and reply caps. `Grid` keeps what was written so tests
can compute the expected report independently. Used by tests/test_report_scale.py and perf/report_scale.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from harness import schema as S
from harness.evaluator import Record
from harness.optimizer import Candidate
from harness.tracking import Tracker

# method -> (family, ablation_of, accuracy of the simulated world)
METHODS = {
    "manual-cot": (S.FAMILY_BASELINE, "", 0.50), "textgrad": (S.FAMILY_BASELINE, "", 0.55),
    "metaspo": (S.FAMILY_BASELINE, "", 0.52), "espl": (S.FAMILY_PEER, "", 0.63), "gepa": (S.FAMILY_PEER, "", 0.64),
    "sepo-specialist": (S.FAMILY_SEPO, "", 0.62), "sepo-generalist": (S.FAMILY_SEPO, "", 0.68),
    "sepo-no-self-improve": (S.FAMILY_SEPO, "sepo-generalist", 0.65),
    "sepo-no-archive": (S.FAMILY_SEPO, "sepo-generalist", 0.60),
}
BENCHMARKS = {"aime": 2048, "arc": 1024, "gpqa": 1024, "mbpp": 512, "sudoku": 512}  # name -> reply cap
FAILED = ("gepa", "arc", 0)  # (method, benchmark, seed) that raises
FAIL_REASON = "RuntimeError: simulated endpoint closed the connection"
STAGE_STOPPED = "max_evaluations 1200 reached"  # the no-archive pre-training stops on its budget
STAGE_USD = {"generalist": 37.0, "no-archive": 30.0, "metaspo": 12.0, "specialist": 6.0}


def stopped_before_schedule(method: str, bench: str, seed: int) -> bool:
    """MetaSPO is starved on Sudoku; no-archive on AIME seed 0."""
    return (method == "metaspo" and bench == "sudoku") or (method, bench, seed) == ("sepo-no-archive", "aime", 0)


def stopped_at_end(method: str, bench: str, seed: int) -> bool:
    """Budget stops after the schedule's last step (not counted as cut short)."""
    return method == "espl" and bench == "mbpp"


def truncated(method: str, bench: str, j: int) -> bool:
    """Replies cut at the cap: manual-cot's long chains on AIME and ARC, a few elsewhere."""
    if method == "manual-cot" and bench in ("aime", "arc"):
        return j % 4 == 0
    return bench == "aime" and j % 10 == 3


@dataclass
class Grid:
    experiment: str
    seeds: list[int]
    n_test: int
    stage_keys: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (method, bench) -> keys
    stage_usd: dict[str, float] = field(default_factory=dict)  # key -> usd
    cells: int = 0


def stages_for(method: str, bench: str) -> list[tuple[str, str, float]]:
    """(key, kind, usd) of the shared stages a cell uses: one generalist p~* for every target (Sudoku held out
    of its pool), one per no-archive, one Specialist p~* per target, one MetaSPO meta-training."""
    if method == "sepo-generalist":
        return [("p-star/generalist", S.STAGE_PRETRAIN, STAGE_USD["generalist"])]
    if method == "sepo-no-archive":
        return [("p-star/no-archive", S.STAGE_PRETRAIN, STAGE_USD["no-archive"])]
    if method == "sepo-specialist":
        return [(f"p-star/specialist/{bench}", S.STAGE_PRETRAIN, STAGE_USD["specialist"])]
    if method == "metaspo":
        return [("metaspo/meta-train", S.STAGE_META_TRAIN, STAGE_USD["metaspo"])]
    return []


def write_grid(uri: str, experiment: str = "paper-rehearsal", *, seeds: int = 5, n_test: int = 20,
               n_candidates: int = 2) -> Grid:
    """Write the grid into the store at uri; returns what was written."""
    rng = random.Random(11)
    t = Tracker(uri, experiment)
    t.check_reachable()
    config = {"name": "paper", "simulated": True, "seeds": list(range(seeds)), "held_out": ["sudoku"],
              "benchmarks": [{"name": b} for b in BENCHMARKS], "methods": {m: {} for m in METHODS},
              "budget_per_cell": {"max_evaluations": 400},
              "llm": {"task": {"model": "deepseek-chat", "base_url": "http://127.0.0.1:1/v1"},
                      "prompt": {"model": "gemini-3.1-pro-preview", "base_url": "http://127.0.0.1:1/v1"}}}
    t.log_experiment(config, "name: paper\nsimulated: true\n", {"commit": "cafe123", "dirty": "false"},
                     paper_protocol=True, protocol=S.PROTOCOL_PAPER)
    grid = Grid(experiment, list(range(seeds)), n_test)
    for m in METHODS:  # stages first, once per key, before the cells that use them
        for b in BENCHMARKS:
            for key, kind, usd in stages_for(m, b):
                if key in grid.stage_usd:
                    continue
                targets = [b] if "specialist" in key else list(BENCHMARKS)
                st = t.start_stage(key, kind, methods=[m], targets=targets, params={"pool": ["aime", "gpqa"]},
                                   simulated=True)
                st.finish(metrics={S.REQUESTS: 900, S.TOKENS: 4e6, S.USD: usd, S.EVALUATIONS: 1200,
                                   S.WALL_S: 600}, texts={"prompt_agent": f"p~* of {key}"},
                          stopped=STAGE_STOPPED if key == "p-star/no-archive" else None)
                grid.stage_usd[key] = usd
    for seed in grid.seeds:
        for m, (family, ablation_of, acc) in METHODS.items():
            for b, cap in BENCHMARKS.items():
                write_cell(t, grid, rng, m, b, seed, family, ablation_of, acc, cap, n_candidates)
    return grid


def write_cell(t: Tracker, grid: Grid, rng: random.Random, m: str, b: str, seed: int, family: str,
               ablation_of: str, acc: float, cap: int, n_candidates: int) -> None:
    run = t.start_cell(f"{m}/{b}/seed{seed}", method=m, benchmark=b, seed=seed,
                       params={"settings": {}, "budget_per_cell": {"max_evaluations": 400}},
                       tags={S.BASE_METHOD: m, S.HELD_OUT: S.bool_tag(b == "sudoku"), S.LOCAL_MODELS: "false"},
                       family=family, ablation_of=ablation_of, simulated=True)
    grid.cells += 1
    for i in range(n_candidates):
        run.log_candidate(Candidate(f"{m}-{b}-{seed}-{i}", f"prompt {i}", None if i == 0 else f"{m}-{b}-{seed}-0",
                                    min(i, 1), train_score=round(rng.random(), 2), meta={"stage": "finetune"}))
    if (m, b, seed) == FAILED:
        run.fail(FAIL_REASON)
        return
    records = [Record(f"{b}-{seed}-{j}", "", float(ok), ok, "", 1, 200, 800, False, truncated(m, b, j))
               for j in range(grid.n_test) for ok in [rng.random() < acc]]
    initial = [Record(r.example_id, "", 0.0, False, "", 1, 200, 900, False, truncated("manual-cot", b, j))
               for j, r in enumerate(records)]
    keys = [k for k, _, _ in stages_for(m, b)]
    grid.stage_keys[(m, b)] = keys
    early, late = stopped_before_schedule(m, b, seed), stopped_at_end(m, b, seed)
    n_req = 50 + 10 * len(m)
    run.finish(metrics={S.TEST_ACCURACY: sum(r.score for r in records) / len(records), S.REQUESTS: n_req,
                        S.TOKENS: 1000.0 * n_req, S.USD: 0.01 * n_req, S.EVALUATIONS: 400 if early else 352,
                        S.WALL_S: 30.0, S.N_TEST: len(records), S.N_CANDIDATES: n_candidates},
               test_records=records, initial_records=initial, best_prompt="prompt 1",
               stopped="max_evaluations 400 reached" if early or late else None, schedule_complete=not early,
               max_tokens=cap, stage_keys=keys)
