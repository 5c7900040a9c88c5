"""The registry of names (benchmarks, methods, sandboxes) and the import graph's shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.registry import canonical_benchmark, method_info, needs_sandbox, sandbox_backends

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_say_whether_they_need_a_sandbox():
    assert canonical_benchmark(" GPQA-Diamond ") == "gpqa"
    assert needs_sandbox("mbpp") and needs_sandbox("MBPP-sanitized")
    assert needs_sandbox("custom", {"scorer": "python"}) and not needs_sandbox("custom", {"scorer": "exact"})
    assert not any(needs_sandbox(n) for n in ("aime", "arc", "gpqa", "sudoku", "no-such-benchmark"))


def test_methods_say_their_family_and_what_they_ablate():
    assert method_info("sepo-no-archive").ablation_of == "sepo-generalist"
    assert method_info("sepo-no-self-improve").ablation_of == "sepo-generalist"
    assert method_info("sepo-specialist").ablation_of is None
    assert {method_info(n).family for n in ("sepo", "sepo-generalist")} == {"sepo"}
    assert {method_info(n).family for n in ("manual-cot", "textgrad", "metaspo", "espl", "gepa")} == {"baseline"}


def test_sandbox_backends():
    assert sandbox_backends() == ["docker", "local"]


def test_no_import_circle_in_harness():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py"), "harness"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
