"""Benchmarks: registry, data location errors, loading counts and deterministic splits on the real data."""

from __future__ import annotations

import pytest

from harness import data, splits
from harness.benchmarks import get_benchmark, registry
from harness.benchmarks.gpqa import permute

SPLITS = ("train", "val", "test")


def ids(bench, split, seed=0):
    return [e.id for e in bench.load(split, seed)]


@pytest.fixture(scope="module")
def benches():
    if data.resolve_data_dir()[0] is None:
        pytest.skip("no benchmark data directory (set SEPO_DATA_DIR)")
    return {
        "aime": get_benchmark("aime"),
        "gpqa": get_benchmark("gpqa"),
        "arc": get_benchmark("arc"),
        "mbpp": get_benchmark("mbpp"),
        "mbpp-s": get_benchmark("mbpp", variant="sanitized"),
    }


def test_registry_and_unknown_name():
    assert {"aime", "arc", "gpqa", "mbpp", "sudoku", "custom"} <= set(registry())
    with pytest.raises(ValueError, match=r"unknown benchmark 'aim'.*aime, arc, custom, gpqa, mbpp, sudoku"):
        get_benchmark("aim")
    assert get_benchmark("GPQA-Diamond").name == "gpqa"
    assert get_benchmark("aime", sandbox=object()).options == {}  # a run's sandbox is ignored where unused
    assert get_benchmark("mbpp-sanitized").variant == "sanitized"


def test_unknown_option_is_rejected():
    from harness.config import ConfigError

    with pytest.raises(ConfigError, match=r"no option 'n_tran'.*n_train"):
        get_benchmark("aime", n_tran=5)
    with pytest.raises(ValueError, match="variant must be one of full, sanitized"):
        get_benchmark("mbpp", variant="tiny")


def test_every_benchmark_has_description_and_max_tokens():
    formats = {
        "aime": "\\boxed",
        "gpqa": "Answer: X",
        "arc": "one row per line",
        "mbpp": "```python",
        "sudoku": "9 lines of 9 digits",
    }
    for name, fmt in formats.items():
        cls = registry()[name]
        assert len(cls.description) > 200 and fmt in cls.description, name
        assert cls.max_tokens and 256 <= cls.max_tokens <= 4096
        assert fmt in get_benchmark(name).description
    assert registry()["arc"].attempts == 3 and registry()["aime"].attempts == 1
    assert get_benchmark("sudoku", size=4).max_tokens < get_benchmark("sudoku").max_tokens
    assert "4 lines of 4 digits" in get_benchmark("sudoku", size=4).description


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    assert data.resolve_data_dir(tmp_path / "explicit")[0] == tmp_path / "explicit"
    assert data.resolve_data_dir()[0] == tmp_path / "env"
    monkeypatch.delenv(data.ENV_VAR)
    base, how = data.resolve_data_dir()
    assert how == "the default location" or base is None


@pytest.mark.parametrize("name", ["aime", "gpqa", "arc", "mbpp"])
def test_missing_dataset_names_where_it_looked(tmp_path, name):
    bench = get_benchmark(name, data_dir=str(tmp_path))
    with pytest.raises(data.DatasetMissing) as err:
        bench.load("test", 0)
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(tmp_path) in msg and "SEPO_DATA_DIR" in msg and "data_dir" in msg
    assert msg.count(".") >= 1 and "\n" not in msg


def test_missing_dataset_via_env(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(
        data.DatasetMissing, match=r"nowhere/aime2025/aime2025.jsonl \(data directory from \$SEPO"
    ):
        get_benchmark("aime").load("train", 0)


def test_loading_counts(benches):
    assert len(benches["aime"].rows()) == 30
    assert len(benches["gpqa"].rows()) == 198
    assert len(benches["arc"].tasks("training")) == 400 and len(benches["arc"].tasks("evaluation")) == 400
    assert len(benches["mbpp"].rows()) == 974
    assert len(benches["mbpp-s"].rows()) == 427


def test_split_sizes(benches):
    sizes = {k: [len(b.load(s, 0)) for s in SPLITS] for k, b in benches.items()}
    assert sizes["aime"] == [10, 5, 15]
    assert sizes["gpqa"] == [40, 20, 138]
    assert sizes["mbpp"] == [374, 90, 500]
    assert sizes["mbpp-s"] == [120, 43, 257]
    arc = benches["arc"]
    tasks = {s: {e.meta["task_id"] for e in arc.load(s, 0)} for s in SPLITS}
    assert [len(tasks[s]) for s in SPLITS] == [320, 80, 400]
    assert sizes["arc"] == [320, 80, 400]  # one example per task (scored per task, as ARC-AGI-1 is)
    assert sum(e.meta["n_outputs"] for e in arc.load("test", 0)) == 419


@pytest.mark.parametrize("name", ["aime", "gpqa", "arc", "mbpp", "mbpp-s"])
def test_splits_deterministic_and_disjoint(benches, name):
    b = benches[name]
    for seed in (0, 1):
        parts = {s: ids(b, s, seed) for s in SPLITS}
        assert parts == {s: ids(b, s, seed) for s in SPLITS}  # same seed, same split
        assert not set(parts["train"]) & set(parts["val"])
        assert not set(parts["train"]) & set(parts["test"])
        assert not set(parts["val"]) & set(parts["test"])
    if name in ("aime", "gpqa", "arc"):  # shuffled splits move with the seed
        assert set(ids(b, "train", 0)) != set(ids(b, "train", 1))
        assert set(ids(b, "test", 0)) != set(ids(b, "test", 1)) or name == "arc"


def test_arc_test_is_the_evaluation_set_and_trainval_the_training_set(benches):
    arc = benches["arc"]
    assert {e.meta["task_id"] for e in arc.load("test", 3)} == set(arc.tasks("evaluation"))
    trainval = {e.meta["task_id"] for s in ("train", "val") for e in arc.load(s, 3)}
    assert trainval == set(arc.tasks("training"))


def test_mbpp_split_ids_exact(benches):
    assert [int(i) for i in ids(benches["mbpp"], "test")] == list(range(11, 511))
    assert [int(i) for i in ids(benches["mbpp"], "val")] == list(range(511, 601))
    assert [int(i) for i in ids(benches["mbpp"], "train")] == list(range(601, 975))
    s_test = [int(i) for i in ids(benches["mbpp-s"], "test")]
    assert min(s_test) >= 11 and max(s_test) <= 510 and len(s_test) == 257


def test_size_overrides(benches):
    aime = get_benchmark("aime", n_train=4, n_val=2, n_test=6)
    default_test = set(ids(benches["aime"], "test"))
    assert [len(aime.load(s, 0)) for s in SPLITS] == [4, 2, 6]
    assert set(ids(aime, "test")) <= default_test  # a smaller test set is a subset of the default one
    assert set(ids(get_benchmark("aime", n_train=8), "test")) == default_test  # n_train leaves test alone
    mbpp = get_benchmark("mbpp", n_test=30)
    t0, t1 = ids(mbpp, "test", 0), ids(mbpp, "test", 1)
    assert len(t0) == 30 and all(11 <= int(i) <= 510 for i in t0) and t0 != t1 and t0 == ids(mbpp, "test", 0)
    with pytest.raises(ValueError, match="only 30 exist"):
        get_benchmark("aime", n_train=20, n_val=5, n_test=15).load("train", 0)
    with pytest.raises(ValueError, match="positive integer"):
        get_benchmark("aime", n_train=0).load("train", 0)


def test_split_helper_is_order_independent():
    keys = [f"k{i}" for i in range(50)]
    a = splits.shuffled_split(keys, "train", 7, (0.5, 0.2), "x")
    b = splits.shuffled_split(list(reversed(keys)), "train", 7, (0.5, 0.2), "x")
    assert a == b and len(a) == 25
    with pytest.raises(ValueError, match="split must be one of"):
        splits.shuffled_split(keys, "dev", 7, (0.5, 0.2), "x")


def test_gpqa_permutation_deterministic_and_tracks_correct_letter(benches):
    gpqa = benches["gpqa"]
    rows = {r["Record ID"]: r for r in gpqa.rows()}
    letters_by_seed = {}
    for seed in (0, 1, 2):
        exs = [e for s in SPLITS for e in gpqa.load(s, seed)]
        assert len(exs) == 198
        for e in exs:
            correct = rows[e.id]["Correct Answer"].strip()
            assert e.meta["options"]["ABCD".index(e.answer)] == correct
            assert f"{e.answer}) {correct}" in e.question
        letters_by_seed[seed] = {e.id: e.answer for e in exs}
        assert letters_by_seed[seed] == {e.id: e.answer for s in SPLITS for e in gpqa.load(s, seed)}
    assert letters_by_seed[0] != letters_by_seed[1] != letters_by_seed[2]
    counts = {L: list(letters_by_seed[0].values()).count(L) for L in "ABCD"}
    assert all(25 < c < 75 for c in counts.values()), counts  # roughly balanced, not always 'A'
    opts = ["right", "w1", "w2", "w3"]
    assert permute(5, "rec", opts) == permute(5, "rec", opts)
    assert len({tuple(permute(s, "rec", opts)[0]) for s in range(20)}) > 5


def test_questions_carry_the_answer_format(benches):
    assert "\\boxed{}" in benches["aime"].load("train", 0)[0].question
    assert "Answer: X" in benches["gpqa"].load("train", 0)[0].question
    q = benches["mbpp"].load("test", 0)[0]
    assert q.id == "11" and "remove first and last occurrence" in q.question
    assert q.answer[0] in q.question and q.answer[1] not in q.question and "```python" in q.question
    arc = benches["arc"].load("train", 0)[0]
    assert "Example 1\nInput:" in arc.question and "Test input:" in arc.question


def test_hub_source_goes_through_datasets(monkeypatch):
    import datasets

    calls = []

    def fake_load(hub_id, config=None):
        calls.append((hub_id, config))
        return {"train": [{"id": f"p{i}", "problem": f"Problem {i}", "answer": str(i)} for i in range(6)]}

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    aime = get_benchmark("aime", source="hub")
    exs = [e for s in SPLITS for e in aime.load(s, 0)]
    assert calls == [("math-ai/aime25", None)] and sorted(e.answer for e in exs) == list(range(6))

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(data.DatasetMissing, match=r"Idavidrein/gpqa \(gpqa_diamond\).*source: local"):
        get_benchmark("gpqa", source="hub").load("test", 0)
    with pytest.raises(ValueError, match="source must be one of local, hub"):
        get_benchmark("mbpp", source="kaggle").load("test", 0)
