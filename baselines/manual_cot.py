"""Manual-CoT: a fixed, hand-written chain-of-thought system prompt per answer format; no optimization.

It is the reference every method is compared with. Its one candidate is scored like every method's
candidates: on a seeded train minibatch (`minibatch`, 16 by default) and, with `score_val`, on the
validation split (first `val_size` examples), both through the task's evaluator, so the budget counts
them. The answer format comes from the benchmark (custom tasks: from their scorer); `format` or `prompt`
override it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from baselines.common import Journal, Reporter, Settings, Spend, base_extra, evaluate, head, minibatch, parse_settings
from harness.llm.client import LLMClient
from harness.optimizer import Callbacks, Candidate, CandidateSink, OptimizationTask, OptimizeResult, RunContext

Format = Literal["boxed", "choice", "python", "grid", "sudoku", "generic"]

_STEPS = ("Think step by step: restate what is asked, work through the reasoning carefully, and check the "
          "result before answering.")
PROMPTS: dict[str, str] = {
    "boxed": "You are a careful problem solver. " + _STEPS + " Then give the final answer in \\boxed{...} "
             "on the last line, e.g. \\boxed{42}.",
    "choice": "You are a careful expert. " + _STEPS + " Consider every option before choosing. End with a "
              "line 'Answer: X', where X is the letter of the correct option.",
    "python": "You are an expert Python programmer. Think step by step: read the task and the example test, "
              "note the required function name, arguments and edge cases, and plan briefly. Then write the "
              "complete function in a single ```python code block, with no input() calls and no test code.",
    "grid": "You are a careful pattern solver. Think step by step: study each input/output pair, state the "
            "transformation rule, check it against every example, then apply it to the test input. End with "
            "the output grid: one row per line, digits separated by spaces.",
    "sudoku": "You are a careful Sudoku solver. Think step by step: for each blank, use the digits already in "
              "its row, column and box to find the only possible value, and check every row, column and box "
              "at the end. End with the completed grid: one row per line, digits separated by spaces.",
    "generic": "You are a careful assistant. " + _STEPS + " Then give the final answer in the format the "
               "question asks for.",
}
BENCHMARK_FORMATS = {"aime": "boxed", "gpqa": "choice", "mbpp": "python", "arc": "grid", "sudoku": "sudoku"}
SCORER_FORMATS = {"exact": "boxed", "numeric": "boxed", "math": "boxed", "choice": "choice", "python": "python"}


def answer_format(task: OptimizationTask) -> str:
    bench = task.benchmark
    if bench.name in BENCHMARK_FORMATS:
        return BENCHMARK_FORMATS[bench.name]
    scorer = getattr(bench, "scorer", None)
    return SCORER_FORMATS.get(str(scorer), "generic")


def cot_prompt(task: OptimizationTask, fmt: str | None = None) -> str:
    return PROMPTS[fmt or answer_format(task)]


class ManualCoTSettings(Settings):
    format: Format | None = Field(None, description="answer format (None: from the benchmark)")
    prompt: str | None = Field(None, description="the prompt itself (overrides format)")
    minibatch: int = Field(16, ge=0, description="train examples the candidate is scored on (0: none)")
    score_val: bool = Field(True, description="also score it on the validation split")
    val_size: int | None = Field(None, ge=1, description="cap on validation examples")


class ManualCoT:
    name = "manual-cot"
    Settings = ManualCoTSettings

    def __init__(self, settings: ManualCoTSettings | dict[str, Any] | None = None, **overrides: Any) -> None:
        self.settings = parse_settings(ManualCoTSettings, settings, overrides)

    def optimize(self, task: OptimizationTask, prompt_llm: LLMClient, *, seed: int,
                 callbacks: Callbacks | None = None, on_candidate: CandidateSink | None = None,
                 checkpoint_dir: Path | None = None, context: RunContext | None = None) -> OptimizeResult:
        s = self.settings
        prompt = s.prompt if s.prompt is not None else cot_prompt(task, s.format)
        spend = Spend(task.evaluator.llm, prompt_llm)
        journal = Journal(Path(checkpoint_dir) / "manual-cot.jsonl" if checkpoint_dir else None,
                          {"method": "manual-cot", "seed": seed, "task": task.name, "prompt": prompt,
                           "settings": s.model_dump()})
        cand = Candidate("cot-0", prompt, None, 0, meta={"stage": "fixed", "admitted": True,
                                                          "format": s.format or answer_format(task)})
        reporter = Reporter(on_candidate, callbacks)
        mark = spend.mark()
        with reporter.until_stop():
            reporter.check_stop()
            if s.minibatch:
                mb = minibatch(task.train, s.minibatch, seed, task.name, "manual-cot")
                res = journal.step("train", lambda: evaluate(task, prompt, mb, "manual-cot train"))
                cand.train_score, cand.meta["example_ids"] = res["score"], res["example_ids"]
            if s.score_val and task.val:
                val = head(task.val, s.val_size)
                res = journal.step("val", lambda: evaluate(task, prompt, val, "manual-cot val"))
                cand.val_score, cand.meta["val_example_ids"] = res["score"], res["example_ids"]
        cand.meta["cost"] = spend.cost(mark)
        reporter.add(cand, restored="train" in journal.restored and reporter.stopped is None)
        reporter.generation_end(0)
        return OptimizeResult(cand, reporter.candidates, base_extra(spend, reporter.stopped))
