"""The prompt agent: an LLM with its own system prompt p~ that writes task prompts (and itself)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from string import Template

from harness.aio import run_sync
from harness.llm.client import ChatResult, LLMClient, LLMError
from sepo.feedback import FeedbackItem, render

# What the prompt agent's own "task" is, shown when it rewrites itself.
PROMPT_TASK = ("Given a task description, a task agent's current system prompt, an archive of earlier "
               "prompts with scores, and graded examples (failures and successes), write a better system "
               "prompt for the task agent. Prompts are scored by the task agent's accuracy.")


@cache
def load_text(name: str) -> str:
    """A prompt file shipped in sepo/prompts/."""
    return files("sepo").joinpath("prompts", name).read_text(encoding="utf-8")


def initial_prompt_agent() -> str:
    """The hand-written prompt-agent system prompt p~0."""
    return load_text("prompt_agent.md").strip()


TASK_TAG = "prompt"  # a task agent's prompt, as task_request.md and p~0 ask
SELF_TAG = "agent_prompt"  # self-rewrites use their own tag: p~ itself talks about <prompt> tags
_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


def tagged_prompt(reply: str, tag: str = "prompt") -> str:
    """The strict reading of a reply, or "": for task prompts the last non-empty <prompt>..</prompt>
    block; for self-rewrites (SELF_TAG) everything from the first opening tag to the last closing one,
    since a prompt-agent prompt may itself mention its tags."""
    if tag == SELF_TAG:
        low = reply.lower()
        i, j = low.find(f"<{tag}>"), low.rfind(f"</{tag}>")
        return reply[i + len(tag) + 2: j].strip() if 0 <= i < j else ""
    pattern = re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL | re.IGNORECASE)
    tagged = [m.strip() for m in pattern.findall(reply) if m.strip()]
    return tagged[-1] if tagged else ""


def extract_prompt(reply: str, tag: str = "prompt") -> str:
    """The child prompt from a reply: the last non-empty <tag>..</tag>, else the text after an
    unclosed <tag> (a truncated reply), else the last fenced block, else the whole reply stripped."""
    pattern = re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL | re.IGNORECASE)
    tagged = [m.strip() for m in pattern.findall(reply) if m.strip()]
    if tagged:
        return tagged[-1]
    low, opener, closer = reply.lower(), f"<{tag}>", f"</{tag}>"
    if opener in low:
        rest = reply[low.rindex(opener) + len(opener):].strip()
        if rest:
            return rest
    elif closer in low:  # the opening tag was forgotten: the prompt ends at the closing one
        reply = reply[: low.rindex(closer)]
    fenced = [m.strip() for m in _FENCE.findall(reply) if m.strip()]
    if fenced:
        return fenced[-1]
    return _untagged(reply)


# Headers of our request templates: a reply that echoes them has ended its prompt before them.
_ECHO = ("<parent_prompt>", "# Parent system prompt", "# Parent: your current", "# Archive:",
         "# Feedback on the parent", "# Feedback: task prompts", "<candidate>", "</candidate>",
         "## Example 1: FAILURE", "## Example 1: SUCCESS", "Write an improved system prompt for this task")
_LEAD_IN = re.compile(r"^(?:[^\n]*\b(improved|new|revised|updated|better)\b[^\n]*\bprompt\b[^\n]*:"
                      r"|#{1,6}[^\n]*\b(improved|new|revised|updated|better)\b[^\n]*\bprompt\b[^\n]*)[ \t]*$",
                      re.IGNORECASE | re.MULTILINE)  # "Here is the new prompt:" or "### Improved System Prompt"


def _untagged(reply: str) -> str:
    """Best effort for a reply without tags (small models): drop an echo of the request, then keep
    what follows the last lead-in line such as "Here is the improved system prompt:"."""
    text = reply
    cuts = [i for m in _ECHO if (i := text.find(m)) > 0]
    if cuts:
        text = text[: min(cuts)]
    lead = list(_LEAD_IN.finditer(text))
    if lead and text[lead[-1].end():].strip():
        text = text[lead[-1].end():]
    return text.strip()


RETRY = {
    "truncated": ("Your reply was cut off at the length limit before it ended, so the prompt may be incomplete. "
                  "Reply again: at most two sentences of analysis, then the complete prompt between <{tag}> "
                  "and </{tag}>, and nothing after it."),
    "untagged": ("Your reply did not hold the new prompt between <{tag}> and </{tag}>. Reply again: at most two "
                 "sentences of analysis, then the complete prompt between <{tag}> and </{tag}>, and nothing "
                 "after it."),
}


@dataclass
class Proposal:
    """What the prompt agent wrote: the child prompt (None when the reply was unusable twice), every raw
    reply (the first, and the retry if there was one) and why it was skipped."""

    text: str | None
    replies: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # per reply: "", "truncated" or "untagged"
    skipped: str | None = None

    @property
    def reply(self) -> str:
        return self.replies[-1] if self.replies else ""


def judge(res: ChatResult, tag: str) -> tuple[str, str]:
    """(prompt, problem): a reply cut off at the token cap is "truncated" even when its tags closed (its
    end is lost); one without a non-empty <tag>..</tag> block is "untagged"."""
    if res.finish_reason == "length":
        return "", "truncated"
    text = tagged_prompt(res.text, tag)
    return (text, "") if text else ("", "untagged")


class PromptAgent:
    """`lenient`: after the one retry, accept a best-effort extraction of an untagged (not truncated) reply
    (fences, "Here is the prompt:" lead-ins), for small local models that forget tags."""

    def __init__(self, llm: LLMClient, system_prompt: str, *, temperature: float | None = 0.7,
                 max_tokens: int | None = 1500, lenient: bool = False) -> None:
        self.llm = llm
        self.system_prompt = system_prompt
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.lenient = lenient

    def _ask(self, user: str, seed: int | None, history: Sequence[dict[str, str]] = ()) -> ChatResult:
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": user},
                    *history]
        return run_sync(self.llm.chat(messages, temperature=self.temperature, max_tokens=self.max_tokens,
                                      seed=seed))

    def ask_for_prompt(self, user: str, seed: int | None, tag: str = "prompt") -> Proposal:
        """One request; a truncated or untagged reply is retried once with the reason, then given up. A request
        the endpoint rejects (HTTP 400, e.g. over the context) fails this proposal only; other LLM errors
        (keys, model names) still end the run."""
        prop = Proposal(None)
        history: list[dict[str, str]] = []
        for attempt in range(2):
            try:
                res = self._ask(user, seed, history)
            except LLMError as exc:  # e.g. HTTP 400, a request over the model's context: this proposal fails
                if "rejected the request" not in str(exc):
                    raise
                prop.problems.append("rejected")
                prop.skipped = f"the endpoint rejected the request: {exc}"
                return prop
            text, problem = judge(res, tag)
            prop.replies.append(res.text)
            prop.finish_reasons.append(res.finish_reason)
            prop.problems.append(problem)
            if not problem:
                prop.text = text
                return prop
            if attempt == 0:
                history = [{"role": "assistant", "content": res.text},
                           {"role": "user", "content": RETRY[problem].format(tag=tag)}]
        if self.lenient and prop.problems[-1] == "untagged" and (text := extract_prompt(prop.reply, tag)):
            prop.text = text
            prop.problems[-1] = "untagged (lenient extraction)"
            return prop
        prop.skipped = f"{prop.problems[0]} reply, then {prop.problems[1]} again after one retry"
        return prop

    @staticmethod
    def request(template: str, task_description: str, parent_prompt: str, archive_summary: str,
                feedback: Sequence[FeedbackItem], parent_score: float | None = None) -> str:
        score = "not scored" if parent_score is None else f"{parent_score:.3f}"
        return Template(load_text(template)).safe_substitute(
            task_description=task_description.strip() or "(no description given)",
            parent_prompt=parent_prompt.strip() or "(empty: the agent currently has no system prompt)",
            parent_score=score, archive=archive_summary.strip() or "(none)", feedback=render(feedback))

    def propose(self, task_description: str, parent_prompt: str, archive_summary: str,
                feedback: Sequence[FeedbackItem], *, parent_score: float | None = None,
                seed: int | None = None) -> Proposal:
        """A child task prompt (between <prompt> tags)."""
        user = self.request("task_request.md", task_description, parent_prompt, archive_summary, feedback,
                            parent_score)
        return self.ask_for_prompt(user, seed, TASK_TAG)

    def propose_self(self, archive_summary: str, feedback: Sequence[FeedbackItem], *,
                     parent_score: float | None = None, seed: int | None = None) -> Proposal:
        """A rewrite of the agent's own system prompt (pre-training): p~ rewrites p~ (<agent_prompt> tags)."""
        user = self.request("self_request.md", PROMPT_TASK, self.system_prompt, archive_summary, feedback,
                            parent_score)
        return self.ask_for_prompt(user, seed, SELF_TAG)
