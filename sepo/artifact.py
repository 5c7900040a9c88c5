"""p~* as an artifact of its own: produced once per key, stored with its provenance, checked on every load.

Key = (variant, pool tasks with their benchmark options, initial prompts and train example ids, the pool
splits' seed, the task and prompt models with their sampling, p~0, the pre-training settings). Cells that ask
for the same key share one p~*: the first pre-trains (checkpointed in the artifact's folder, so a budget stop
or a kill resumes there, in the same or a later cell), every later one loads it. A file lock keeps two
processes from pre-training the same key at once.

Layout: <store>/<variant>-<key hash>/{p_star.md, provenance.json, pretrain.json (checkpoint), .lock}.

Checks on load (and, before any request, on the pool about to be pre-trained on): the p~* text matches the
hash in its provenance; no pool task is one the experiment holds out; the target is not in the pool unless
the settings allow it (then the cell does not claim the target is held out); and no pool example is in the
target's test split under the cell's seed (RunContext.check_disjoint_from_test).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.files import write_atomic
from harness.llm.client import LLMClient
from harness.optimizer import OptimizationTask, RunContext
from sepo.pools import canonical

TEXT, PROVENANCE, CHECKPOINT = "p_star.md", "provenance.json", "pretrain.json"


def sha(obj: Any) -> str:
    data = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def llm_info(llm: LLMClient) -> dict[str, Any]:
    e = llm.endpoint
    return {"model": llm.model, "local_model": e.local_model, "temperature": e.temperature,
            "max_tokens": e.max_tokens}


def task_info(t: OptimizationTask, *, with_val: bool = False) -> dict[str, Any]:
    """What identifies a task's data and scoring: benchmark, options, example ids, initial prompt, model."""
    opts = {k: v for k, v in (t.benchmark.options or {}).items() if k != "sandbox"}
    ev = t.evaluator
    info = {"name": canonical(t.name), "benchmark": t.benchmark.name,
            "options": json.loads(json.dumps(opts, default=str)), "train_ids": sha([e.id for e in t.train]),
            "initial_prompt": sha(t.initial_prompt),
            "model": llm_info(ev.llm), "eval_max_tokens": ev.max_tokens, "eval_seed": ev.seed}
    if with_val:
        info["val_ids"] = sha([e.id for e in t.val])
    return info


def artifact_key(variant: str, pool: Sequence[OptimizationTask], pool_seed: int, prompt_llm: LLMClient,
                 p0: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {"variant": variant, "pool": [task_info(t) for t in pool], "pool_seed": pool_seed,
            "prompt_model": llm_info(prompt_llm), "p0": sha(p0), "settings": settings}


def provenance(key: dict[str, Any], pool: Sequence[OptimizationTask], **more: Any) -> dict[str, Any]:
    return {"key_hash": sha(key), "key": key, "variant": key["variant"], "pool": [canonical(t.name) for t in pool],
            "pool_seed": key["pool_seed"], "pool_examples": {canonical(t.name): [e.id for e in t.train] for t in pool},
            **more}


def check_provenance(prov: dict[str, Any], where: str, *, target: str, context: RunContext | None,
                     allow_target: bool, text: str | None = None) -> dict[str, Any]:
    """Raise ConfigError when this p~* may not serve `target`; else what the cell may claim about it."""
    if text is not None and prov.get("p_star_sha256") != sha(text):
        raise ConfigError(f"The p~* at {where} does not match the hash in its provenance (edited or copied "
                          "without it); delete it to pre-train again.")
    target = canonical(target)
    pool = [canonical(n) for n in prov.get("pool", [])]
    held = {canonical(h) for h in (context.held_out if context else ())}
    for n in pool:
        if n in held:
            what = "the target, which" if n == target else f"{n!r}, which"
            raise ConfigError(f"The p~* at {where} was pre-trained on a pool with {what} the experiment holds out "
                              "of pre-training; it cannot serve this cell (pre-train on a pool without it).")
    if target in pool and not allow_target:
        raise ConfigError(f"The p~* at {where} was pre-trained on a pool that contains the target {target!r}, so "
                          f"{target!r} is not held out of pre-training; use a pool without it, or set "
                          "allow_target_in_pool: true to run without that claim.")
    checked = context is not None and context.check_disjoint_from_test is not None
    if checked:
        for name, ids in (prov.get("pool_examples") or {}).items():
            context.check_disjoint_from_test(name, ids)
    return {"held_out_target": target not in pool,
            "test_disjoint": "checked" if checked else ("unchecked: no run context" if target in pool
                                                        else "target not in pool")}


def load_artifact(path: str | Path) -> tuple[str, dict[str, Any], Path]:
    """(p~* text, provenance, its folder) from an artifact folder or its p_star.md."""
    p = Path(path)
    d = p if p.is_dir() else p.parent
    text_path = p if p.is_file() else d / TEXT
    prov_path = d / PROVENANCE if (d / PROVENANCE).is_file() else text_path.with_suffix(".json")
    if not text_path.is_file():
        raise ConfigError(f"No p~* at {p}; pre-train it first (drop prompt_agent_path) or fix the path.")
    if not prov_path.is_file():
        raise ConfigError(f"The p~* at {p} has no provenance ({PROVENANCE}), so its pool cannot be checked "
                          "against this target; use an artifact SePO wrote.")
    return text_path.read_text(encoding="utf-8"), json.loads(prov_path.read_text(encoding="utf-8")), d


def save_artifact(d: Path, text: str, prov: dict[str, Any]) -> Path:
    """Write p~* then its provenance (the provenance last: an artifact without it is never loaded)."""
    d.mkdir(parents=True, exist_ok=True)
    for name, data in ((TEXT, text), (PROVENANCE, json.dumps({**prov, "p_star_sha256": sha(text),
                                                               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                        time.gmtime())},
                                                              indent=1, default=str))):
        write_atomic(d / name, data)
    return d / TEXT


def artifact_dir(store: Path, key: dict[str, Any]) -> Path:
    return store / f"{key['variant']}-{sha(key)[:16]}"


def complete(d: Path) -> bool:
    return (d / TEXT).is_file() and (d / PROVENANCE).is_file()
