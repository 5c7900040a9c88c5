"""TextGrad (Yuksekgonul et al., PyPI `textgrad`): textual gradients on the system prompt.

The `textgrad` package itself does the work; this module plugs it into the harness:

- `harness_engine(llm)`: a `textgrad.EngineLM` subclass whose every call goes through the harness
  `LLMClient` of the prompt role (response cache, concurrency limit, retries, cost, budget caps). It is
  the backward engine (critiques) and the optimizer engine (TGD updates).
- The forward pass (the task agent answering with the system prompt) is the harness evaluator's, so
  every example is scored by the benchmark's own scorer and counted in the budget; a replay engine
  hands those exact replies to `textgrad.BlackboxLLM`, so the graph holds (system prompt, question ->
  reply) as TextGrad's own LLMCall and backpropagates through it with TextGrad's prompts.
- The loss per example is a `textgrad.autograd.StringBasedFunction` whose output is the scorer's
  verdict and feedback (the TextGrad prompt-optimization recipe's string-based evaluation function);
  the minibatch loss is `textgrad.sum` of them, `loss.backward(engine)` computes the gradients on the
  system prompt (a `textgrad.Variable` with requires_grad=True), and `textgrad.TGD(...).step()` rewrites it.
- Revert on validation drop (the recipe's `run_validation_revert`): after each step the new prompt is
  scored on the validation split; if it scores lower than the current prompt did, the step is undone.
  Without validation examples the step's own minibatch is the judge.

Budget of the paper: 10 iterations x 16 examples (`iterations`, `minibatch`); the revert rule judges on the
first `val_size` (16) validation examples, so a run costs about 10 x 16 + 11 x 16 example evaluations (the
recipe scores the whole validation set, which on MBPP's 90 would take 990 evaluations for the judging alone).
Gradients on the system prompt are handed to TGD in a content-sorted order (TextGrad keeps them in a set,
whose order varies between processes), so a resumed run sends byte-identical requests and the response
cache answers them.
`import textgrad` is lazy (it takes seconds) and happens with LITELLM_LOCAL_MODEL_COST_MAP=True (else
litellm fetches a price map from the network) and TEXTGRAD_LOG_DIR defaulting to a temporary directory.
"""

from __future__ import annotations

import logging
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from baselines.common import (
    Journal,
    Reporter,
    Settings,
    Spend,
    base_extra,
    evaluate,
    head,
    minibatch,
    parse_settings,
    rejected,
    truncate,
)
from harness.aio import run_sync
from harness.evaluator import EvalResult
from harness.llm.client import LLMClient, LLMError
from harness.optimizer import Callbacks, Candidate, CandidateSink, OptimizationTask, OptimizeResult, RunContext

ROLE = ("structured system prompt to a somewhat capable language model that specifies the behavior and "
        "strategies for the task")  # the recipe's role description
SCORER_PURPOSE = ("The task's scorer: it checks the prediction against the ground truth answer and returns its "
                  "verdict (correct or incorrect) with feedback on what went wrong.")


@cache
def load_textgrad():
    """Import textgrad once, without network access at import time and without logs in the work tree."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("TEXTGRAD_LOG_DIR", os.path.join(tempfile.gettempdir(), "sepo-bench-textgrad-logs"))
    import textgrad

    textgrad.logger.setLevel(logging.WARNING)  # it logs every prompt at INFO to a file per import
    return textgrad


@cache
def _engine_classes() -> tuple[type, type]:
    tg = load_textgrad()

    class HarnessEngine(tg.EngineLM):
        """A textgrad engine on the harness LLM layer (cache, concurrency, cost, budget)."""

        def __init__(self, llm: LLMClient, *, temperature: float | None = None, max_tokens: int | None = None,
                     seed: int | None = None) -> None:
            self.llm, self.temperature, self.max_tokens, self.seed = llm, temperature, max_tokens, seed
            self.model_string = f"harness:{llm.role}:{llm.model}"
            self.calls = 0
            self.last_reply = ""

        def generate(self, content: Any, system_prompt: str | None = None, **kwargs: Any) -> str:
            if isinstance(content, list):  # multimodal content: keep the text parts
                content = "\n".join(c for c in content if isinstance(c, str))
            messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
            messages.append({"role": "user", "content": str(content)})
            self.calls += 1
            res = run_sync(self.llm.chat(messages, temperature=self.temperature, max_tokens=self.max_tokens,
                                         seed=self.seed))
            self.last_reply = res.text
            return res.text

        def __call__(self, content: Any, **kwargs: Any) -> str:
            return self.generate(content, **kwargs)

    class ReplayEngine(tg.EngineLM):
        """The forward engine: the task agent's replies as the harness evaluator got them."""

        def __init__(self, replies: dict[tuple[str, str], str]) -> None:
            self.replies = replies
            self.model_string = "harness:task-replay"

        def generate(self, content: Any, system_prompt: str | None = None, **kwargs: Any) -> str:
            return self.replies[(system_prompt or "", str(content))]

        def __call__(self, content: Any, **kwargs: Any) -> str:
            return self.generate(content, **kwargs)

    return HarnessEngine, ReplayEngine


def harness_engine(llm: LLMClient, *, temperature: float | None = None, max_tokens: int | None = None,
                   seed: int | None = None):
    return _engine_classes()[0](llm, temperature=temperature, max_tokens=max_tokens, seed=seed)


class TextGradSettings(Settings):
    iterations: int = Field(10, ge=0, description="TGD steps (paper budget: 10)")
    minibatch: int = Field(16, ge=1, description="examples per step (paper budget: 16)")
    val_size: int | None = Field(16, ge=1, description="validation examples for the revert rule (the first n; "
                                 "None: all). 16 keeps 10 steps within a few hundred evaluations")
    revert: bool = Field(True, description="undo a step whose prompt scores lower on validation")
    loss_on: Literal["all", "failures"] = Field("all", description="examples that enter the loss")
    temperature: float | None = Field(0.0, ge=0.0, le=2.0, description="backward/optimizer sampling temperature "
                                      "(textgrad's engines default to 0)")
    agent_max_tokens: int | None = Field(2000, gt=0, description="reply cap of backward and optimizer calls")
    constraints: list[str] = Field(default_factory=list, description="TGD natural-language constraints")
    gradient_memory: int = Field(0, ge=0, description="TGD: past gradients shown in an update")
    role_description: str = Field(ROLE, description="the system prompt variable's role description")
    excerpt_chars: int = Field(1500, ge=100, description="truncation of the reference answer in the loss")


class TextGrad:
    name = "textgrad"

    @staticmethod
    def preload() -> None:
        """The slow, thread-unsafe imports, done once before cells run in threads (harness.experiment)."""
        _engine_classes()
    Settings = TextGradSettings

    def __init__(self, settings: TextGradSettings | dict[str, Any] | None = None, **overrides: Any) -> None:
        self.settings = parse_settings(TextGradSettings, settings, overrides)
        self.engine = None  # the last run's backward/optimizer engine (for inspection)

    # one TGD step on `prompt` over the minibatch `mb`: returns the journaled step record
    def _step(self, task: OptimizationTask, prompt: str, mb: list, engine, memory: list[str]) -> dict[str, Any]:
        tg = load_textgrad()
        _, replay_cls = _engine_classes()
        s = self.settings
        res: EvalResult = task.evaluator.evaluate(prompt, mb, label="textgrad forward")
        out: dict[str, Any] = {"parent_score": res.accuracy, "example_ids": [e.id for e in mb], "prompt": prompt,
                               "reply": None, "gradient": "", "error": None}
        replies = {(prompt, e.question): r.response for e, r in zip(mb, res.records, strict=True)}
        system_prompt = tg.Variable(prompt, requires_grad=True, role_description=s.role_description)
        model = tg.BlackboxLLM(replay_cls(replies), system_prompt)
        losses = []
        for ex, rec in zip(mb, res.records, strict=True):
            if s.loss_on == "failures" and rec.correct:
                continue
            x = tg.Variable(ex.question, requires_grad=False, role_description="query to the language model")
            y = tg.Variable(truncate(str(ex.answer), s.excerpt_chars), requires_grad=False,
                            role_description="correct answer for the query")
            verdict = (f"{'correct' if rec.correct else 'incorrect'} (score {rec.score:.2f}). "
                       f"Scorer feedback: {rec.feedback}")
            fn = tg.autograd.StringBasedFunction(lambda prediction, ground_truth_answer, v=verdict: v, SCORER_PURPOSE)
            losses.append(fn(inputs={"prediction": model(x), "ground_truth_answer": y},
                             response_role_description="evaluation of the prediction by the task's scorer"))
        if not losses:
            out["error"] = "no example entered the loss (all correct)"
            return out
        total = tg.sum(losses)
        singleton = tg.config.SingletonBackwardEngine()
        saved, singleton.engine = singleton.engine, None  # backward() refuses a global engine plus ours
        try:
            total.backward(engine)
            system_prompt.gradients = sorted(system_prompt.gradients, key=lambda g: (
                str(system_prompt.gradients_context.get(g)), g.value))  # a stable order: see the module docstring
            out["gradient"] = system_prompt.get_gradient_text()
            opt = tg.TGD(parameters=[system_prompt], engine=engine, constraints=list(s.constraints) or None,
                         gradient_memory=s.gradient_memory)
            if s.gradient_memory:
                opt.gradient_memory_dict[system_prompt] = [{"value": v} for v in memory]
            opt.step()
            out["reply"] = engine.last_reply
        except IndexError:  # the optimizer reply had no <IMPROVED_VARIABLE> tags: the step changes nothing
            out["reply"] = engine.last_reply
            out["error"] = "the optimizer reply had no <IMPROVED_VARIABLE>...</IMPROVED_VARIABLE> tags"
        except LLMError as exc:  # e.g. the gradients overflow the prompt model's context: this step fails
            if not rejected(exc):
                raise
            out["error"] = f"a backward/optimizer request was rejected: {exc}"
            system_prompt.set_value(prompt)
        finally:
            singleton.engine = saved
        out["prompt"] = system_prompt.value
        return out

    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                 callbacks: Callbacks | None = None, on_candidate: CandidateSink | None = None,
                 checkpoint_dir: Path | None = None, context: RunContext | None = None) -> OptimizeResult:
        s = self.settings
        spend = Spend(task.evaluator.llm, prompt_llm)
        journal = Journal(Path(checkpoint_dir) / "textgrad.jsonl" if checkpoint_dir else None,
                          {"method": "textgrad", "seed": seed, "task": task.name, "initial": task.initial_prompt,
                           "settings": s.model_dump()})
        reporter = Reporter(on_candidate, callbacks)
        engine = harness_engine(prompt_llm, temperature=s.temperature, max_tokens=s.agent_max_tokens, seed=seed)
        self.engine = engine
        val = head(task.val, s.val_size)

        def judge(prompt: str, it: int, mb: list) -> dict[str, Any]:
            return evaluate(task, prompt, val or mb, f"textgrad judge {it}")

        root = current = Candidate("tg-0", task.initial_prompt, None, 0, meta={"stage": "search", "admitted": True})
        memory: list[str] = []
        mark = spend.mark()
        with reporter.until_stop():
            if val:
                res = journal.step("judge-0", lambda: judge(task.initial_prompt, 0, []))
                root.val_score = res["score"]
                root.meta.update(val_example_ids=res["example_ids"], judged_on="val")
            for it in range(1, s.iterations + 1):
                reporter.check_stop()
                mb = minibatch(task.train, s.minibatch, seed, "tg", it)
                step = journal.step(f"step-{it}", lambda mb=mb, parent=current.prompt: self._step(
                    task, parent, mb, engine, memory))
                restored = f"step-{it}" in journal.restored
                if it == 1:  # the root's minibatch score is the first forward pass
                    root.train_score = step["parent_score"]
                    root.meta.update(example_ids=step["example_ids"], cost=spend.cost(mark))
                    reporter.add(root, restored=restored)
                    mark = spend.mark()
                    reporter.generation_end(0)
                memory.append(step["gradient"])
                new = step["prompt"]
                cand = Candidate(f"tg-{it}", new, current.id, it,
                                 meta={"stage": "search", "agent_reply": step.get("reply"),
                                       "gradient": step.get("gradient"),
                                       "parent_minibatch_score": step["parent_score"],
                                       "parent_example_ids": step["example_ids"]})
                if step["error"] or new == current.prompt:
                    cand.meta.update(admitted=False, skipped=step["error"] or "the step left the prompt unchanged",
                                     cost=spend.cost(mark))
                    reporter.add(cand, restored=restored)
                    mark = spend.mark()
                    reporter.generation_end(it)
                    continue
                res = journal.step(f"judge-{it}", lambda new=new, it=it, mb=mb: judge(new, it, mb))
                if val:
                    cand.val_score, ref = res["score"], current.val_score or 0.0
                    cand.meta["val_example_ids"] = res["example_ids"]
                else:  # judged on the step's own minibatch, against the parent's score there
                    cand.train_score, ref = res["score"], step["parent_score"]
                    cand.meta["example_ids"] = res["example_ids"]
                dropped = res["score"] < ref
                cand.meta.update(admitted=not (s.revert and dropped), reverted=s.revert and dropped,
                                 judged_on="val" if val else "train", cost=spend.cost(mark))
                reporter.add(cand, restored=restored and f"judge-{it}" in journal.restored)
                mark = spend.mark()
                reporter.generation_end(it)
                if cand.meta["admitted"]:
                    current = cand
        if root.id not in reporter.by_id:  # no step ran (iterations 0, or the budget stopped step 1)
            root.meta.setdefault("cost", spend.cost(mark))
            reporter.add(root)
        return OptimizeResult(current, reporter.candidates,
                              base_extra(spend, reporter.stopped, engine_calls=engine.calls))
