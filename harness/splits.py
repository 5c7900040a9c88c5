"""Deterministic train/val/test splits per benchmark and seed. Optimizers only ever see train and val.

Choices (sizes in examples unless noted; options n_train / n_val / n_test override them):

- MBPP full (974): the hub's split by task_id: train 601-974 (374), val 511-600 (90), test 11-510 (500);
  1-10 (the few-shot prompt ids) unused.
- MBPP sanitized (427): the same task_id ranges: train 120, val 43, test 257 (7 prompt ids unused).
- AIME 2025 (30): seeded shuffle, train 1/3, val 1/6, test the rest: 10 / 5 / 15. Small on purpose: the
  optimizer sees 15 problems, the held-out test keeps half of the contest.
- GPQA Diamond (198): seeded shuffle, train 0.2, val 0.1, test the rest: 40 / 20 / 138.
- ARC-AGI-1: train and val from a seeded shuffle of the 400 training tasks (0.8 / 0.2: 320 / 80 tasks);
  test is the 400 evaluation tasks. A task with several test inputs gives one example per input, so the
  example counts are a bit larger (335 / 81 / 419 for seed 0); n_* count tasks.
- Sudoku: puzzles generated from seed streams that are disjoint per split (test first, then val, then
  train; a puzzle already used by an earlier split is skipped): 100 / 50 / 100.
- custom JSONL: seeded shuffle, train 0.4, val 0.2, test the rest.

A seeded shuffle sorts the keys first (file order does not matter), shuffles them with
random.Random(f"{salt}:{seed}"), then takes train from the front, val next, and test from the back.
Because test is taken from the back with a size fixed by the fractions, changing n_train or n_val never
changes the test set, and a smaller n_test gives a subset of the default test set. With fixed id ranges
(MBPP) an n_* smaller than the range takes a seeded sample of that range, returned in id order.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

from harness.config import ConfigError

K = TypeVar("K", bound=Hashable)
SPLITS = ("train", "val", "test")

MBPP_RANGES: dict[str, tuple[int, int]] = {
    "prompt": (1, 10),
    "test": (11, 510),
    "val": (511, 600),
    "train": (601, 974),
}
FRACTIONS: dict[str, tuple[float, float]] = {  # (train, val); test is the rest
    "aime": (1 / 3, 1 / 6),
    "gpqa": (0.2, 0.1),
    "arc": (0.8, 0.2),  # of the 400 training tasks; test is the evaluation set
    "custom": (0.4, 0.2),
}
SUDOKU_SIZES: dict[str, int] = {"train": 100, "val": 50, "test": 100}


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")


def requested(options: dict[str, Any], split: str) -> int | None:
    """The n_<split> option, validated as a positive int, or None."""
    n = options.get(f"n_{split}")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n <= 0):
        raise ConfigError(f"n_{split} must be a positive integer, got {n!r}.")
    return n


def shuffled_split(
    keys: Sequence[K],
    split: str,
    seed: int,
    fractions: tuple[float, float],
    salt: str,
    options: dict[str, Any] | None = None,
    with_test: bool = True,
) -> list[K]:
    """The keys of one split: seeded shuffle, train from the front, val next, test from the back.

    With with_test=False the keys are a train+val pool (test comes from elsewhere) and the fractions
    are renormalised to fill it.
    """
    check_split(split)
    options = options or {}
    order = sorted(keys)  # type: ignore[type-var]
    random.Random(f"{salt}:{seed}").shuffle(order)
    n = len(order)
    f_train, f_val = fractions
    if not with_test:
        f_train, f_val = f_train / (f_train + f_val), f_val / (f_train + f_val)
    d_train = round(f_train * n)
    d_val = round(f_val * n) if with_test else n - d_train
    d_test = n - d_train - d_val if with_test else 0
    n_train = requested(options, "train") or d_train
    n_val = requested(options, "val") or d_val
    n_test = (requested(options, "test") or d_test) if with_test else 0
    if n_train + n_val + n_test > n:
        raise ConfigError(
            f"{salt}: n_train={n_train}, n_val={n_val}"
            + (f", n_test={n_test}" if with_test else "")
            + f" need {n_train + n_val + n_test} items but only {n} exist; ask for fewer."
        )
    if split == "train":
        return order[:n_train]
    if split == "val":
        return order[n_train : n_train + n_val]
    return order[n - n_test :] if n_test else []


def subsample(keys: Sequence[K], n: int | None, seed: int, salt: str) -> list[K]:
    """All keys in sorted order, or a seeded sample of n of them (still sorted) when n is smaller."""
    order = sorted(keys)  # type: ignore[type-var]
    if n is None or n >= len(order):
        return order
    return sorted(random.Random(f"{salt}:{seed}").sample(order, n))  # type: ignore[type-var]


def id_range_split(
    ids: Sequence[int], split: str, seed: int, salt: str, options: dict[str, Any] | None = None
) -> list[int]:
    """MBPP-style split: the ids inside the split's fixed range, optionally subsampled to n_<split>."""
    check_split(split)
    lo, hi = MBPP_RANGES[split]
    inside = [i for i in ids if lo <= i <= hi]
    return subsample(inside, requested(options or {}, split), seed, f"{salt}:{split}")
