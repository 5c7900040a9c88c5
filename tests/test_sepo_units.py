"""SePO building blocks: parent selection, admission, archive I/O, reply parsing, feedback balance."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from sepo.agent import PromptAgent, extract_prompt, initial_prompt_agent, load_text
from sepo.archive import Archive, Entry, admits, sigmoid
from sepo.evolve import EvolveSettings, derive_seed
from sepo.feedback import FeedbackItem, balance, render, truncate


def _archive(specs: list[tuple[float, int]], **kw) -> Archive:
    """Candidates c0.. with the given scores, each with `children` rejected children (never parents)."""
    a = Archive(**kw)
    for i, (score, _) in enumerate(specs):
        a.add(Entry(f"c{i}", f"prompt {i}", None, 0, score))
    for i, (_, children) in enumerate(specs):
        for j in range(children):
            a.add(Entry(f"c{i}-{j}", "rejected", f"c{i}", 1, 1.0, admitted=False))
    return a


def test_parent_selection_matches_dgm_formula_in_20k_draws():
    specs = [(0.2, 0), (0.5, 0), (0.8, 0), (0.8, 3), (0.95, 1), (0.6, 1)]
    a = _archive(specs)
    assert [e.children for e in a.entries[:6]] == [c for _, c in specs]
    rng = random.Random(1234)
    n = 20_000
    counts = Counter(a.select_parent(rng).id for _ in range(n))
    w = [sigmoid(10 * (s - 0.5)) / (1 + c) for s, c in specs]
    expected = {f"c{i}": wi / sum(w) for i, wi in enumerate(w)}
    assert set(counts) <= set(expected)  # rejected candidates are never parents
    for cid, p in expected.items():
        sd = math.sqrt(p * (1 - p) / n)
        assert abs(counts[cid] / n - p) < max(4 * sd, 0.003), (cid, counts[cid] / n, p)
    # high scores preferred, many children penalised
    assert counts["c2"] > counts["c1"] > counts["c0"]
    assert counts["c2"] > 2.5 * counts["c3"]  # same score, 3 children: weight / 4


def test_selection_sees_the_archive_as_it_stood_when_the_generation_started():
    a = Archive()
    a.add(Entry("r", "root", None, 0, 0.5))
    a.add(Entry("k1", "child", "r", 1, 0.9))
    a.add(Entry("k2", "child 2", "r", 1, 0.9))
    rng = random.Random(0)
    assert {a.select_parent(rng, before=1).id for _ in range(50)} == {"r"}  # siblings never parent each other
    (_, w_root_then), = a.weights(before=1)
    w_now = {e.id: w for e, w in a.weights()}
    assert w_root_then == pytest.approx(0.5) and w_now["r"] == pytest.approx(0.5 / 3)


def test_selection_settings_lam_alpha0():
    a = _archive([(0.3, 0), (0.7, 0)], lam=1.0, alpha0=0.3)
    (_, w0), (_, w1) = a.weights()
    assert w0 == pytest.approx(0.5) and w1 == pytest.approx(sigmoid(0.4))


def test_linear_mode_always_the_latest_admitted():
    a = _archive([(0.9, 0), (0.1, 0), (0.5, 2)], linear=True)
    rng = random.Random(0)
    assert {a.select_parent(rng).id for _ in range(200)} == {"c2"}
    assert a.summary("c2") == "(no archive in this run)"


@pytest.mark.parametrize(("child", "parent", "tol", "ok"), [
    (0.5, 0.5, 0.0, True),  # a tie enters with tolerance 0
    (0.4375, 0.5, 0.0, False),  # one example worse on 16
    (0.4375, 0.5, 0.0625, True),  # exactly at the boundary (float error absorbed)
    (0.4375, 0.5, 0.06, False),
    (0.1, 0.5 + 0.1 + 0.2, 0.7, True),  # 0.1 >= 0.8 - 0.7 despite 0.8 - 0.7 = 0.10000000000000009
    (0.0, 1.0, None, True),  # None keeps every child
    (0.0, None, 0.0, True),  # unscored parent
    (1.0, 0.5, 0.0, True),
])
def test_admission_tolerance_edges(child, parent, tol, ok):
    assert admits(child, parent, tol) is ok


def test_archive_json_round_trip_and_children_counts():
    a = Archive(lam=5.0, alpha0=0.4)
    a.add(Entry("r", "root", None, 0, 0.5, feedback=[FeedbackItem("e1", "q", "r", 0.0, False, "no")]))
    a.add(Entry("k1", "child", "r", 1, 0.6))
    a.add(Entry("k2", "worse", "r", 1, 0.1, admitted=False))
    assert a["r"].children == 2  # rejected children count too (documented choice)
    b = Archive.from_dict(a.to_dict())
    assert b == a and b.best().id == "k1" and [e.id for e in b.ranked()] == ["k1", "r"]
    assert "k2" not in b.summary("r") and "k1" in b.summary("r")


def test_extract_prompt_variants():
    assert extract_prompt("Analysis.\n<prompt>\nBe exact.\n</prompt>") == "Be exact."
    assert extract_prompt("<prompt>old</prompt> then <PROMPT>new</PROMPT>") == "new"
    assert extract_prompt("<prompt></prompt>\n<prompt>x</prompt>") == "x"
    assert extract_prompt("thinking...\n<prompt>\nTruncated at the end") == "Truncated at the end"
    assert extract_prompt("Here:\n```text\nFenced prompt\n```\nbye") == "Fenced prompt"
    assert extract_prompt("  just a prompt \n") == "just a prompt"
    forgot_opener = "### Analysis\nThe parent is vague.\n\n### Improved System Prompt\nBe exact.\n</prompt>\n"
    assert extract_prompt(forgot_opener) == "Be exact."
    echo = ("Issues: the format.\n\nHere is the improved system prompt:\n\n# Task\nSolve 4x4 Sudoku.\n\n"
            "# Parent system prompt (score 0.000)\n<parent_prompt>\nSolve the puzzle.\n</parent_prompt>")
    assert extract_prompt(echo) == "# Task\nSolve 4x4 Sudoku."
    plain = "Be brief. Give the answer as a new prompt: no."
    assert extract_prompt(plain) == plain
    own = "Reply with <prompt> and </prompt> tags.\nRULE-1"
    assert extract_prompt(f"Better:\n<agent_prompt>\n{own}\n</agent_prompt>", "agent_prompt") == own


def test_balance_is_one_to_one():
    fails = [FeedbackItem(f"f{i}", "q", "r", 0.0, False, "") for i in range(5)]
    wins = [FeedbackItem(f"w{i}", "q", "r", 1.0, True, "") for i in range(2)]
    got = balance(fails + wins, 3)
    assert [i.example_id for i in got] == ["f0", "f1", "w0", "w1"]
    assert [i.example_id for i in balance(fails, 3)] == ["f0", "f1", "f2"]
    assert balance([], 3) == []
    assert "FAILURE" in render(got) and "SUCCESS" in render(got)


def test_truncate_keeps_head_and_tail():
    t = truncate("H" * 500 + "T" * 500, 100)
    assert t.startswith("H" * 66) and t.endswith("T" * 34) and "cut" in t
    assert truncate("short", 100) == "short"


def test_request_holds_task_parent_archive_and_feedback():
    items = [FeedbackItem("e", "What is 2+2?", "5", 0.0, False, "expected 4")]
    user = PromptAgent.request("task_request.md", "Add numbers.", "Be careful.", "## c1 (score 0.9)", items, 0.25)
    for part in ("Add numbers.", "<parent_prompt>\nBe careful.\n</parent_prompt>", "score 0.250", "## c1",
                 "What is 2+2?", "expected 4", "<prompt>"):
        assert part in user
    assert "$" not in user
    assert "<prompt>" in initial_prompt_agent() and "$parent_prompt" in load_text("self_request.md")


def test_settings_defaults_and_derived_seeds():
    s = EvolveSettings()
    assert (s.generations, s.children, s.minibatch, s.lam, s.alpha0, s.tolerance) == (5, 2, 16, 10.0, 0.5, 0.0)
    assert derive_seed(1, "a", 2) == derive_seed(1, "a", 2) != derive_seed(1, "a", 3)
    with pytest.raises(ValueError):
        EvolveSettings(bogus=1)


def test_strict_tags_and_the_self_rewrite_reads_the_outermost_block():
    from sepo.agent import SELF_TAG, tagged_prompt

    assert tagged_prompt("Analysis.\n<prompt>Be exact.</prompt>") == "Be exact."
    assert tagged_prompt("Analysis only, no tags.") == "" and tagged_prompt("<prompt> </prompt>") == ""
    assert tagged_prompt("<prompt>cut off before the end") == ""
    own = "You write prompts.\nTask prompts go between <prompt> and </prompt>; self-rewrites between " \
          "<agent_prompt> and </agent_prompt>."
    assert tagged_prompt(f"Why.\n<agent_prompt>\n{own}\n</agent_prompt>", SELF_TAG) == own


def test_reply_judgement_truncated_untagged_ok():
    from harness.llm.client import ChatResult
    from sepo.agent import judge

    def res(text, finish="stop"):
        return ChatResult(text, 1, 1, False, 0.0, finish)

    assert judge(res("<prompt>x</prompt>"), "prompt") == ("x", "")
    assert judge(res("<prompt>x</prompt> and then", "length"), "prompt") == ("", "truncated")
    assert judge(res("x"), "prompt") == ("", "untagged")


def test_tags_agree_between_the_prompt_agent_and_its_requests():
    p0 = initial_prompt_agent()
    task_req, self_req = load_text("task_request.md"), load_text("self_request.md")
    assert "<prompt>" in p0 and "</prompt>" in p0 and "<prompt>" in task_req and "</prompt>" in task_req
    assert "<agent_prompt>" not in p0  # p~ never carries the self tag, so a rewrite's block stays intact
    assert "rewrite your own system prompt" in p0 and "the tags that request names" in p0
    assert "<agent_prompt> and </agent_prompt>" in self_req and "<prompt> and </prompt>" in self_req


def test_archive_find_ignores_skipped_entries():
    a = Archive()
    a.add(Entry("r", "root", None, 0, 0.5))
    a.add(Entry("s", "other", "r", 1, None, admitted=False, meta={"skipped": "untagged"}))
    assert a.find(" root \n").id == "r" and a.find("other") is None


def test_draws_leave_out_excluded_ids_and_differ_by_stage():
    from harness.benchmarks.base import Example
    from sepo.stages import draw

    exs = [Example(f"e{i}", "q", "a") for i in range(20)]
    d = draw(exs, 8, 0, "finetune", "t", 1, exclude={"e0", "e1", "e2"})
    assert len(d) == 8 and not {"e0", "e1", "e2"} & {e.id for e in d}
    assert draw(exs, 8, 0, "finetune", "t", 1) == draw(exs, 8, 0, "finetune", "t", 1)
    assert draw(exs, 8, 0, "finetune", "t", 1) != draw(exs, 8, 0, "pretrain-score", "t", 1)
    assert len(draw(exs, 30, 0, "x", exclude={"e3"})) == 19


def test_fingerprint_differences_name_the_changed_paths():
    from sepo.evolve import differences

    old = {"a": 1, "run_key": {"models": {"task": "m1"}, "ids": [1, 2]}}
    new = {"a": 1, "run_key": {"models": {"task": "m2"}, "ids": [1, 2], "extra": 0}}
    assert differences(old, new) == ["run_key.extra", "run_key.models.task"]


def test_feedback_shrinks_to_keep_scoring_draws_disjoint_on_small_train_splits():
    from types import SimpleNamespace

    from harness.config import ConfigError
    from sepo.stages import fit_feedback

    def task(n):
        return SimpleNamespace(name="t", train=list(range(n)))

    assert fit_feedback(task(24), 2, 8, 3) == (3, 0)  # 12 shown, 12 left >= 8
    assert fit_feedback(task(12), 2, 4, 3) == (2, 0)  # 8 shown, 4 left for a minibatch of 4
    assert fit_feedback(task(10), 1, 3, 1, 2) == (1, 2)  # pre-training: 2 + 4 shown, 4 left
    assert fit_feedback(task(8), 1, 3, 1, 3) == (1, 1)
    assert fit_feedback(task(3), 2, 4, 1) == (1, 0)  # too small to keep apart: draws overlap (issue 19: AIME)
    with pytest.raises(ConfigError, match="at least 2"):
        fit_feedback(task(1), 2, 4, 1)


def test_draw_on_a_small_split_overlaps_the_feedback_examples_instead_of_failing():
    from harness.benchmarks.base import Example
    from sepo.stages import draw

    train = [Example(id=str(i), question=f"q{i}", answer=i) for i in range(10)]  # AIME's train split: 10
    shown = {str(i) for i in range(8)}  # 2 per side x 2 parents
    got = draw(train, 16, 0, "g1", exclude=shown)
    assert len(got) == 5 and {"8", "9"} <= {e.id for e in got}  # half the split, the unshown ones first
    assert got == draw(train, 16, 0, "g1", exclude=shown)  # deterministic
    roomy = draw(train, 4, 0, "g1", exclude={"0", "1"})
    assert len(roomy) == 4 and not {"0", "1"} & {e.id for e in roomy}  # disjoint when the split allows
