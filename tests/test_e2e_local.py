"""One real end-to-end evaluation per benchmark with the embedded 0.5B model (slow: minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main


@pytest.mark.slow
def test_every_benchmark_end_to_end_on_the_local_model(tmp_path, capsys):
    cfg = tmp_path / "e2e.yaml"
    root = Path(__file__).resolve().parents[1]
    cfg.write_text((root / "configs" / "e2e-local.yaml").read_text()
                   + f"output_dir: {tmp_path}\n")
    assert main(["eval", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    [result] = list(tmp_path.glob("e2e-local/eval-*/summary.json"))  # the layout `eval` prints and writes
    rows = json.loads(result.read_text())["results"]
    assert [r["benchmark"] for r in rows] == ["aime", "arc", "gpqa", "mbpp", "sudoku"]
    for r in rows:
        assert r["n"] == 3 and 0.0 <= r["accuracy"] <= 1.0 and r["tokens"] > 0
        assert f"{r['benchmark']} seed 0: {r['correct']}/3 correct" in out
        assert len(Path(r["records"]).read_text().splitlines()) == 3  # every example's record beside it
