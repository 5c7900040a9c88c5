"""MBPP: question format, code extraction, sandbox plumbing (with a double) and real runs in Docker."""

from __future__ import annotations

import os

import pytest

from harness import answers
from harness.benchmarks import get_benchmark
from harness.benchmarks.mbpp import entry_point
from sandboxes.base import Program, RunResult, SandboxUnavailable


class RecordingSandbox:
    """Plumbing double: records each batch and answers from a script; runs nothing."""

    def __init__(self, verdict=lambda p: RunResult(True, "", "passed", 0.01)):
        self.batches: list[list[Program]] = []
        self.verdict = verdict
        self.closed = False

    def run(self, program, timeout_s=None):
        return self.run_many([program])[0]

    def run_many(self, programs, timeout_s=None):
        self.batches.append(list(programs))
        return [self.verdict(p) for p in programs]

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def rows():
    b = get_benchmark("mbpp")
    return {r["task_id"]: r for r in b.rows()}


def test_entry_point_and_question(rows):
    assert entry_point(rows[11]["test_list"][0]) == "remove_Occ"
    assert entry_point("assert set(similar_elements((3, 4),(5, 4))) == set((4,))") == "similar_elements"
    assert entry_point("assert math.isclose(volume_cone(5,12), 314.15, rel_tol=0.001)") == "volume_cone"
    ex = get_benchmark("mbpp").load("test", 0)[0]
    assert ex.meta["entry_point"] == "remove_Occ" and len(ex.answer) == 3


FENCED = "Here is my solution:\n\n```python\n{code}\n```\n\nThis works because..."


def test_code_extraction_formats(rows):
    code = rows[11]["code"]
    assert answers.extract_code(FENCED.format(code=code), "remove_Occ").strip() == code.strip()
    two = f"```python\ndef helper():\n    pass\n```\nand the answer:\n```py\n{code}\n```"
    assert "def remove_Occ" in answers.extract_code(two, "remove_Occ")
    example_after = f"```python\n{code}\n```\nUsage:\n```python\nprint(remove_Occ('hello','l'))\n```"
    assert "def remove_Occ" in answers.extract_code(example_after, "remove_Occ")
    bare = f"{code}\n\nThis function removes the first and last occurrence."
    assert answers.extract_code(bare, "remove_Occ").strip() == code.replace("\r", "").strip()
    cut = f"```python\n{code}"  # reply truncated by max_tokens: unclosed fence
    assert "def remove_Occ" in answers.extract_code(cut, "remove_Occ")
    assert answers.extract_code("I don't know how to do this.", "remove_Occ") is None


def test_scoring_plumbing_with_double(rows):
    fail = RunResult(False, "Traceback ...\nAssertionError", "error: AssertionError", 0.02)
    sb = RecordingSandbox(lambda p: fail if "WRONG" in p.code else RunResult(True, "", "passed", 0.01))
    bench = get_benchmark("mbpp", sandbox=sb)
    exs = bench.load("test", 0)[:4]
    replies = [
        FENCED.format(code=rows[int(exs[0].id)]["code"]),
        FENCED.format(code="def f():\n    return 'WRONG'"),
        "Sorry, I cannot help with that.",
        FENCED.format(code=rows[int(exs[3].id)]["code"]),
    ]
    scores = bench.score_many(exs, replies)
    assert len(sb.batches) == 1 and len(sb.batches[0]) == 3  # one batch; no run without code
    p = sb.batches[0][0]
    assert p.code.strip() == rows[11]["code"].strip()
    assert p.tests == "\n".join(rows[11]["test_list"]) and p.setup == rows[11]["setup"] == ""
    assert [s.correct for s in scores] == [True, False, False, True]
    assert scores[0].feedback == "passed all 3 tests"
    assert "error: AssertionError" in scores[1].feedback and "Traceback" in scores[1].feedback
    assert "no code found" in scores[2].feedback and scores[2].extracted is None
    bench.close()
    assert not sb.closed  # a passed-in sandbox belongs to the caller


def test_sanitized_setup_and_missing_sandbox():
    sb = RecordingSandbox()
    bench = get_benchmark("mbpp", variant="sanitized", sandbox=sb)
    with_imports = next(e for e in bench.load("test", 0) if e.meta["setup"])
    bench.score(with_imports, "```python\ndef x(): pass\n```")
    assert sb.batches[0][0].setup.startswith("import")
    no_sb = get_benchmark("mbpp")
    ex = no_sb.load("test", 0)[0]
    assert "no code found" in no_sb.score(ex, "no code").feedback  # nothing to run: no sandbox needed
    with pytest.raises(RuntimeError, match="needs a sandbox"):
        no_sb.score(ex, "```python\ndef remove_Occ(s, c): return s\n```")


# ---- real runs in Docker ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docker_mbpp():
    if os.environ.get("SEPO_SKIP_DOCKER") == "1":
        pytest.skip("SEPO_SKIP_DOCKER=1")
    from sandboxes import make_sandbox

    try:
        sb = make_sandbox("docker")
    except SandboxUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    yield sb
    sb.close()


@pytest.mark.docker
@pytest.mark.parametrize("variant", ["full", "sanitized"])
def test_reference_solutions_pass_and_wrong_ones_fail_in_docker(docker_mbpp, variant):
    bench = get_benchmark("mbpp", variant=variant, sandbox=docker_mbpp)
    exs = bench.load("test", 0)[:12]
    refs = {r["task_id"]: r["code"] for r in bench.rows()}
    good = bench.score_many(exs, [FENCED.format(code=refs[int(e.id)]) for e in exs])
    assert all(s.correct for s in good), [(e.id, s.feedback) for e, s in zip(exs, good, strict=True)]
    if variant == "full":  # test_setup_code builds trees from the solution's own Node class
        node = next(e for e in bench.load("test", 0) if e.id == "367")
        assert node.meta["test_setup"] and bench.score(node, FENCED.format(code=refs[367])).correct
    wrong = [
        FENCED.format(code=f"def {e.meta['entry_point']}(*args, **kwargs):\n    return None") for e in exs[:4]
    ]
    wrong += [
        FENCED.format(code=refs[int(exs[4].id)] + "\n)"),  # syntax error
        FENCED.format(code="while True:\n    pass"),  # never finishes
    ]
    bad = bench.score_many(exs[:6], wrong)
    assert not any(s.correct for s in bad)
    assert all(s.feedback.startswith("failed:") for s in bad)
    assert "SyntaxError" in bad[4].feedback
    assert "timeout" in bad[5].feedback.lower()
