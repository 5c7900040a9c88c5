"""harness.tracking's new runs and tags (harness/schema.py): the experiment's simulated / protocol tags, a
cell's family, ablation, status, budget stop, schedule and truncation, a failed cell retried, shared stage
runs found, reopened and read back, and the schema's value helpers."""

from __future__ import annotations

import pytest

from harness import schema as S
from harness.evaluator import Record
from harness.optimizer import Candidate
from harness.tracking import Tracker, load_experiment
from tests.test_tracking import session_store


def records(n: int, truncated: set[int]) -> list[Record]:
    return [Record(f"e{j}", "", 1.0, True, "", 1, 10, 10, False, j in truncated) for j in range(n)]


def test_schema_value_helpers():
    assert S.flag("true") and S.flag("True") and not S.flag("false") and not S.flag(None) and not S.flag(float("nan"))
    assert S.is_set("max_evaluations") and not S.is_set("None") and not S.is_set("") and not S.is_set(None)
    assert S.bool_tag(True) == "true" and S.bool_tag(False) == "false"
    names = [v for k, v in vars(S).items() if k.isupper() and isinstance(v, str) and v.startswith(S.PREFIX)]
    assert len(names) == len(set(names))  # no two constants share a name
    for old in ("sepo.kind", "sepo.cell_key", "sepo.method", "sepo.stopped", "sepo.base_method", "sepo.held_out"):
        assert old in names  # names in existing stores never change


def test_experiment_tags_simulated_and_protocol():
    store = str(session_store())
    t = Tracker(store, "schema-exp")
    t.log_experiment({"name": "paper", "simulated": True}, "name: paper\n", {"commit": "x"},
                     protocol=S.PROTOCOL_SWAP)
    data = load_experiment(store, "schema-exp")
    tags = data.settings["run_tags"]
    assert tags[S.SIMULATED] == "true" and tags[S.PAPER_PROTOCOL] == "true" and tags[S.PROTOCOL] == "paper-swap"
    assert data.settings["experiment_tags"][S.SIMULATED] == "true"
    t.log_experiment({"name": "paper"}, "name: paper\nseeds: [1]\n", {"commit": "x"})  # a later, plain run
    tags = load_experiment(store, "schema-exp").settings["run_tags"]
    assert tags[S.SIMULATED] == "false" and tags[S.PAPER_PROTOCOL] == "false" and tags[S.PROTOCOL] == ""


def test_cell_tags_truncation_and_a_retried_failure():
    store = str(session_store())
    t = Tracker(store, "schema-cell")
    with pytest.raises(ValueError, match="family"):
        t.start_cell("k", method="m", benchmark="b", seed=0, params={}, tags={}, family="sepo-ish")
    run = t.start_cell("abl/mbpp/seed0", method="sepo-no-archive", benchmark="mbpp", seed=0, params={}, tags={},
                       family=S.FAMILY_SEPO, ablation_of="sepo-generalist", simulated=True)
    run.fail("RuntimeError: boom")
    got = t.client.get_run(run.run_id)
    assert got.info.status == "FAILED" and got.data.tags[S.STATUS] == S.STATUS_FAILED
    assert got.data.tags[S.FAIL_REASON] == "RuntimeError: boom" and "boom" in got.data.tags[S.NOTE]
    again = t.start_cell("abl/mbpp/seed0", method="sepo-no-archive", benchmark="mbpp", seed=0, params={}, tags={},
                         family=S.FAMILY_SEPO, ablation_of="sepo-generalist", simulated=True)
    assert again.run_id == run.run_id
    again.log_candidate(Candidate("c0", "p", None, 0, train_score=0.5))
    again.finish(metrics={S.N_TEST: 5}, test_records=records(5, {1, 3}), initial_records=records(5, {0}),
                 best_prompt="p", stopped="max_evaluations", schedule_complete=False, max_tokens=8192,
                 stage_keys=["p-star/x", "p-star/x"])
    cell = load_experiment(store, "schema-cell").cells.iloc[0]
    assert cell.status == "FINISHED" and cell[S.STATUS] == S.STATUS_FINISHED and cell[S.FAIL_REASON] == ""
    assert (cell[S.FAMILY], cell[S.ABLATION_OF], cell[S.SIMULATED]) == ("sepo", "sepo-generalist", "true")
    assert (cell[S.STOPPED], cell[S.SCHEDULE_COMPLETE], cell[S.STAGE_KEYS]) == ("max_evaluations", "false",
                                                                              '["p-star/x"]')
    assert (cell[S.TEST_TRUNCATED], cell[S.INITIAL_TRUNCATED], cell[S.MAX_TOKENS]) == (2.0, 1.0, 8192.0)


def test_stage_runs_found_reopened_and_read_back():
    store = str(session_store())
    t = Tracker(store, "schema-stage")
    key = "p-star/generalist/abc"
    assert t.find_finished_stage(key) is None
    st = t.start_stage(key, S.STAGE_PRETRAIN, methods=["sepo-generalist"], targets=["mbpp", "aime", "mbpp"],
                       params={"pool": ["aime", "gpqa"]})
    st.log_candidate(Candidate("p0", "agent prompt", None, 0, train_score=0.4, meta={"stage": "pretrain"}))
    st.fail("killed by budget")
    st2 = Tracker(store, "schema-stage").start_stage(key, S.STAGE_PRETRAIN, methods=["sepo-generalist"],
                                                     targets=["aime", "mbpp"], params={"pool": ["aime", "gpqa"]})
    assert st2.run_id == st.run_id and st2.resumed and len(st2.candidates()) == 1
    st2.finish(metrics={S.REQUESTS: 10, S.TOKENS: 500, S.USD: 1.5, S.EVALUATIONS: 96, S.WALL_S: 3.0},
               texts={"prompt_agent": "p~* text"}, result={"best": "p0"}, stopped="max_evaluations")
    found = t.find_finished_stage(key)
    assert found["run_id"] == st.run_id and found["texts"] == {"prompt_agent": "p~* text"}
    assert found["result"] == {"best": "p0"} and found["metrics"][S.USD] == 1.5
    assert found["tags"][S.STATUS] == S.STATUS_FINISHED and found["tags"][S.STAGE_KIND] == S.STAGE_PRETRAIN
    assert found["tags"][S.STOPPED] == "max_evaluations" and found["tags"][S.FAIL_REASON] == ""
    data = load_experiment(store, "schema-stage")
    assert data.cells.empty and len(data.stages) == 1  # a stage is not a cell
    row = data.stages.iloc[0]
    assert (row.key, row.kind, row.methods, row.targets) == (key, "pretrain", ["sepo-generalist"], ["aime", "mbpp"])
    assert row[S.USD] == 1.5 and row.status == "FINISHED"
