"""The report of the paper's grid: a synthetic store (tests/paper_grid.py, written through Tracker like the
runner) read back and rendered; the layout is checked against what was written: the simulated banner first,
Table 1 / Table 2 in the paper's layout with its numbers, stopped and failed cells, truncation rates, shared
stages once and amortised per cell. The default run writes one seed (45 cells); the full 225 cells are slow."""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness import schema as S
from reports import build_report, paper
from reports.cells import SIMULATED_BANNER
from tests import paper_grid as G

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import screenshot  # noqa: E402

TABLES = ("table1", "table2", "comparisons", "ablations", "heldout", "truncation", "method_cost", "stages", "cost")


def md_table(md: str, title: str) -> list[list[str]]:
    """The rows (header first) of the Markdown table under '### <title>...'."""
    block = md.split(f"### {title}", 1)[1].split("\n\n", 2)[1]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in block.splitlines() if
            not line.startswith("|---")]


def check_report(grid: G.Grid, paths: dict[str, Path]) -> None:
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    seeds = len(grid.seeds)
    assert md.splitlines()[0] == f"> **{SIMULATED_BANNER}**"
    body = html.split("<body>", 1)[1].lstrip()
    assert body.startswith('<div class="banner headline" id="headline">SIMULATED endpoint')
    assert screenshot.check_static(html, TABLES) == []
    assert paths["run_vs_paper"].read_bytes().startswith(screenshot.PNG_MAGIC) and 'id="fig-run_vs_paper"' in html

    t1 = md_table(md, "Table 1")
    assert t1[0] == ["Method", *paper.BENCHMARKS.values(), "avg", "Stopped on budget"]
    labels = [r[0] for r in t1[1:]]
    assert labels == ["manual-cot", "_manual-cot: paper_", "textgrad", "_textgrad: paper_", "metaspo",
                      "_metaspo: paper_", "sepo-specialist", "_sepo-specialist: paper_", "sepo-generalist",
                      "_sepo-generalist: paper_", "espl", "gepa"]
    rows = {r[0]: r for r in t1[1:]}
    assert rows["_sepo-generalist: paper_"][1:7] == ["64.22", "43.39", "78.18", "96.20", "99.90", "76.38"]
    assert rows["metaspo"][-1] == f"{seeds}/{5 * seeds}"  # Sudoku: stopped before the schedule, every seed
    assert rows["espl"][-1] == f"0/{5 * seeds}"  # stopped on budget after its schedule: not cut short
    assert rows["gepa"][-1] == f"0/{5 * seeds - 1} (+1 failed)"
    gepa_arc = rows["gepa"][2]
    assert gepa_arc == "–" if seeds == 1 else f"n={seeds - 1}×{grid.n_test}" in gepa_arc  # failed: left out

    t2 = md_table(md, "Table 2")
    assert [r[0] for r in t2[1:]] == ["sepo-generalist", "_sepo-generalist: paper_", "sepo-no-self-improve",
                                      "_sepo-no-self-improve: paper_", "sepo-no-archive", "_sepo-no-archive: paper_"]
    assert {r[0]: r for r in t2}["_sepo-no-archive: paper_"][1:7] == ["57.24", "–", "–", "–", "–", "72.64"]
    assert {r[0]: r for r in t2}["sepo-no-archive"][-1] == f"1/{5 * seeds}"  # AIME seed 0 only

    banners = re.findall(r"> \*\*Warning:\*\* (.*)", md)
    failed = next(b for b in banners if "failed" in b)
    assert f"gepa / arc / seed 0: {G.FAIL_REASON}" in failed
    cut = next(b for b in banners if "before finishing their method's schedule" in b)
    assert f"metaspo {seeds}/{5 * seeds}" in cut and f"sepo-no-archive 1/{5 * seeds}" in cut
    stage = next(b for b in banners if "shared stage(s) stopped" in b)
    assert stage.startswith("1 shared stage(s)") and f"pretrain p-star/no-archive: finished (stopped on budget: " \
        f"{G.STAGE_STOPPED})" in stage

    tr = md_table(md, "Truncated replies")
    assert tr[0] == ["Method", *[f"{t} (cap {G.BENCHMARKS[b]})" for b, t in paper.BENCHMARKS.items()]]
    trows = {r[0]: r for r in tr[1:]}
    assert set(trows) == {*G.METHODS, "_initial prompt_"}
    for m in G.METHODS:
        for i, b in enumerate(G.BENCHMARKS, start=1):
            counted = seeds - ((m, b) == G.FAILED[:2])  # the failed cell's seed is left out
            n = grid.n_test * counted
            k = sum(G.truncated(m, b, j) for j in range(grid.n_test)) * counted
            assert trows[m][i] == (f"{100 * k / n:.1f}% ({k}/{n})" if n else "–"), (m, b)

    st = md_table(md, "Shared stages")
    srows = {r[1]: r for r in st[1:]}
    assert set(srows) == set(grid.stage_usd)
    gen = srows["p-star/generalist"]
    assert gen[0] == S.STAGE_PRETRAIN and gen[4] == "finished" and gen[7] == "37.00" and gen[10] == str(5 * seeds)
    assert float(gen[11]) == pytest.approx(37.0 / (5 * seeds), abs=0.01)
    assert "Amortised per cell" in md and "Shared stages in total: $" in md
    total = sum(grid.stage_usd.values())
    assert f"shared stages ${total:,.2f} once" in md

    mc = {r[0]: r for r in md_table(md, "Cost per method")[1:]}
    assert float(mc["sepo-generalist"][5]) == pytest.approx(37.0 / (5 * seeds), abs=0.01)
    assert float(mc["sepo-specialist"][5]) == pytest.approx(6.0 / seeds, abs=0.01)
    assert mc["manual-cot"][5] == "0.00"


@pytest.fixture(scope="module")
def grid45(tmp_path_factory):
    d = tmp_path_factory.mktemp("grid45")
    t0 = time.monotonic()
    grid = G.write_grid(str(d), seeds=1)
    written = time.monotonic() - t0
    out = d / "report"
    return grid, build_report(str(d), grid.experiment, out), written


def test_paper_grid_report_layout_45_cells(grid45):
    grid, paths, _ = grid45
    assert grid.cells == 45
    check_report(grid, paths)


@pytest.mark.skipif(screenshot.find_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_paper_grid_report_renders_in_chromium(grid45):
    _, paths, _ = grid45
    dom = screenshot.rendered_dom(str(paths["html"]))
    assert screenshot.check_rendered(dom, TABLES) == []
    assert 'id="headline"' in dom and "SIMULATED endpoint" in dom


@pytest.mark.slow
def test_paper_grid_report_layout_225_cells():
    with tempfile.TemporaryDirectory() as d:
        grid = G.write_grid(d, seeds=5)
        assert grid.cells == 225
        check_report(grid, build_report(d, grid.experiment, Path(d) / "report"))


def test_model_swap_protocol_shows_the_papers_averages(tmp_path):
    from harness.evaluator import Record
    from harness.tracking import Tracker
    from tests.test_tracking import session_store

    store = str(session_store())
    t = Tracker(store, "swap-run")
    t.log_experiment({"name": "paper-swap"}, "name: paper-swap\n", {"commit": "x"}, protocol=S.PROTOCOL_SWAP)
    for m in ("manual-cot", "sepo-generalist"):
        for b in ("mbpp", "gpqa"):
            run = t.start_cell(f"{m}/{b}/seed0", method=m, benchmark=b, seed=0, params={}, tags={})
            run.finish(metrics={}, best_prompt="p",
                       test_records=[Record(f"e{j}", "", 1.0, True, "", 1, 1, 1, False) for j in range(4)])
    md = build_report(store, "swap-run", tmp_path)["markdown"].read_text()
    assert not md.startswith("> **SIMULATED")  # not simulated: no headline
    rows = {r[0]: r for r in md_table(md, "Table 1")[1:]}
    assert rows["_manual-cot: paper_"][1:] == ["–", "–", "67.95", ""]  # GPQA, MBPP, avg, stopped
    assert rows["_sepo-generalist: paper_"][3] == "70.08"
    assert "Model swap (Gemini 3.1 Flash-Lite" in md and "67.95 -> 70.08" in md


def test_old_stores_fall_back_for_stops_stages_and_protocol():
    import pandas as pd

    from reports import cells as bk

    cells = pd.DataFrame({S.STOPPED: ["max_evaluations", "None", "max_usd", None],
                          S.SCHEDULE_COMPLETE: [None, None, "true", "false"]})
    assert list(bk.stopped_early(cells)) == [True, False, False, True]  # no tag: any budget stop counts
    stages = pd.DataFrame([{"run_id": "r", "status": "FINISHED", "start_time": 1, "key": "k", "kind": "pretrain",
                            "methods": ["sepo-generalist"], "targets": ["aime", "arc", "gpqa", "mbpp"],
                            "fail_reason": "", S.USD: 37.0, S.EVALUATIONS: 1200.0}])
    table, basis = bk.stage_table(stages, pd.DataFrame({"method": ["sepo-generalist"]}))
    assert basis == "target" and table.served[0] == 4 and table.usd_each[0] == pytest.approx(9.25)
    cost = bk.method_cost(pd.DataFrame({"method": ["sepo-generalist"], "benchmark": ["aime"], S.USD: [3.0]}),
                          table, basis, ["sepo-generalist"])
    assert cost.stage_usd[0] == pytest.approx(9.25) and cost.usd[0] == 3.0

    class Data:
        experiment, cells = "paper", pd.DataFrame()
        settings: dict = {"run_tags": {}}

    assert bk.protocol(Data()) == "paper"  # before the protocol tags: by the experiment's name
    Data.settings = {"run_tags": {S.PAPER_PROTOCOL: "false"}}
    assert bk.protocol(Data()) is None and not bk.is_simulated(Data())
