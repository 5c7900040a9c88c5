"""Every mistake a user can make in a config or a flag: one sentence naming the file, the key and the fix,
exit code 2, no traceback. The tables run through `harness.cli.main` in-process (fast); a sample of every
kind runs through the installed `sepo-bench` entry point as a user would and must print the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("sepo-bench")
GOOD = "benchmarks: [{name: sudoku, n_test: 2, options: {size: 4, blanks: 4}}]\n"


def sepo_bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SEPO_PROJECT_DIR"}
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def in_process(*args: str, cwd: Path, capsys, monkeypatch) -> subprocess.CompletedProcess:
    """The same call through harness.cli.main, without a new interpreter."""
    from harness.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("SEPO_PROJECT_DIR", raising=False)
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # --version / --help
        code = exc.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out.out, out.err)


# (config text, the exact error lines after "error: {file}: ")
CONFIG_CASES = [
    ("nmae: typo\n" + GOOD, ["'nmae' is not a setting (did you mean 'name'?); remove or rename it."]),
    ("benchmarks: [{name: gsm8k}]\n",
     ["'benchmarks.0': unknown benchmark 'gsm8k'; known benchmarks: aime, arc, custom, gpqa, mbpp, sudoku."]),
    ("benchmarks: [{name: sudoku, options: {sise: 4}}]\n",
     ["'benchmarks.0' (sudoku): benchmark 'sudoku' has no option 'sise'; known options: blanks, n_test, n_train, "
      "n_val, size, source; for 'sise' (did you mean 'size'?)."]),
    ("benchmarks: [{name: aime, options: {n_test: 3}}]\n",
     ["'benchmarks.0.options': n_test belongs at the benchmark entry's top level, not in options; fix the value."]),
    ("benchmarks: [{name: aime, n_test: 40}]\n",
     ["'benchmarks.0' (aime): aime: n_train=10, n_val=5, n_test=40 need 55 items but only 30 exist; ask for "
      "fewer."]),
    (GOOD + "methods:\n  sepo: {generatoins: 3}\n", ["methods.sepo: unknown setting 'generatoins' (did you mean "
                                                    "'generations'?)."]),
    (GOOD + "methods:\n  sepoo: {}\n", ["unknown method 'sepoo' in 'methods.sepoo'; known methods: "
                                       "{methods} (did you mean 'sepo'?)."]),
    ("benchmarks: [{name: mbpp, n_test: 2}]\nsandbox: {backend: local}\n",
     ["'sandbox.backend' is 'local', which runs model-written code without isolation; set sandbox.allow_local: "
      "true to accept that, or use backend: docker."]),
    (GOOD + "llm:\n  task: {base_url: 'http://127.0.0.1:9/v1'}\n",
     ["'llm.task': an endpoint with a base_url needs 'model', the name the server serves; fix the value."]),
    (GOOD + "llm:\n  task: {base_url: '${SEPO_NOT_SET_ANYWHERE}', model: m}\n",
     ["'llm.task.base_url' uses ${SEPO_NOT_SET_ANYWHERE}, which is not set; export it or write "
      "${SEPO_NOT_SET_ANYWHERE:-default}."]),
    ("seeds: [0, 0]\n" + GOOD, ["'seeds': lists a seed twice; fix the value."]),
    ("nmae: x\nseeds: []\nllm: {task: {temprature: 1}}\n" + GOOD,  # several problems: all of them, one a line
     ["'seeds': needs at least one seed; fix the value.",
      "'llm.task.temprature' is not a setting (did you mean 'temperature'?); remove or rename it.",
      "'nmae' is not a setting (did you mean 'name'?); remove or rename it."]),
    ("held_out: [sudokku]\n" + GOOD,
     ["'held_out.0': unknown benchmark 'sudokku' (did you mean 'sudoku'?); name benchmarks from the registry."]),
]


@pytest.mark.parametrize("text,lines", CONFIG_CASES, ids=[f"config{i}" for i in range(len(CONFIG_CASES))])
def test_bad_config_is_one_sentence_per_problem(tmp_path, text, lines, capsys, monkeypatch):
    from harness.methods import METHODS

    cfg = tmp_path / "exp.yaml"
    cfg.write_text(text)
    res = in_process("check-config", str(cfg), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    expected = [f"error: {cfg}: " + line.replace("{methods}", ", ".join(sorted(METHODS))) for line in lines]
    assert (res.returncode, res.stderr.splitlines()) == (2, expected)
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("case,command", [(0, "check-config"), (2, "eval"), (5, "optimize"), (11, "check-config")])
def test_the_entry_point_prints_the_same(tmp_path, case, command, capsys, monkeypatch):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(CONFIG_CASES[case][0])
    args = ["check-config", str(cfg)] if command == "check-config" else [command, "--config", str(cfg)]
    real = sepo_bench(*args, cwd=tmp_path)
    assert real.returncode == 2 and real.stderr.startswith("error: ") and "Traceback" not in real.stderr
    assert real.stderr == in_process(*args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch).stderr


@pytest.mark.parametrize("case", [2, 5, 7, 8])
def test_run_commands_refuse_what_check_config_refuses(tmp_path, case, capsys, monkeypatch):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(CONFIG_CASES[case][0])
    check = in_process("check-config", str(cfg), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    for command in ("eval", "optimize"):
        res = in_process(command, "--config", str(cfg), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
        assert (res.returncode, res.stderr) == (2, check.stderr), command


FLAG_CASES = [
    (["eval", "--limit", "0"], "argument --limit: expected a positive whole number, got 0; see `sepo-bench eval "
     "--help`."),
    (["eval", "--limit", "-1"], "argument --limit: expected a positive whole number, got -1; see `sepo-bench eval "
     "--help`."),
    (["eval", "--limit", "all"], "argument --limit: expected a positive whole number, got 'all'; see `sepo-bench "
     "eval --help`."),
    (["eval", "--seed", "x"], "argument --seed: expected seeds such as 0 or 0,1,2, got 'x'; see `sepo-bench eval "
     "--help`."),
    (["eval", "--seed", "7"], "--seed 7 is not among the config's seeds [0]; add it to 'seeds' in {cfg} or "
     "choose one of them."),
    (["eval", "--benchmarks", "gsm8k"], "--benchmarks names gsm8k, which {cfg} does not list; choose from sudoku."),
    (["optimize", "--fresh", "--resume"], "--fresh and --resume contradict each other; choose one."),
    (["optimize", "--resume"], "--resume: nothing to resume in {run}; drop --resume to start this experiment, "
     "or point --output-dir at the earlier run."),
    (["eval", "--system-prompt-file", "nope.txt"], "--system-prompt-file nope.txt does not exist; pass a text "
     "file with the prompt."),
    (["evaluate"], "argument command: invalid choice: 'evaluate' (choose from 'eval', 'optimize', 'export', "
     "'report', 'models', 'check-config', 'rehearse', 'tune'); see `sepo-bench --help`."),
    (["eval", "--config", "missing.yaml"], "Config file missing.yaml does not exist; pass a YAML file such as "
     "configs/local.yaml."),
]


@pytest.mark.parametrize("argv,line", FLAG_CASES, ids=[" ".join(a) for a, _ in FLAG_CASES])
def test_bad_flag_is_one_sentence(tmp_path, argv, line, capsys, monkeypatch):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("name: flags\n" + GOOD)
    if "--config" not in argv:
        argv = [argv[0], "--config", str(cfg), *argv[1:]] if argv[0] in ("eval", "optimize") else argv
    res = in_process(*argv, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    want = "error: " + line.format(cfg=cfg, run=tmp_path / "runs" / "flags")
    assert (res.returncode, res.stderr.splitlines()) == (2, [want])


def test_version_and_debug(tmp_path):
    res = sepo_bench("--version", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("sepo-bench ")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("nmae: x\n")
    res = sepo_bench("--debug", "check-config", str(cfg), cwd=tmp_path)
    assert res.returncode != 0 and "Traceback" in res.stderr and "ConfigError" in res.stderr


def test_shipped_configs_check_clean(capsys, monkeypatch):
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        res = in_process("check-config", str(path), cwd=ROOT, capsys=capsys, monkeypatch=monkeypatch)
        assert res.returncode == 0, (path, res.stderr)
        assert res.stderr.splitlines()[-1] == f"{path}: no problems found."
        assert '"methods"' in res.stdout and '"budget_per_cell"' in res.stdout
