"""Which tasks SePO pre-trains on (the paper's pools), resolved from names before any benchmark is opened.

- Generalist: a multi-task pool named in the settings (`pretrain_pool`); by default (`mixture`, the paper's)
  one mixture of every built-in benchmark except Sudoku (the paper keeps it out of every pre-training
  mixture), `custom` (it needs a file) and the experiment's held-out benchmarks: the target's own train split
  is in it, so one p~* serves every target; `per-target` leaves the target out too (one pool per target).
  `pool_selection: greedy` instead picks
  `pool_size` tasks from those candidates by maximal marginal relevance: relevance to the target minus
  `pool_diversity` times the similarity to the tasks already chosen (the paper chooses its pool "greedily
  for relevance and diversity" without publishing the measure; ours is the word overlap (Jaccard) of the
  benchmarks' task descriptions, so the choice is deterministic and needs no model).
- Specialist: one related task, named in `pretrain_pool` or taken from RELATED (our choice; the paper
  does not publish its pairs): the two reasoning benchmarks pair with each other, the grid and program
  tasks with each other, and Sudoku (held out of pre-training) is nobody's default partner.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from harness.config import ConfigError

DEFAULT_EXCLUDED = ("sudoku", "custom")
RELATED = {"aime": "gpqa", "gpqa": "aime", "arc": "mbpp", "mbpp": "arc", "sudoku": "arc"}
_STOP_WORDS = ("a an and are as at be by each else end every for from has in is it its of on one or the then there "
               "this to which with only must should model")
_STOP = frozenset(_STOP_WORDS.split())


def canonical(name: str) -> str:
    from harness.registry import canonical_benchmark

    return canonical_benchmark(name)


def _registered() -> dict[str, type]:
    from harness.benchmarks import registry

    return registry()


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z0-9\-]+", text.lower()) if w not in _STOP}


def similarity(a: str, b: str) -> float:
    """Jaccard overlap of two benchmarks' description words (0 for unknown names)."""
    known = _registered()
    wa = _words(getattr(known.get(a), "description", "") or "")
    wb = _words(getattr(known.get(b), "description", "") or "")
    return len(wa & wb) / len(wa | wb) if wa | wb else 0.0


def greedy_pool(target: str, candidates: Sequence[str], size: int, diversity: float) -> list[str]:
    """Maximal marginal relevance: (1 - diversity) * sim(c, target) - diversity * max sim(c, chosen)."""
    chosen: list[str] = []
    rest = sorted(candidates)
    while rest and len(chosen) < size:
        def gain(c: str) -> float:
            red = max((similarity(c, x) for x in chosen), default=0.0)
            return (1 - diversity) * similarity(c, target) - diversity * red
        best = max(rest, key=lambda c: (gain(c), -rest.index(c)))
        chosen.append(best)
        rest.remove(best)
    return chosen


def resolve_pool(variant: str, target: str, names: Sequence[str], *, held_out: Sequence[str] = (),
                 selection: str = "all", size: int = 3, diversity: float = 0.5,
                 allow_target: bool = False, registered_only: bool = True, mixture: bool = False) -> list[str]:
    """The pool's benchmark names (canonical, in order); ConfigError when it breaks a rule.
    `registered_only=False` accepts names outside the registry (tasks handed over ready-made); `mixture` keeps
    the target in the default Generalist pool (and allows it there)."""
    target = canonical(target)
    held = {canonical(h) for h in held_out}
    explicit = [canonical(n) for n in names]
    known = _registered()
    for n in explicit:
        if registered_only and n not in known:
            raise ConfigError(f"pretrain_pool names {n!r}, which is not a benchmark; known: "
                              f"{', '.join(sorted(known))}.")
    if variant == "specialist":
        if len(explicit) > 1:
            raise ConfigError(f"SePO-Specialist pre-trains on one related task, but pretrain_pool names "
                              f"{len(explicit)}: give it one name.")
        pool = explicit or ([RELATED[target]] if target in RELATED else [])
        if not pool:
            raise ConfigError(f"SePO-Specialist has no default related task for {target!r}: set pretrain_pool "
                              "to one benchmark name.")
    else:
        candidates = explicit or sorted(n for n in known if n not in DEFAULT_EXCLUDED and n not in held
                                        and (mixture or n != target))
        allow_target = allow_target or (mixture and not explicit)
        pool = greedy_pool(target, candidates, size, diversity) if selection == "greedy" else candidates
    pool = list(dict.fromkeys(pool))
    bad = [n for n in pool if n in held]
    if bad:
        raise ConfigError(f"the pre-training pool contains {bad[0]!r}, which the experiment holds out of every "
                          "pool (held_out); remove it from pretrain_pool.")
    if target in pool and not allow_target:
        raise ConfigError(f"the pre-training pool contains the target {target!r}, so it would not be held out "
                          "of pre-training; remove it from pretrain_pool or set allow_target_in_pool: true.")
    if not pool:
        raise ConfigError(f"SePO's pre-training pool for {target!r} is empty; name its tasks in pretrain_pool.")
    return pool
