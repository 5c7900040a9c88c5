"""Drive one method from Python, without an experiment file, in the style of `gepa.optimize`:

    from harness.api import optimize
    res = optimize("sepo", "You answer math questions.", trainset, valset, score_fn=lambda row, reply: ...,
                   task_llm="qwen2.5-coder-0.5b", prompt_llm={"base_url": URL, "model": "m"}, budget=48)
    res.best_prompt, res.candidates, res.lineage(), res.usage

It is the grid's code: the method comes from the registry (harness.methods.make_optimizer), the data becomes
a Benchmark (`UserTask`), candidates are scored by the harness Evaluator through the LLM layer (cache,
retries, cost, ledger), and `budget` is a cell's budget (an int: example evaluations, the grid's unit).

- trainset / valset: dicts, flat (`{"question": ..., "answer": ...}`, the custom benchmark's field names,
  or `fields=` to map them) or MLflow-style (`{"inputs": {...}, "expectations": ...}`).
- score_fn(row, reply) -> a number or bool, (number, rationale), {"score", "rationale"} or a Score; or a
  custom-benchmark scorer name ("exact", "numeric", "math", "choice"). The rationale is the feedback the
  prompt agent reads.
- seed_prompt: the task agent's system prompt; or a template with `{{variables}}` (filled from each row's
  inputs and sent as the user message), whose variables are then kept intact (harness.template_guard).
- task_llm / prompt_llm: an LLMClient, an EndpointConfig (or its dict), a local model name, or None for the
  embedded default of that role (SEPO_LOCAL_MODEL applies to embedded roles, as in configs).
- SePO and MetaSPO pre-train on the user's own train set (`pretrain="own"`, default) unless their settings
  name an artifact (`prompt_agent_path`, e.g. a p~* from an earlier grid run) or `self_improve: false`;
  `pretrain="registry"` keeps the grid's behaviour (built-in benchmark pools).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness import template_guard as tg
from harness.benchmarks.base import Benchmark, Example, Score, Split
from harness.benchmarks.custom import Custom
from harness.benchmarks.mbpp import SandboxUser
from harness.config import DEFAULT_LOCAL, LOCAL_MODELS, CacheConfig, ConfigError, EndpointConfig, LLMConfig
from harness.data import FieldSpec
from harness.llm.client import LLMClient
from harness.llm.usage import Budget, Ledger
from harness.optimizer import Candidate, CandidateSink, OptimizationTask, RunContext

ScoreFn = Callable[[dict[str, Any], str], Any]
LLMSpec = LLMClient | EndpointConfig | Mapping[str, Any] | str | None
NAMED_SCORERS = ("exact", "numeric", "math", "choice")


# ---- the user's data as a benchmark -----------------------------------------------------------------


def _inputs(row: Mapping[str, Any], fields: FieldSpec) -> tuple[dict[str, Any], Any]:
    """(inputs, reference answer) of a row, MLflow-style or flat."""
    if isinstance(row.get("inputs"), Mapping):
        return dict(row["inputs"]), row.get("expectations", row.get("outputs"))
    skip = {fields.name("answer", row), fields.name("id", row)}
    return {k: v for k, v in row.items() if k not in skip}, fields.get("answer", row)


def _shown(inputs: Mapping[str, Any]) -> str:
    if len(inputs) == 1:
        return str(next(iter(inputs.values())))
    return "\n".join(f"{k}: {v}" for k, v in inputs.items())


def _score(value: Any) -> Score:
    """A score_fn's return value as a Score (value in 0..1; correct = value 1)."""
    if isinstance(value, Score):
        return value
    why = ""
    if isinstance(value, tuple):
        value, why = value[0], str(value[1])
    elif isinstance(value, Mapping):
        why = str(value.get("rationale") or value.get("feedback") or "")
        value = value["score"]
    v = float(value)
    ok = v >= 1.0
    return Score(v, ok, why or ("correct" if ok else f"score {v:g}"), None, "correct" if ok else "scored")


class UserTask(Custom):
    """A user's rows (train and val) and score_fn as a Benchmark; the custom benchmark's scorers by name."""

    def __init__(self, train: Sequence[Mapping[str, Any]], val: Sequence[Mapping[str, Any]] = (),
                 score_fn: ScoreFn | str | None = None, *, name: str = "user-task", description: str = "",
                 template: str | None = None, fields: Mapping[str, str] | None = None,
                 max_tokens: int = 1024) -> None:
        scorer = score_fn if isinstance(score_fn, str) else "exact"
        if isinstance(score_fn, str) and score_fn not in NAMED_SCORERS:
            raise ConfigError(f"score_fn {score_fn!r} is not a scorer name; use one of {', '.join(NAMED_SCORERS)} "
                              "or a function (row, reply) -> score.")
        Benchmark.__init__(self, None, scorer=scorer)  # not Custom's: there is no file to find
        SandboxUser.__init__(self, None)  # no scorer here runs code
        self.scorer, self.score_fn = scorer, score_fn if callable(score_fn) else None
        self.fields, self.choices, self.max_tokens = FieldSpec(dict(fields or {})), "ABCD", max_tokens
        self.name = f"custom:{name}"
        self.required = tg.variables(template or "")
        self.description = (description or "Answer each input as the examples' references show.") + (
            tg.instruction(self.required) if self.required else "")
        self._rows = {"train": self._examples(train, "train"), "val": self._examples(val, "val")}
        if not self._rows["train"]:
            raise ConfigError("trainset is empty; pass at least one example.")

    def _examples(self, rows: Sequence[Mapping[str, Any]], split: str) -> list[Example]:
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ConfigError(f"{split}set[{i}] is a {type(row).__name__}, not a dict.")
            inputs, answer = _inputs(row, self.fields)
            missing = self.required - set(inputs)
            if missing:
                raise ConfigError(f"{split}set[{i}] has no value for the template variable(s) "
                                  f"{', '.join(sorted(missing))}.")
            if self.scorer == "numeric" and self.score_fn is None:
                answer = float(str(answer).replace(",", ""))
            elif self.scorer == "choice" and self.score_fn is None:
                answer = str(answer).strip().strip("()").upper()
            raw_id = self.fields.get("id", row)
            question = self.fields.get("question", row) if not self.required else None
            out.append(Example(str(raw_id) if raw_id is not None else f"{split}-{i}",
                               str(question) if question is not None else _shown(inputs), answer,
                               {"row": dict(row), "inputs": inputs}))
        return out

    def examples(self) -> list[Example]:
        return self._rows["train"] + self._rows["val"]

    def load(self, split: Split, seed: int) -> list[Example]:
        return list(self._rows.get(split, []))

    def to_messages(self, system_prompt: str, example: Example) -> list[dict[str, str]]:
        if self.required:  # the template is the whole user message
            return [{"role": "user", "content": tg.render(system_prompt, example.meta["inputs"])}]
        return super().to_messages(system_prompt, example)

    def score_many(self, examples: list[Example], responses: list[str]) -> list[Score]:
        if self.score_fn is None:
            return super().score_many(examples, responses)
        return [_score(self.score_fn(e.meta["row"], r or "")) for e, r in zip(examples, responses, strict=True)]


# ---- the LLMs ------------------------------------------------------------------------------------------


def endpoint(spec: LLMSpec, role: str = "task") -> EndpointConfig:
    """An endpoint from a spec (see the module docstring); an embedded one names its model (the role's default,
    or SEPO_LOCAL_MODEL)."""
    if isinstance(spec, EndpointConfig):
        ep = spec
    elif isinstance(spec, Mapping):
        ep = EndpointConfig.model_validate(dict(spec))
    elif isinstance(spec, str):
        if spec not in LOCAL_MODELS:
            raise ConfigError(f"LLM {spec!r} is not a local model ({', '.join(LOCAL_MODELS)}); pass an "
                              "EndpointConfig or a dict with base_url and model for a server.")
        ep = EndpointConfig(local_model=spec)
    elif spec is None:
        ep = EndpointConfig()
    else:
        raise ConfigError(f"cannot use {type(spec).__name__} as an LLM; pass an LLMClient, an EndpointConfig, a "
                          "dict or a local model name.")
    forced = os.environ.get("SEPO_LOCAL_MODEL")
    if ep.embedded:
        ep = ep.model_copy(update={"local_model": forced if forced in LOCAL_MODELS else
                                   ep.local_model or DEFAULT_LOCAL[role]})
    return ep


@contextmanager
def open_clients(task_llm: LLMSpec, prompt_llm: LLMSpec, *, cache: str | None = None,
                 budget: Budget | None = None) -> Iterator[tuple[LLMClient, LLMClient, Ledger]]:
    """(task client, prompt client, ledger) on one ledger with `budget`; embedded servers start here and stop
    on exit. Given LLMClients are used as they are (accounted on a child of the task client's ledger)."""
    with ExitStack() as stack:
        clients: dict[str, LLMClient] = {r: s for r, s in (("task", task_llm), ("prompt", prompt_llm))
                                         if isinstance(s, LLMClient)}
        if len(clients) < 2:
            from harness.llm.session import open_llms

            eps = {r: endpoint(s, r) for r, s in (("task", task_llm), ("prompt", prompt_llm)) if r not in clients}
            eps.setdefault("task", eps.get("prompt"))  # a role given as a client starts no server of its own
            eps.setdefault("prompt", eps["task"])
            cfg = LLMConfig(task=eps["task"], prompt=eps["prompt"],
                            cache=CacheConfig(path=str(cache or ".cache/unused.sqlite"),
                                              mode="read-write" if cache else "off"))
            llms = stack.enter_context(open_llms(cfg))
            clients = {"task": llms.task, "prompt": llms.prompt, **clients}
        ledger = clients["task"].ledger.child(budget or Budget())
        yield clients["task"].with_ledger(ledger), clients["prompt"].with_ledger(ledger), ledger


def as_budget(budget: int | Budget | Mapping[str, Any] | None) -> Budget:
    if budget is None:
        return Budget()
    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, Mapping):
        return Budget(**budget)
    return Budget(max_evaluations=int(budget))


# ---- running a method ----------------------------------------------------------------------------------


@dataclass
class Result:
    best_prompt: str
    best: Candidate
    candidates: list[Candidate]
    usage: dict[str, dict[str, float]]  # the ledger's summary: per role and total (evaluations, requests, ...)
    stopped: str | None = None  # "budget" when a cap ended the run
    refused: dict[str, str] = field(default_factory=dict)  # rewrites that lost a template variable -> why
    extra: dict[str, Any] = field(default_factory=dict)  # the method's own (e.g. SePO's p~*)

    def lineage(self, candidate_id: str | None = None) -> list[Candidate]:
        """The chain of parents from the root to a candidate (default: the best)."""
        by_id = {c.id: c for c in self.candidates}
        chain, cur = [], by_id.get(candidate_id or self.best.id, self.best)
        while cur is not None and cur not in chain:
            chain.append(cur)
            cur = by_id.get(cur.parent_id) if cur.parent_id else None
        return chain[::-1]


def _method_class(method: str, settings: Mapping[str, Any]) -> type:
    from harness.methods import method_class, resolve_method

    return method_class(resolve_method(method, dict(settings))[0])


def safe_best(result_best: Candidate, candidates: list[Candidate], required: frozenset[str],
              seed_prompt: str) -> Candidate:
    """The method's best, unless it lost a template variable: then the best intact scored candidate
    (validation score first, then train score), else the seed prompt."""
    if tg.is_intact(required, result_best.prompt):
        return result_best
    intact = [c for c in candidates if tg.is_intact(required, c.prompt) and
              (c.val_score is not None or c.train_score is not None)]
    if intact:
        return max(intact, key=lambda c: (c.val_score if c.val_score is not None else -1.0,
                                          c.train_score if c.train_score is not None else -1.0))
    return Candidate("seed", seed_prompt, None, 0, meta={"stage": "seed", "note": "no intact candidate was scored"})


def run_method(method: str, task: OptimizationTask, prompt_llm: LLMClient, ledger: Ledger, *,
               settings: Mapping[str, Any] | None = None, seed: int = 0, pretrain: Literal["own", "registry"] = "own",
               on_candidate: CandidateSink | None = None, checkpoint_dir: str | Path | None = None,
               context: RunContext | None = None, template_retries: int = 2) -> Result:
    """One method on one task through the registry (as a grid cell runs it); see the module docstring."""
    from harness.methods import make_optimizer, settings_fields

    settings = dict(settings or {})
    cls = _method_class(method, settings)
    own = pretrain == "own" and "pool_tasks" in inspect.signature(cls).parameters
    if own and "allow_target_in_pool" in settings_fields(cls):
        settings.setdefault("allow_target_in_pool", True)  # the user's task is its own pre-training pool
    opt = make_optimizer(method, settings)
    if own:
        opt.pool_tasks = [task]
    required = getattr(task.evaluator, "required", frozenset())
    agent = tg.GuardedLLM(prompt_llm, required, template_retries) if required else prompt_llm
    res = opt.optimize(task, agent, seed=seed, on_candidate=on_candidate,
                       checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None, context=context)
    best = safe_best(res.best, res.candidates, required, task.initial_prompt)
    extra = dict(res.extra or {})
    if required:
        extra["refused_replies"] = agent.refused_replies
    return Result(best.prompt, best, list(res.candidates), ledger.summary(), extra.get("stopped"),
                  dict(getattr(task.evaluator, "refused", {})), extra)


def optimize(method: str, seed_prompt: str, trainset: Sequence[Mapping[str, Any]],
             valset: Sequence[Mapping[str, Any]] | None = None, score_fn: ScoreFn | str | None = None,
             task_llm: LLMSpec = None, prompt_llm: LLMSpec = None, budget: int | Budget | Mapping | None = None,
             *, settings: Mapping[str, Any] | None = None, seed: int = 0, description: str = "",
             name: str = "user-task", fields: Mapping[str, str] | None = None,
             pretrain: Literal["own", "registry"] = "own", cache: str | None = None,
             on_candidate: CandidateSink | None = None, checkpoint_dir: str | Path | None = None) -> Result:
    """Optimize `seed_prompt` with a registered method on the user's data; see the module docstring."""
    if score_fn is None:
        raise ConfigError("score_fn is required: a function (row, reply) -> score, or a scorer name.")
    bench = UserTask(trainset, valset or [], score_fn, name=name, description=description,
                     template=seed_prompt if tg.variables(seed_prompt) else None, fields=fields)
    with open_clients(task_llm, prompt_llm, cache=cache, budget=as_budget(budget)) as (task_c, prompt_c, ledger):
        ev = tg.GuardedEvaluator(bench, task_c, seed=seed, required=bench.required)
        task = OptimizationTask(bench.name, bench, bench.load("train", seed), bench.load("val", seed), ev, seed_prompt)
        return run_method(method, task, prompt_c, ledger, settings=settings, seed=seed, pretrain=pretrain,
                          on_candidate=on_candidate, checkpoint_dir=checkpoint_dir)
