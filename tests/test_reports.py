"""reports/: a synthetic experiment with known item-level outcomes, written through harness.tracking, read
back from MLflow by the report; its means, intervals, test statistics and Holm-adjusted p-values are
checked against values computed here directly from the known outcomes (scipy), and the HTML is checked
for broken images and missing tables (statically, and in headless Chromium when it is installed)."""

from __future__ import annotations

import functools
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sst

from harness.evaluator import Record
from harness.optimizer import Candidate
from harness.tracking import Tracker, load_experiment
from reports import analysis, build_report, stats
from tests.test_tracking import session_store

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import screenshot  # noqa: E402

EXPERIMENT = "synthetic-report"
METHODS = {"manual-cot": 0.40, "textgrad": 0.45, "sepo-generalist": 0.70, "sepo-specialist": 0.60,
           "sepo-no-archive": 0.50}
BENCHMARKS = {"mbpp": (3, 40, True), "gpqa": (3, 30, False), "aime": (1, 15, True)}  # seeds, items, same ids
HELD_OUT = {("sepo-generalist", "gpqa"), ("sepo-specialist", "aime")}


def item_ids(bench: str, seed: int, n: int, same: bool) -> list[str]:
    return [f"{bench}-{j}" if same else f"{bench}-s{seed}-{j}" for j in range(n)]


@functools.cache
def outcomes() -> dict[tuple[str, str, int], dict[str, bool]]:
    """(method, benchmark, seed) -> {example id: correct}, drawn once with a fixed seed."""
    rng = random.Random(2024)
    out = {}
    for m, p in METHODS.items():
        for b, (n_seeds, n, same) in BENCHMARKS.items():
            for s in range(n_seeds):
                out[(m, b, s)] = {i: rng.random() < p for i in item_ids(b, s, n, same)}
    return out


@functools.cache
def synthetic_store() -> str:
    store = str(session_store())
    t = Tracker(store, EXPERIMENT)
    t.log_experiment({"name": EXPERIMENT, "seeds": [0, 1, 2],
                      "llm": {"task": {"local_model": "qwen2.5-coder-0.5b", "temperature": 0.0},
                              "prompt": {"local_model": "qwen2.5-coder-1.5b"}, "budget": {"max_requests": 500}},
                      "methods": {m: {} for m in METHODS}},
                     f"name: {EXPERIMENT}\n", {"commit": "deadbeef", "dirty": "false"})
    rng = random.Random(5)
    for (m, b, s), got in outcomes().items():
        run = t.start_cell(f"{m}/{b}/seed{s}", method=m, benchmark=b, seed=s, params={"n_test": len(got)},
                           tags={"held_out": str((m, b) in HELD_OUT).lower(),
                                 "target_in_pool": str((m, b) not in HELD_OUT).lower(),
                                 "local_models": "true", "synthetic": "true"})
        cands = []
        for i in range(5 if m.startswith("sepo") else 2):
            parent = None if i == 0 else rng.choice(cands).id
            gen = 0 if parent is None else next(c.generation for c in cands if c.id == parent) + 1
            c = Candidate(id=f"{m}-{b}-{s}-{i}", prompt=f"prompt {i}", parent_id=parent, generation=gen,
                          train_score=round(rng.random(), 2), meta={"stage": "finetune", "admitted": i % 4 != 3})
            cands.append(c)
            run.log_candidate(c)
        records = [Record(i, "", float(ok), ok, "", 1, 50, 20, False) for i, ok in got.items()]
        acc = float(np.mean([r.score for r in records]))
        n_req = {"manual-cot": 0, "textgrad": 300, "sepo-generalist": 500, "sepo-specialist": 450,
                 "sepo-no-archive": 400}[m] + len(records)
        run.finish(metrics={"test_accuracy": acc, "requests": n_req, "tokens": 100.0 * n_req, "usd": 0.0,
                            "evaluations": 10.0 * n_req}, test_records=records, initial_records=None,
                   best_prompt=cands[-1].prompt, extra_prompts={}, register_as=None)
    return store


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("report")
    return out, build_report(synthetic_store(), EXPERIMENT, out)


@pytest.fixture(scope="module")
def rep() -> analysis.Report:
    return analysis.build(load_experiment(synthetic_store(), EXPERIMENT))


# ------------------------------------------------------------------------- independent computations


def scores_of(m: str, b: str) -> list[np.ndarray]:
    n_seeds = BENCHMARKS[b][0]
    return [np.array([float(v) for v in outcomes()[(m, b, s)].values()]) for s in range(n_seeds)]


def two_stage_by_loops(groups: list[np.ndarray], b: int, seed: int) -> np.ndarray:
    """The two-stage bootstrap written out with loops (same random draws as documented in reports.stats)."""
    rng = np.random.default_rng(seed)
    s = len(groups)
    width = max(len(g) for g in groups)
    k = rng.integers(0, s, size=(b, s))
    u = rng.random((b, s, width))
    out = np.empty(b)
    for i in range(b):
        means = []
        for j in range(s):
            g = groups[k[i, j]]
            idx = [int(u[i, j, t] * len(g)) for t in range(len(g))]
            means.append(np.mean([g[t] for t in idx]))
        out[i] = np.mean(means)
    return out


def holm_by_hand(ps: list[float]) -> list[float]:
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adj, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adj[i] = running
    return adj


def matched(a: str, b: str, bench: str) -> tuple[list[bool], list[bool]]:
    xa, xb = [], []
    for s in range(BENCHMARKS[bench][0]):
        oa, ob = outcomes()[(a, bench, s)], outcomes()[(b, bench, s)]
        for i in oa:
            xa.append(oa[i])
            xb.append(ob[i])
    return xa, xb


# ------------------------------------------------------------------------------------------ the tests


def test_holm_textbook_example():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, float("nan")])[0] == 0.5


def test_table1_means_and_intervals(rep):
    t = rep.table1.set_index(["method", "benchmark"])
    for m in METHODS:
        for b, (n_seeds, n, _) in BENCHMARKS.items():
            groups = scores_of(m, b)
            e = t.loc[(m, b)]
            assert e["mean"] == pytest.approx(np.mean([g.mean() for g in groups]), abs=1e-12)
            assert (e["n_seeds"], e["n_items"]) == (n_seeds, n_seeds * n)
            if n_seeds == 1:
                ref = sst.bootstrap((groups[0],), np.mean, n_resamples=stats.N_BOOT, method="percentile",
                                    random_state=np.random.default_rng(stats.BOOT_SEED)).confidence_interval
                lo, hi = ref.low, ref.high
            else:
                lo, hi = np.percentile(two_stage_by_loops(groups, stats.N_BOOT, stats.BOOT_SEED), [2.5, 97.5])
            assert (e["lo"], e["hi"]) == pytest.approx((lo, hi), abs=1e-12)
            assert e["lo"] <= e["mean"] <= e["hi"]
        avg = t.loc[(m, "Average")]
        assert avg["mean"] == pytest.approx(np.mean([t.loc[(m, b)]["mean"] for b in BENCHMARKS]))
    for b in [*BENCHMARKS, "Average"]:
        col = rep.table1[rep.table1.benchmark == b]
        assert list(col[col.best].method) == [col.loc[col["mean"].idxmax(), "method"]]


def test_paired_comparisons_mcnemar_and_holm(rep):
    c = rep.comparisons
    expected_pairs = {("sepo-generalist", "manual-cot"), ("sepo-generalist", "textgrad"),
                      ("sepo-specialist", "manual-cot"), ("sepo-specialist", "textgrad"), ("textgrad", "manual-cot"),
                      ("sepo-no-archive", "manual-cot")}
    assert {(r.method, r.versus) for r in c.itertuples()} == expected_pairs
    assert len(c) == len(expected_pairs) * len(BENCHMARKS)
    raw = {}
    for r in c.itertuples():
        xa, xb = matched(r.method, r.versus, r.benchmark)
        b = sum(x and not y for x, y in zip(xa, xb, strict=True))
        cc = sum(y and not x for x, y in zip(xa, xb, strict=True))
        p = sst.binomtest(b, b + cc, 0.5).pvalue if b + cc else 1.0
        assert (r.test, r.n, r.b, r.c) == ("exact McNemar", len(xa), b, cc)
        assert r.p == pytest.approx(p, rel=1e-12)
        assert r.diff == pytest.approx((b - cc) / len(xa))
        n2, b2, c2 = len(xa) + 2, b + 0.5, cc + 0.5  # Agresti & Min's interval, by hand
        half = 1.959963984540054 * np.sqrt((b2 + c2) - (b2 - c2) ** 2 / n2) / n2
        assert (r.diff_lo, r.diff_hi) == pytest.approx((max(-1, (b2 - c2) / n2 - half), min(1, (b2 - c2) / n2 + half)))
        psi = (b + cc) / len(xa)
        assert r.mdd == pytest.approx((sst.norm.ppf(0.975) + sst.norm.ppf(0.8)) * np.sqrt(psi / len(xa)))
        raw[(r.benchmark, r.method, r.versus)] = p
    keys = list(raw)
    adjusted = dict(zip(keys, holm_by_hand([raw[k] for k in keys]), strict=True))
    for r in c.itertuples():
        assert r.p_holm == pytest.approx(adjusted[(r.benchmark, r.method, r.versus)], rel=1e-12)
        assert r.significant == (r.p_holm < 0.05)
        assert r.verdict.startswith("significant at 0.05 after Holm" if r.significant else "not significant")


def test_heldout_ablations_cost_and_warnings(rep):
    h = rep.heldout
    g = h[(h.method == "sepo-generalist") & (h.targets == "held-out")]
    assert list(g.benchmark) == ["gpqa"]
    assert g["mean"].iloc[0] == pytest.approx(np.mean([x.mean() for x in scores_of("sepo-generalist", "gpqa")]))
    held_in = h[(h.method == "sepo-generalist") & (h.targets == "held-in")]
    assert set(held_in.benchmark) == {"aime", "mbpp"}
    a = rep.ablations
    assert set(zip(a.method, a.versus, strict=True)) == {("sepo-no-archive", "sepo-generalist")}
    assert len(a) == len(BENCHMARKS)
    cost = rep.cost.set_index(["method", "benchmark"])
    assert cost.loc[("textgrad", "mbpp"), "requests"] == 340  # 300 + 40 test items, the same every seed
    text = " ".join(rep.warnings)
    assert "Synthetic experiment" in text and "embedded local models" in text and "Small run" in text


def test_report_files_are_complete(report_dir):
    out, paths = report_dir
    html = paths["html"].read_text()
    assert screenshot.check_static(html, ("table1", "comparisons", "heldout", "ablations", "cost")) == []
    assert len(re.findall(r"<img ", html)) == 3
    assert 'class="banner"' in html and "embedded local models" in html
    assert "deadbeef" in html and "qwen2.5-coder-0.5b" in html  # settings: code version, models
    md = paths["markdown"].read_text()
    assert "### Table 1" in md and "![lineage](lineage.png)" in md and "> **Warning:**" in md
    for name in ("best_by_generation", "accuracy_vs_cost", "lineage"):
        assert paths[name].read_bytes().startswith(screenshot.PNG_MAGIC)
    # the checker catches a broken image and a missing table
    broken = re.sub(r"(data:image/png;base64,)([A-Za-z0-9+/]{40})", r"\1AAAA\2", html, count=1)
    assert any("image 1" in p for p in screenshot.check_static(broken))
    no_cost = re.sub(r'<table class="report" id="cost">.*?</table>', "", html, flags=re.S)
    assert screenshot.check_static(no_cost) == ["table 'cost' missing"]


@pytest.mark.skipif(screenshot.find_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_in_headless_chromium(report_dir, tmp_path):
    out, paths = report_dir
    shot = tmp_path / "report.png"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "screenshot.py"), str(paths["html"]), "--out",
                           str(shot), "--height", "2400"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert shot.read_bytes().startswith(screenshot.PNG_MAGIC) and shot.stat().st_size > 50_000
    html = paths["html"].read_text()
    bad = tmp_path / "broken.html"
    bad.write_text(re.sub(r"(data:image/png;base64,)[A-Za-z0-9+/]{200}", r"\1", html, count=1)
                   .replace('id="cost"', 'id="gone"'))
    problems = screenshot.check_rendered(screenshot.rendered_dom(str(bad)))
    assert "1 image(s) did not render" in problems and "table 'cost' not rendered" in problems


def test_graded_and_unmatched_scores_use_permutation_tests():
    rng = np.random.default_rng(3)
    a, b = rng.random(40), rng.random(40) * 0.8
    r = stats.paired_compare(a, b)
    ref = sst.permutation_test((a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                               permutation_type="samples", vectorized=True, n_resamples=9999,
                               random_state=np.random.default_rng(stats.BOOT_SEED))
    assert r.test == "paired permutation" and r.p == pytest.approx(ref.pvalue) and r.diff == pytest.approx(
        np.mean(a - b))
    u = stats.unpaired_compare(a[:30], b)
    ref = sst.permutation_test((a[:30], b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                               permutation_type="independent", vectorized=True, n_resamples=9999,
                               random_state=np.random.default_rng(stats.BOOT_SEED))
    assert u.test == "unpaired permutation" and u.p == pytest.approx(ref.pvalue) and u.n == 70
    same = stats.bootstrap_ci([[1.0, 1.0], [1.0]])
    assert (same.mean, same.lo, same.hi, same.n_seeds, same.n_items) == (1.0, 1.0, 1.0, 2, 3)


def test_named_setting_groups_count_by_their_registered_method():
    bases = {"fast": "sepo-generalist", "cot": "manual-cot", "tg": "textgrad", "abl": "sepo-no-archive"}
    infos = {m: analysis.infer_info(m, b) for m, b in bases.items()}  # a store without family tags
    pairs = analysis.comparison_pairs(["cot", "tg", "fast", "abl"], infos)
    assert set(pairs) == {("fast", "tg"), ("fast", "cot"), ("tg", "cot"), ("abl", "cot")}
    assert analysis._order(["fast", "abl", "tg", "cot"], infos) == ["cot", "tg", "fast", "abl"]


def test_family_and_ablation_come_from_tags_before_names():
    from harness import schema as S

    tagged = analysis.infer_info("evo", "gepa", S.FAMILY_SEPO, "")  # the runner says: a SePO variant
    assert tagged.family == "sepo" and not tagged.ablation_of
    named = analysis.infer_info("sepo-no-archive")  # an old store: guessed from the name
    assert (named.family, named.ablation_of) == ("sepo", "sepo-generalist")
    assert analysis.infer_info("sepo-no-archive", None, S.FAMILY_SEPO, "").ablation_of == ""  # the tag wins
    assert analysis.infer_info("espl").family == S.FAMILY_PEER and analysis.infer_info("metaspo").family == "baseline"
    infos = {"evo": tagged, "cot": analysis.infer_info("manual-cot")}
    assert analysis.comparison_pairs(["cot", "evo"], infos) == [("evo", "cot")]


def test_an_experiment_with_no_finished_cell_still_reports(tmp_path):
    store = str(session_store())
    run = Tracker(store, "unfinished").start_cell("m/b/seed0", method="m", benchmark="b", seed=0, params={},
                                                  tags={})
    run.log_candidate(Candidate(id="c0", prompt="p", parent_id=None, generation=0, train_score=0.5))
    paths = build_report(store, "unfinished", tmp_path)
    md = paths["markdown"].read_text()
    assert "did not finish" in md and "No finished cells" in md and "| (none) |" in md
    assert screenshot.check_static(paths["html"].read_text()) == []


def test_a_superseded_run_of_the_same_cell_is_left_out():
    store = str(session_store())
    t = Tracker(store, "superseded")
    for key, ok in (("old-key", False), ("new-key", True)):  # e.g. a code change gave the cell a new key
        run = t.start_cell(key, method="manual-cot", benchmark="b", seed=0, params={}, tags={})
        records = [Record(f"e{i}", "", float(ok), ok, "", 1, 1, 1, False) for i in range(5)]
        run.finish(metrics={}, test_records=records, initial_records=None, best_prompt="p", extra_prompts={},
                   register_as=None)
        time.sleep(0.01)
    rep = analysis.build(load_experiment(store, "superseded"))
    assert len(rep.cells) == 1 and len(rep.scores) == 5
    assert rep.table1.set_index("benchmark").loc["b", "mean"] == 1.0
    assert any("superseded" in w for w in rep.warnings)
