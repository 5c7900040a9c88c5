"""Bad input ends in one clear sentence before any work: configs, keys, endpoints; keys never leak."""

from __future__ import annotations

import pytest

from harness.aio import run_sync
from harness.cli import main
from harness.config import ConfigError, load_config
from harness.llm.session import open_llms

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def write(tmp_path, text: str):
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


def test_shipped_configs_validate():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path)


@pytest.mark.parametrize("text,field,msg", [
    ("llm:\n  task:\n    temprature: 0.5\n", "llm.task.temprature", "is not a setting"),
    ("llm:\n  task:\n    max_tokens: lots\n", "llm.task.max_tokens", "integer"),
    ("seeds: []\n", "seeds", "at least one seed"),
    ("llm:\n  cache:\n    mode: sometimes\n", "llm.cache.mode", "read-write"),
    ("benchmarks:\n  - n_test: 3\n", "benchmarks.0.name", "is required"),
])
def test_malformed_config_names_field_and_file(tmp_path, text, field, msg):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(p) in str(info.value) and f"'{field}'" in str(info.value) and msg in str(info.value)


def test_cli_prints_one_sentence_for_bad_config(tmp_path, capsys):
    p = write(tmp_path, "nmae: typo\n")
    assert main(["check-config", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'nmae'" in err and "Traceback" not in err


def test_missing_api_key_reported_before_any_request(tmp_path, loopback, monkeypatch):
    monkeypatch.delenv("SEPO_TEST_KEY", raising=False)
    cfg = load_config(write(tmp_path, f"llm:\n  task:\n    base_url: {loopback.url}\n    model: m\n"
                                      f"    api_key_env: SEPO_TEST_KEY\n  prompt:\n    base_url: {loopback.url}\n"
                                      "    model: m\n"))
    with pytest.raises(ConfigError, match="set the environment variable SEPO_TEST_KEY"):
        with open_llms(cfg.llm):
            pass
    assert loopback.requests == []


def test_unreachable_endpoint_reported_before_any_work(tmp_path):
    cfg = load_config(write(tmp_path, "llm:\n  task:\n    base_url: http://127.0.0.1:9/v1\n    model: m\n"
                                      "  prompt:\n    base_url: http://127.0.0.1:9/v1\n    model: m\n"))
    with pytest.raises(ConfigError, match="task endpoint http://127.0.0.1:9/v1 is not reachable"):
        with open_llms(cfg.llm):
            pass


def test_api_key_never_reaches_disk_or_logs(tmp_path, loopback, monkeypatch, capsys, caplog):
    secret = "sk-test-SECRET-4f9a2c7e1b"
    monkeypatch.setenv("SEPO_TEST_KEY", secret)
    cache = tmp_path / "cache.sqlite"
    cfg = load_config(write(tmp_path, f"llm:\n  cache:\n    path: {cache}\n  task:\n    base_url: {loopback.url}\n"
                                      f"    model: m\n    api_key_env: SEPO_TEST_KEY\n  prompt:\n"
                                      f"    base_url: {loopback.url}\n    model: m\n    api_key_env: SEPO_TEST_KEY\n"))
    with open_llms(cfg.llm) as llms:
        for i in range(3):
            run_sync(llms.task.chat([{"role": "user", "content": f"q{i}"}]))
        summary = repr(llms.ledger.summary()) + repr(llms.task.endpoint)
    assert len(loopback.requests) == 3
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    out = capsys.readouterr()
    assert secret.encode() not in written
    assert secret not in out.out + out.err + caplog.text + summary


def test_unreachable_docker_is_one_sentence_before_any_work(tmp_path, loopback, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    cfg = write(tmp_path, f"benchmarks: [{{name: mbpp, n_test: 2}}]\nllm:\n  task: {{base_url: '{loopback.url}', "
                          f"model: m}}\n  prompt: {{base_url: '{loopback.url}', model: m}}\n")
    assert main(["eval", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Docker engine not reachable" in err and "make docker" in err and "Traceback" not in err
    assert loopback.requests == []


def test_missing_dataset_is_one_sentence(tmp_path, loopback, capsys):
    cfg = write(tmp_path, f"data_dir: {tmp_path}/nowhere\nbenchmarks: [{{name: aime}}]\nllm:\n"
                          f"  task: {{base_url: '{loopback.url}', model: m}}\n"
                          f"  prompt: {{base_url: '{loopback.url}', model: m}}\n")
    assert main(["eval", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "SEPO_DATA_DIR" in err and loopback.requests == []


@pytest.mark.filterwarnings("ignore:LocalSandbox is not isolation")
def test_code_benchmarks_get_a_sandbox_whatever_their_alias(tmp_path):
    from harness.config import parse_config
    from harness.grid import sandbox_for

    for name, opts, needs in [("mbpp", {}, True), ("MBPP-sanitized", {}, True), ("gpqa", {}, False),
                              ("custom", {"scorer": "python"}, True), ("custom", {"scorer": "exact"}, False)]:
        cfg = parse_config({"benchmarks": [{"name": name, "options": opts}],
                            "sandbox": {"backend": "local", "allow_local": True}})
        sb = sandbox_for(cfg, [(b.name, b.options) for b in cfg.benchmarks])
        assert (sb is not None) == needs, name
        if sb is not None:
            sb.close()


def test_corrupted_model_is_one_sentence_from_the_cli(tmp_path, monkeypatch, capsys):
    from harness.llm.local import MODELS

    monkeypatch.setenv("SEPO_CACHE_DIR", str(tmp_path))
    bad = tmp_path / "models" / MODELS["smollm2-135m"].filename
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"GGUF but truncated")
    assert main(["eval", "--config", str(ROOT / "configs" / "smoke.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "corrupted" in err and "Traceback" not in err


@pytest.mark.parametrize("setting, servers, concurrent, expected", [
    (None, 1, False, "cores"), (None, 1, True, "cores"),  # one server: every core
    (None, 2, False, "cores"),  # task and prompt servers taking turns: every core each
    (None, 2, True, "half"),  # busy at the same time (cells in parallel): the cores split
    (3, 2, True, 3),  # llm.local_threads wins
])
def test_local_threads_split_cores_only_when_servers_run_at_once(monkeypatch, setting, servers, concurrent,
                                                                 expected):
    from harness.config import LLMConfig
    from harness.llm.session import local_threads

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    want = {"cores": 4, "half": 2}.get(expected, expected)
    assert local_threads(LLMConfig(local_threads=setting), servers, concurrent) == want


@pytest.mark.parametrize("value, expected", [("python", "python"), ("llama-server", "llama-server"),
                                             ("vllm", "SEPO_LOCAL_SERVER='vllm' is not an embedded server")])
def test_local_server_env_override(tmp_path, monkeypatch, value, expected):
    """SEPO_LOCAL_SERVER picks the embedded server for every config (e.g. to time the fallback)."""
    monkeypatch.setenv("SEPO_LOCAL_SERVER", value)
    path = tmp_path / "c.yaml"
    path.write_text("benchmarks: [{name: mbpp}]\n")
    if value == "vllm":
        with pytest.raises(ConfigError, match=expected):
            load_config(path)
    else:
        assert load_config(path).llm.local_server == expected
