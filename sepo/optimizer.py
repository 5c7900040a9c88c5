"""SePO as an Optimizer: get p~* (hand-written, loaded, or pre-trained once per key), then fine-tune a task prompt.

SePO-Generalist pre-trains on a multi-task pool, SePO-Specialist on one related task (sepo/pools.py).
p~* is an artifact of its own (sepo/artifact.py): keyed by variant, pool, pool splits' seed, models, p~0 and
pre-training settings, stored with its provenance under the run context's shared folder (or `pstar_dir`),
checked on every load. In the experiment runner it is a shared stage (`shared_stage`, harness/stages.py):
built once per key before the cells that use it, on a budget of its own; a budget stop there freezes the
best p~ so far. Before p~* is frozen, the top `pstar_top_n` pre-training candidates and p~0 are re-scored on
one fixed draw per pool task, and the best there wins (a single minibatch draw is noisy). Without the runner
(scripts, tests) the first cell that needs a p~* pre-trains it from its own budget. Ablations:
`self_improve: false` never pre-trains nor loads one (p~ stays the hand-written p~0); `archive: false`
makes both stages linear searches that always extend the latest child.

Pool tasks come from RunContext.open_task (opened by the runner with the config's options and sandbox,
before any request; `benchmarks_needed` names them). Without a run context (unit tests, scripts), pass
`pool_tasks`, or SePO opens the pool itself with the target's data folder and sandbox, before any request,
and closes it at the end.

Budgets: every evaluation SePO makes (pre-training, fine-tuning, the val re-scoring below) goes through the
task client, whose ledger counts and caps it. BudgetExceeded anywhere stops SePO cleanly with its best so
far: a budget stop in an in-cell pre-training leaves the p~* checkpoint for the next cell and returns the
initial task prompt (unscored); in fine-tuning, the best admitted candidate; in the val pass, the best of
those scored.
`extra["usage"]` reports what each stage spent.

Best candidate: when the task has validation examples, the top `val_top_n` archive candidates by minibatch
score, plus the initial prompt, are scored on (up to `val_size`) validation examples and the best there wins
(ties: higher train score, then earlier). Without val examples, the best minibatch score wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.config import ConfigError
from harness.evaluator import Evaluator
from harness.files import locked
from harness.llm.client import LLMClient
from harness.llm.usage import BudgetExceeded, Ledger, snapshot_of
from harness.optimizer import (
    Callbacks,
    Candidate,
    CandidateSink,
    OptimizationTask,
    OptimizeResult,
    RunContext,
    callbacks_of,
)
from harness.schema import STAGE_PRETRAIN
from harness.stages import SharedStage, StageEnv, StageMissing
from sepo import artifact
from sepo.agent import PromptAgent, initial_prompt_agent
from sepo.archive import Entry
from sepo.evolve import Draw, EvolveResult, EvolveSettings, Meter
from sepo.pools import canonical, resolve_pool
from sepo.stages import agent_score_fn, finetune, fit_feedback, pretrain


class SePOSettings(EvolveSettings):
    """Fine-tuning search settings (inherited) plus the pre-training and prompt-agent settings."""

    variant: Literal["generalist", "specialist"] = "generalist"
    pool_mode: Literal["mixture", "per-target"] = Field(
        "mixture", description="Generalist with no pretrain_pool: 'mixture' (the paper's) = one pool of every "
        "built-in benchmark but Sudoku, custom and the held-out ones, the target's train split included, so one "
        "p~* per pool seed serves every target; 'per-target' = that pool without the target (one p~* per target)")
    pretrain_pool: list[str] = Field(
        default_factory=list, description="benchmark names to pre-train on. Generalist: empty = see pool_mode. "
        "Specialist: one name; empty = the target's related task (sepo/pools.py:RELATED)")
    pool_selection: Literal["all", "greedy"] = Field(
        "all", description="Generalist: 'greedy' picks pool_size of the candidate tasks by relevance to the "
        "target and diversity (sepo/pools.py)")
    pool_size: int = Field(3, ge=1, description="tasks a greedy pool picks")
    pool_diversity: float = Field(0.5, ge=0.0, le=1.0, description="greedy: weight of diversity vs relevance")
    allow_target_in_pool: bool = Field(False, description="True: a pool may contain the target (its train "
                                       "split; the cell then does not claim the target is held out)")
    pretrain_seed: int | Literal["auto"] | None = Field(
        "auto", description="seed of the pool tasks' splits and of the pre-training search; None = the cell's "
        "seed (one p~* per seed); auto = the cell's seed when the pool holds the target (its train split must be "
        "that seed's, disjoint from its test), else 0")
    self_improve: bool = Field(True, description="False: no pre-training, p~ stays the hand-written one")
    pretrain_generations: int | None = Field(None, ge=0, description="G for pre-training (None: same as G)")
    pretrain_children: int | None = Field(None, ge=1, description="K for pre-training (None: same as K)")
    pretrain_minibatch: int | None = Field(None, ge=1, description="per-task minibatch in pre-training")
    pretrain_feedback_per_side: int = Field(1, ge=0, description="pre-training: failing and passing examples "
                                            "shown per pool task (every task is always shown)")
    temperature: float | None = Field(0.7, ge=0.0, le=2.0, description="prompt agent sampling temperature")
    agent_max_tokens: int | None = Field(1500, gt=0, description="reply cap for the prompt agent")
    lenient_tags: bool = Field(False, description="True: an untagged agent reply that is still untagged after "
                               "its retry is read best-effort (small local models); False: skipped")
    pstar_dir: str | None = Field(None, description="folder of p~* artifacts (default: the run context's "
                                  "shared folder /sepo-pstar; with neither, p~* is not reused)")
    prompt_agent_path: str | None = Field(
        None, description="use this p~* artifact (a folder or its p_star.md, with provenance.json), checked "
        "against the target; never pre-trains")
    val_top_n: int = Field(3, ge=0, description="candidates re-scored on val to pick the best (0: none)")
    pstar_top_n: int = Field(3, ge=0, description="pre-training candidates re-scored on one fixed draw per pool "
                             "task before p~* is frozen (0: the best minibatch score wins)")
    val_size: int | None = Field(None, ge=1, description="cap on val examples used for that choice")

    def pretrain_settings(self) -> EvolveSettings:
        base = self.finetune_settings()
        upd = {"generations": self.pretrain_generations, "children": self.pretrain_children,
               "minibatch": self.pretrain_minibatch, "feedback_per_side": self.pretrain_feedback_per_side}
        return base.model_copy(update={k: v for k, v in upd.items() if v is not None})

    def finetune_settings(self) -> EvolveSettings:
        return EvolveSettings.model_validate(self.model_dump(include=set(EvolveSettings.model_fields)))


def to_candidate(e: Entry, stage: str, val_score: float | None = None,
                 val_ids: Sequence[str] | None = None) -> Candidate:
    meta = {"stage": stage, "admitted": e.admitted, "children": e.children, **e.meta}
    if val_ids is not None:
        meta["val_example_ids"] = list(val_ids)
    return Candidate(e.id, e.text, e.parent_id, e.generation, e.score, val_score, meta)


def meter_of(*ledgers: Ledger) -> Meter:
    """The run's spending so far over these ledgers, each counted once (harness.llm.usage.snapshot_of)."""
    return lambda: snapshot_of(*ledgers).counts()


def delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: round(b[k] - a[k], 6) for k in a}


def charged_to(pool_task: OptimizationTask, task: OptimizationTask) -> OptimizationTask:
    """The pool task with its evaluations counted (and capped) on the target's ledger: pre-training spends
    the budget of the cell that runs it."""
    ledger = task.evaluator.llm.ledger
    ev = pool_task.evaluator
    if ev.llm.ledger is ledger:
        return pool_task
    return replace(pool_task, evaluator=Evaluator(pool_task.benchmark, ev.llm.with_ledger(ledger), seed=ev.seed,
                                                  max_tokens=ev.max_tokens))


RESERVE = "budget: val pass reserved"  # fine-tuning stopped to keep the budget of the val pass


class SePO:
    name = "sepo"
    Settings = SePOSettings

    def __init__(self, settings: SePOSettings | dict[str, Any] | None = None, *,
                 pool_tasks: Sequence[OptimizationTask] | None = None, **overrides: Any) -> None:
        if settings is None or isinstance(settings, dict):
            settings = SePOSettings.model_validate({**(settings or {}), **overrides})
        elif overrides:
            settings = SePOSettings.model_validate({**settings.model_dump(), **overrides})
        self.settings = settings
        self.pool_tasks = list(pool_tasks) if pool_tasks is not None else None  # else opened by name

    # ---- what the runner asks before any request -----------------------------------------------
    def pool_names(self, target_name: str, held_out: Sequence[str] = ()) -> list[str]:
        s = self.settings
        if self.pool_tasks is not None:
            names = [canonical(t.name) for t in self.pool_tasks]
            return resolve_pool("generalist", target_name, names, held_out=held_out,
                                allow_target=s.allow_target_in_pool, registered_only=False)
        return resolve_pool(s.variant, target_name, s.pretrain_pool, held_out=held_out, selection=s.pool_selection,
                            size=s.pool_size, diversity=s.pool_diversity, allow_target=s.allow_target_in_pool,
                            mixture=self.mixture)

    @property
    def mixture(self) -> bool:
        """The paper's default Generalist pool: one mixture with the target's train split in it."""
        s = self.settings
        return (s.variant == "generalist" and s.pool_mode == "mixture" and s.pool_selection == "all"
                and not s.pretrain_pool and self.pool_tasks is None)

    def _allow_target(self) -> bool:
        return self.settings.allow_target_in_pool or self.mixture

    def benchmarks_needed(self, target_name: str, held_out: Sequence[str] = ()) -> list[str]:
        """The pool benchmarks this method pre-trains on for `target_name` (none without self-improvement or
        with a given p~*); raises ConfigError when the pool breaks a rule."""
        s = self.settings
        if not s.self_improve or s.prompt_agent_path or self.pool_tasks is not None:
            return []
        return [n for n in self.pool_names(target_name, held_out) if n != canonical(target_name)]

    def agent(self, prompt_llm: LLMClient, system_prompt: str) -> PromptAgent:
        return PromptAgent(prompt_llm, system_prompt, temperature=self.settings.temperature,
                           max_tokens=self.settings.agent_max_tokens, lenient=self.settings.lenient_tags)

    # ---- the pool ------------------------------------------------------------------------------
    def _open_pool(self, names: list[str], pool_seed: int, task: OptimizationTask, context: RunContext | None,
                   stack: ExitStack) -> list[OptimizationTask]:
        if self.pool_tasks is not None:
            return [charged_to(t, task) for t in self.pool_tasks]
        if context is not None and context.open_task is not None:
            return [charged_to(context.open_task(n, pool_seed), task) for n in names]
        from harness.benchmarks import get_benchmark

        sandbox = getattr(task.benchmark, "sandbox", None)
        pool = []
        for n in names:
            bench = get_benchmark(n, task.benchmark.data_dir, sandbox=sandbox)
            stack.callback(bench.close)
            if getattr(bench, "sandbox", "none") is None:
                raise ConfigError(f"pool task {n!r} runs code but the target has no sandbox; run SePO through "
                                  "the experiment runner (it opens pools with the config's sandbox) or pass "
                                  "pool_tasks.")
            ev = Evaluator(bench, task.evaluator.llm, seed=pool_seed)
            pool.append(OptimizationTask(n, bench, bench.load("train", pool_seed), bench.load("val", pool_seed), ev,
                                         task.initial_prompt))
        return pool

    def _store(self, context: RunContext | None) -> Path | None:
        if self.settings.pstar_dir:
            return Path(self.settings.pstar_dir)
        if context is not None and context.shared_dir is not None:
            return Path(context.shared_dir) / "sepo-pstar"
        return None

    def _pretrain_config(self, pre: EvolveSettings, task_side: int) -> dict[str, Any]:
        s = self.settings
        return {"search": pre.model_dump(), "temperature": s.temperature, "agent_max_tokens": s.agent_max_tokens,
                "lenient_tags": s.lenient_tags, "task_feedback_per_side": task_side}

    # ---- p~ -----------------------------------------------------------------------------------
    def _plan(self, target: str, seed: int, prompt_llm: LLMClient, context: RunContext | None,
              open_pool: Callable[[list[str], int], list[OptimizationTask]]) -> dict[str, Any]:
        """Everything that identifies this cell's p~* (pool, seed, settings, key, folder), before any request."""
        s = self.settings
        held = context.held_out if context is not None else ()
        names = self.pool_names(target, held)
        auto = seed if canonical(target) in names else 0
        pool_seed = seed if s.pretrain_seed is None else auto if s.pretrain_seed == "auto" else s.pretrain_seed
        pool = open_pool(names, pool_seed)
        pre = s.pretrain_settings()
        fits = [fit_feedback(t, pre.shape[1], pre.minibatch, pre.feedback_per_side, s.feedback_per_side)
                for t in pool]
        pre = pre.model_copy(update={"feedback_per_side": min(f[0] for f in fits)})
        task_side = min(f[1] for f in fits)
        key = artifact.artifact_key(s.variant, pool, pool_seed, prompt_llm, initial_prompt_agent(),
                                    {**self._pretrain_config(pre, task_side), "pstar_top_n": s.pstar_top_n})
        draft = artifact.provenance(key, pool, mixture=self.mixture)
        store = self._store(context)
        d = artifact.artifact_dir(store, key) if store is not None else None
        claim = artifact.check_provenance(draft, str(d) if d else "(not yet written)", target=target,
                                          context=context, allow_target=self._allow_target())
        info = {"source": "pre-trained", "key": draft["key_hash"], "path": str(d) if d else None,
                "pool_seed": pool_seed, "feedback_per_side": {"pretrain": pre.feedback_per_side,
                                                              "pretrain_task": task_side}, **claim}
        return {"pool": pool, "names": draft["pool"], "pool_seed": pool_seed, "pre": pre, "task_side": task_side,
                "draft": draft, "dir": d, "info": info}

    def _pretrain(self, plan: dict[str, Any], pool: list[OptimizationTask], prompt_llm: LLMClient,
                  ck: Path | None, meter: Meter, cb: Callbacks) -> EvolveResult:
        s = self.settings
        sink = (lambda e: cb.candidate(to_candidate(e, "pretrain"))) if cb.on_candidate else None
        return pretrain(initial_prompt_agent(), pool, prompt_llm, plan["pre"], seed=plan["pool_seed"],
                        temperature=s.temperature, max_tokens=s.agent_max_tokens, lenient=s.lenient_tags,
                        task_feedback_per_side=plan["task_side"], checkpoint=ck, on_candidate=sink,
                        run_key={"key": plan["draft"]["key_hash"]}, meter=meter,
                        on_generation_end=cb.on_generation_end, should_stop=cb.should_stop)

    def _freeze(self, plan: dict[str, Any], pool: list[OptimizationTask], prompt_llm: LLMClient,
                res: EvolveResult) -> tuple[Entry, dict[str, float]]:
        """p~*: the top `pstar_top_n` candidates (and p~0) re-scored on one fixed draw per pool task (common
        random numbers), the best there; a budget stop keeps what was re-scored."""
        s, arch = self.settings, res.archive
        contenders = [e for e in arch.ranked()[: s.pstar_top_n]]
        root = arch.entries[0]
        if s.pstar_top_n and root.score is not None and root not in contenders:
            contenders.append(root)
        if len(contenders) < 2:
            return arch.best(), {}
        score = agent_score_fn(pool, prompt_llm, plan["pre"], seed=plan["pool_seed"], temperature=s.temperature,
                               max_tokens=s.agent_max_tokens, lenient=s.lenient_tags,
                               task_feedback_per_side=plan["task_side"])
        scores: dict[str, float] = {}
        for e in contenders:
            try:
                scores[e.id] = score(e.text, Draw(-1)).score
            except BudgetExceeded:
                break
        if not scores:
            return arch.best(), {}
        order = {e.id: i for i, e in enumerate(arch.entries)}
        best = max(scores, key=lambda i: (scores[i], arch[i].score or 0.0, -order[i]))
        return arch[best], scores

    def build_pstar(self, plan: dict[str, Any], pool: list[OptimizationTask], prompt_llm: LLMClient, *,
                    meter: Meter, cb: Callbacks | None = None, freeze_on_stop: bool = True,
                    ck: Path | None = None) -> dict[str, Any]:
        """Pre-train (or resume, or load) the p~* of `plan`: {"text", "info", "result", "stopped"}. With a
        store, the artifact is written under its lock; `freeze_on_stop` freezes the best so far when a budget
        stops pre-training (a shared stage), else text is None (an in-cell pre-training)."""
        d, info = plan["dir"], plan["info"]

        def run() -> dict[str, Any]:
            t0 = meter()
            res = self._pretrain(plan, pool, prompt_llm, d / artifact.CHECKPOINT if d else ck, meter,
                                 cb or Callbacks())
            if res.stopped is not None and not freeze_on_stop:
                return {"text": None, "info": {**info, "reused": False}, "result": res, "stopped": res.stopped}
            best, rescored = self._freeze(plan, pool, prompt_llm, res)
            chosen = {"id": best.id, "score": best.score, "rescored": rescored, "stopped": res.stopped}
            if d is not None:
                artifact.save_artifact(d, best.text, {**plan["draft"], "best": chosen, "candidates": len(res.archive),
                                                      "cost_this_call": delta(t0, meter())})
            return {"text": best.text, "info": {**info, "reused": False, "best": chosen}, "result": res,
                    "stopped": res.stopped}

        if d is None:  # no shared store: pre-train for this cell only
            return run()
        with locked(d):
            if artifact.complete(d):
                return self.load_pstar(plan)
            return run()

    def load_pstar(self, plan: dict[str, Any], target: str | None = None,
                   context: RunContext | None = None) -> dict[str, Any]:
        """The finished p~* of `plan`, its text checked against its provenance's hash; with `target`, the
        provenance is also checked for that target (held-out rules, test-split overlap)."""
        d = plan["dir"]
        text, prov, _ = artifact.load_artifact(d)
        if target is not None:
            artifact.check_provenance(prov, str(d), target=target, context=context, allow_target=self._allow_target(),
                                      text=text)
        return {"text": text, "info": {**plan["info"], "reused": True, "best": prov.get("best")}, "result": None,
                "stopped": None, "pool": prov["pool"]}

    def shared_stage(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                     context: RunContext) -> SharedStage | None:
        """The pre-training this cell shares with every cell of the same p~* key (the runner builds it once,
        before those cells, on a budget of its own); None when p~ is hand-written, given or not stored."""
        s = self.settings
        if not s.self_improve or s.prompt_agent_path or self._store(context) is None or context.open_task is None:
            return None
        plan = self._plan(task.name, seed, prompt_llm, context,
                          lambda names, ps: [context.open_task(n, ps) for n in names])

        def build(env: StageEnv) -> dict[str, Any]:
            pool = [env.open_task(n, plan["pool_seed"]) for n in plan["names"]]
            meter = meter_of(*(t.evaluator.llm.ledger for t in pool), env.prompt_llm.ledger)
            got = self.build_pstar(plan, pool, env.prompt_llm, meter=meter,
                                   cb=Callbacks(on_candidate=env.on_candidate))
            return {"text": got["text"], "stopped": got["stopped"], "info": got["info"],
                    "candidates": [to_candidate(e, "pretrain") for e in got["result"].archive.entries]
                    if got.get("result") else []}

        return SharedStage(key=plan["draft"]["key_hash"], kind=STAGE_PRETRAIN, build=build,
                           done=lambda: artifact.complete(plan["dir"]),
                           describe=f"SePO {s.variant} p~* on {', '.join(plan['names'])} (pool seed "
                                    f"{plan['pool_seed']})", pool=plan["names"])

    def prompt_agent_for(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                         context: RunContext | None, checkpoint_dir: Path | None, meter: Meter,
                         cb: Callbacks, stack: ExitStack) -> dict[str, Any]:
        """p~ for this cell and where it came from: {"text", "pool", "info", "result"}; text None when a
        budget stop interrupted an in-cell pre-training."""
        s = self.settings
        p0 = initial_prompt_agent()
        if not s.self_improve:
            return {"text": p0, "pool": [], "info": {"source": "hand-written p~0"}}
        if s.prompt_agent_path:
            text, prov, d = artifact.load_artifact(s.prompt_agent_path)
            claim = artifact.check_provenance(prov, str(d), target=task.name, context=context, text=text,
                                              allow_target=s.allow_target_in_pool or bool(prov.get("mixture")))
            return {"text": text, "pool": prov["pool"], "info": {"source": "given", "path": str(d), "reused": True,
                                                                 "key": prov.get("key_hash"), **claim}}
        plan = self._plan(task.name, seed, prompt_llm, context,
                          lambda names, ps: self._open_pool(names, ps, task, context, stack))
        d = plan["dir"]
        if d is not None and artifact.complete(d):
            return self.load_pstar(plan, task.name, context)
        if context is not None and context.shared_stages_built:
            raise StageMissing(f"SePO's p~* {plan['draft']['key_hash'][:12]} was not built by its shared stage "
                               "(it failed or was interrupted); rerun to retry the stage.")
        got = self.build_pstar(plan, plan["pool"], prompt_llm, meter=meter, cb=cb,
                               freeze_on_stop=False, ck=Path(checkpoint_dir) / "sepo-pretrain.json"
                               if checkpoint_dir else None)
        return {**got, "pool": plan["names"]}

    # ---- the whole method ----------------------------------------------------------------------
    def fingerprint(self, task: OptimizationTask, prompt_llm: LLMClient, pstar_key: str | None) -> dict[str, Any]:
        """Everything besides p~ that changes fine-tuning results (the checkpoint refuses other runs)."""
        return {"target": artifact.task_info(task, with_val=True), "prompt_model": artifact.llm_info(prompt_llm),
                "p0": artifact.sha(initial_prompt_agent()), "pstar_key": pstar_key,
                "sepo_settings": self.settings.model_dump(exclude={"generations", "pstar_dir", "prompt_agent_path"})}

    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                 callbacks: Callbacks | None = None, on_candidate: CandidateSink | None = None,
                 checkpoint_dir: Path | None = None, context: RunContext | None = None) -> OptimizeResult:
        s = self.settings
        cb = callbacks_of(callbacks, on_candidate)
        meter = meter_of(task.evaluator.llm.ledger, prompt_llm.ledger)
        ck = Path(checkpoint_dir) if checkpoint_dir is not None else None
        usage: dict[str, dict[str, float]] = {}
        m0 = meter()
        ft_settings = s.finetune_settings()
        side, _ = fit_feedback(task, ft_settings.shape[1], ft_settings.minibatch, ft_settings.feedback_per_side)
        ft_settings = ft_settings.model_copy(update={"feedback_per_side": side})
        with ExitStack() as stack:
            got = self.prompt_agent_for(task, prompt_llm, seed=seed, context=context, checkpoint_dir=ck,
                                        meter=meter, cb=cb, stack=stack)
        m1 = meter()
        usage["pretrain"] = delta(m0, m1)
        pre: EvolveResult | None = got.get("result")
        extra: dict[str, Any] = {
            "prompt_agent": got["text"], "pretrain_pool": got["pool"], "pstar": got["info"],
            "pretrain_candidates": [to_candidate(e, "pretrain") for e in pre.archive.entries] if pre else [],
            "pretrain_stopped": got.get("stopped"), "stopped": None, "usage": usage,
            "feedback_per_side": side}
        if got["text"] is None:  # budget stop in pre-training: the initial task prompt, unscored
            root = Candidate("g0-0", task.initial_prompt, None, 0, None, None,
                             {"stage": "finetune", "admitted": True, "skipped": "budget stop in pre-training"})
            extra["stopped"] = "budget"
            usage["total"] = delta(m0, meter())
            return OptimizeResult(root, [root], extra)
        agent_prompt = got["text"]
        sink = (lambda e: cb.candidate(to_candidate(e, "finetune"))) if cb.on_candidate else None
        reserve = self.val_reserve(task, ft_settings)
        res = finetune(task, self.agent(prompt_llm, agent_prompt), ft_settings, seed=seed,
                       checkpoint=ck / "sepo-finetune.json" if ck else None, on_candidate=sink,
                       run_key=self.fingerprint(task, prompt_llm, got["info"].get("key")), meter=meter,
                       on_generation_end=cb.on_generation_end,
                       should_stop=lambda: cb.stop_reason() or reserve())
        m2 = meter()
        usage["finetune"] = delta(m1, m2)
        best, val_scores, val_ids, stopped = self.choose_best(task, res)
        usage["val"] = delta(m2, meter())
        usage["total"] = delta(m0, meter())
        cands = [to_candidate(e, "finetune", val_scores.get(e.id), val_ids if e.id in val_scores else None)
                 for e in res.archive.entries]
        extra["stopped"] = stopped
        return OptimizeResult(next(c for c in cands if c.id == best.id), cands, extra)

    def val_reserve(self, task: OptimizationTask, ft: EvolveSettings) -> Callable[[], str | None]:
        """should_stop for fine-tuning: stop before a proposal when the cell's evaluation budget could no longer
        pay for one more child (and its paired parent re-score) and the val pass that picks the best; the val
        pass then still covers every contender (the cell is recorded as stopped on budget). Off when the budget
        is too small for the val pass plus the root's draw from the start."""
        s, ledger = self.settings, task.evaluator.llm.ledger
        val = len(task.val[: s.val_size] if s.val_size else task.val)
        need = 2 * ft.minibatch + (s.val_top_n + 1) * val if task.val and s.val_top_n else 0
        start = ledger.evaluations_left()
        if start is not None and start < need + ft.minibatch:  # a budget that could never pay for the val pass:
            need = 0  # fine-tune with all of it (no val pass after the stop), as without a reserve

        def check() -> str | None:
            left = ledger.evaluations_left()
            return RESERVE if need and left is not None and left < need else None

        return check

    def choose_best(self, task: OptimizationTask,
                    res: EvolveResult) -> tuple[Entry, dict[str, float], list[str], str | None]:
        """See the module docstring; a budget stop during the val pass keeps what was scored."""
        s, arch = self.settings, res.archive
        if not task.val or s.val_top_n == 0 or res.stopped not in (None, RESERVE):
            return arch.best(), {}, [], res.stopped
        root = arch.entries[0]
        contenders = arch.ranked()[: s.val_top_n]
        contenders += [root] if root not in contenders and root.score is not None else []
        val = task.val[: s.val_size] if s.val_size else task.val
        scores: dict[str, float] = {}
        stopped = "budget" if res.stopped == RESERVE else None  # fine-tuning ended early to keep this pass
        for e in contenders:
            try:
                scores[e.id] = task.evaluator.evaluate(e.text, val, label="sepo val").accuracy
            except BudgetExceeded:
                stopped = "budget"
                break
        if not scores:
            return arch.best(), {}, [], stopped
        order = {e.id: i for i, e in enumerate(arch.entries)}
        best_id = max(scores, key=lambda i: (scores[i], arch[i].score or 0.0, -order[i]))
        return arch[best_id], scores, [e.id for e in val], stopped
