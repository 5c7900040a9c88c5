"""MBPP: basic Python programming problems; the reply's code runs against the task's asserts in a sandbox.

Extraction: the last fenced Python block that defines the function the tests call (else the longest
Python block; an unclosed fence, as in a reply cut off at the token cap, runs to the end), else bare code
at the start of a line (harness.answers.extract_code). Scoring: the sandbox runs setup, the program and
the calls the tests make into it, exec'd into one fresh dict as the field's exec protocol does, and sends
back the values; the expected side and the comparison are evaluated in the harness's process
(sandboxes/README.md). Score.reason is the sandbox's reason ("passed", "failed: <assert> (got ...)",
"exited before tests ran (...)", "timeout", ...).
"""

from __future__ import annotations

import builtins
import json
import re
from typing import Any

from harness import answers, data, splits
from harness.benchmarks.base import Example, RowsBenchmark, Score, Split, register
from harness.config import ConfigError
from sandboxes.base import Program, RunResult

VARIANTS = {"full": "mbpp/mbpp.jsonl", "sanitized": "mbpp/sanitized-mbpp.json"}
FORMAT = "Write the Python function in a single ```python code block."


def entry_point(test: str) -> str | None:
    """The function a test assert calls (the first called name that is not a builtin)."""
    for name in re.findall(r"([A-Za-z_]\w*)\s*\(", test):
        if not hasattr(builtins, name) and name not in ("isclose", "math"):
            return name
    return None


def feedback(result: RunResult, n_tests: int) -> str:
    if result.passed:
        return f"passed all {n_tests} tests"
    tail = result.output.strip()[-600:]
    head = result.reason if result.reason.startswith("failed") else f"failed: {result.reason}"
    return head + (f"\n{tail}" if tail else "")


class SandboxUser:
    """Holds the sandbox a code benchmark scores through.

    `sandbox` is a Sandbox object (the caller owns it and closes it) or a backend name such as "docker"
    (then the benchmark makes it on first use with sandboxes.make_sandbox and closes it in close()).
    """

    def __init__(self, sandbox: Any) -> None:
        self._sandbox = None if isinstance(sandbox, str) else sandbox
        self._backend = sandbox if isinstance(sandbox, str) else None
        self._runs: dict[Program, RunResult] = {}  # each distinct program is run once

    def run_programs(self, programs: list[Program]) -> list[RunResult]:
        """sandbox.run_many, each distinct (code, tests, setup) once per benchmark: the same program in
        another reply (other prose around it, a cached reply, the initial prompt's reply in every cell) gets
        the verdict it got before instead of a second run. A timeout is not kept (a loaded machine may cause
        it): that program runs again."""
        now = {p: self._runs[p] for p in programs if p in self._runs}
        missing = [p for p in dict.fromkeys(programs) if p not in now]
        if missing:
            for p, r in zip(missing, self.sandbox.run_many(missing), strict=True):
                now[p] = r
                if r.reason != "timeout":
                    self._runs[p] = r
        return [now[p] for p in programs]

    @property
    def sandbox(self) -> Any:
        if self._sandbox is None:
            if self._backend is None:
                raise RuntimeError(
                    "Scoring Python code needs a sandbox: pass sandbox=sandboxes.make_sandbox('docker') "
                    "(or a backend name such as sandbox='docker') when creating the benchmark."
                )
            from sandboxes import make_sandbox

            self._sandbox = make_sandbox(self._backend)
        return self._sandbox

    def close(self) -> None:
        if self._backend is not None and self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None


def run_code(user: SandboxUser, items: list[tuple[str | None, str, str, int]]) -> list[Score]:
    """Score (code, tests, setup, n_tests) items in one sandbox batch; missing code fails without a run."""
    todo = [i for i, (code, *_rest) in enumerate(items) if code]
    programs = [Program(items[i][0] or "", items[i][1], items[i][2]) for i in todo]
    results = dict(zip(todo, user.run_programs(programs) if programs else [], strict=True))
    scores = []
    for i, (code, _tests, _setup, n) in enumerate(items):
        if not code:
            scores.append(Score(0.0, False, "no code found: put the function in a ```python block.", None,
                                "no code found"))
            continue
        r = results[i]
        scores.append(Score(float(r.passed), r.passed, feedback(r, n), code, r.reason))
    return scores


@register("mbpp")
class MBPP(SandboxUser, RowsBenchmark):
    @classmethod
    def needs_sandbox(cls, options: dict[str, Any]) -> bool:
        return True

    description = (
        "MBPP (Mostly Basic Python Problems): short Python programming tasks described in one sentence, "
        "each followed by one example assert that shows the required function name and signature. The "
        "model must write the function in a ```python code block (no input() calls, no test code needed); "
        "the code is run in a sandbox against the task's hidden asserts (usually three) and passes only if "
        "all of them pass. Score: fraction of tasks passed (pass@1)."
    )
    max_tokens = 512
    option_names = ("variant",)

    def __init__(self, data_dir: str | None = None, sandbox: Any = None, **options: Any) -> None:
        RowsBenchmark.__init__(self, data_dir, **options)
        SandboxUser.__init__(self, sandbox)
        self.variant = options.get("variant", "full")
        if self.variant not in VARIANTS:
            raise ConfigError(f"mbpp variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}.")

    def read_rows(self, hub: bool) -> list[dict[str, Any]]:
        """Records normalised to task_id, text, test_list, setup, test_setup and code (the reference).

        setup (sanitized's test_imports) runs before the program; test_setup (full's test_setup_code) runs
        after it, just before the asserts, because it builds test objects from the program's own classes
        (tasks 367 and 927 call Node(...) defined by the solution).
        """
        if hub:
            raw = data.hub_rows("google-research-datasets/mbpp", self.variant)
        else:
            path = data.local_file(self.data_dir, VARIANTS[self.variant], f"MBPP ({self.variant})")
            raw = json.loads(path.read_text()) if path.suffix == ".json" else data.read_jsonl(path)
        return [
            {
                "task_id": int(r["task_id"]),
                "text": r.get("text") or r.get("prompt") or "",
                "test_list": list(r["test_list"]),
                "setup": "\n".join(r.get("test_imports") or []),
                "test_setup": r.get("test_setup_code") or "",
                "code": r.get("code", ""),
            }
            for r in raw
        ]

    def load(self, split: Split, seed: int) -> list[Example]:
        by_id = {r["task_id"]: r for r in self.rows()}
        ids = splits.id_range_split(list(by_id), split, seed, f"mbpp-{self.variant}", self.options)
        out = []
        for i in ids:
            r = by_id[i]
            question = (
                f"{r['text'].strip()}\nYour code should pass this test:\n{r['test_list'][0]}\n\n{FORMAT}"
            )
            meta = {
                "setup": r["setup"],
                "test_setup": r["test_setup"],
                "entry_point": entry_point(r["test_list"][0]),
                "variant": self.variant,
            }
            out.append(Example(str(i), question, list(r["test_list"]), meta))
        return out

    def _item(self, example: Example, response: str) -> tuple[str | None, str, str, int]:
        code = answers.extract_code(response or "", example.meta.get("entry_point"))
        tests = "\n".join([t for t in (example.meta.get("test_setup", ""), *example.answer) if t])
        return code, tests, example.meta.get("setup", ""), len(example.answer)

    def score(self, example: Example, response: str) -> Score:
        return self.score_many([example], [response])[0]

    def score_many(self, examples: list[Example], responses: list[str]) -> list[Score]:
        items = [self._item(e, r) for e, r in zip(examples, responses, strict=True)]
        return run_code(self, items)
