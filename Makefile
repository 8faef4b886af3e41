# `make demo` and `make test` work on a fresh clone: each sets up what it needs first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# papermill must start the kernel in this venv, whatever kernels the user has installed.
export JUPYTER_DATA_DIR := $(CURDIR)/$(VENV)/share/jupyter
unexport JUPYTER_PATH

DEMO_CONFIG ?= configs/sagemaker_config.local.yaml

.PHONY: setup demo test test-quick lint bench clean browser-venv sdk-venv

setup: $(STAMP)

# The launch environment: sagebook with JupyterLab and the dashboard's plots (the notebook
# extra), and the example's training requirements (local runs).
$(STAMP): pyproject.toml sagemaker_container/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebook]' -r sagemaker_container/requirements.txt
	touch $@

# The test tools on top of it.
TEST_STAMP := $(VENV)/.test-stamp
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# voila, for the browser tests of notebooks/edit_config.ipynb, in a venv of its own: it slows
# every nbformat import (by ~1 s), so it stays out of the one that runs launches. Its kernel
# launches runs from the form, hence the training requirements. playwright, which drives
# chromium, is a plain client and comes with the test extra.
BROWSER_VENV := .venv-browser
BROWSER_STAMP := $(BROWSER_VENV)/.installed-stamp
browser-venv: $(BROWSER_STAMP)
$(BROWSER_STAMP): pyproject.toml sagemaker_container/requirements.txt
	test -x $(BROWSER_VENV)/bin/python || $(PYTHON) -m venv $(BROWSER_VENV)
	$(BROWSER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BROWSER_VENV)/bin/python -m pip install --quiet -e '.[voila]' \
		-r sagemaker_container/requirements.txt
	touch $@

# The SageMaker Python SDK v3 (the sdk extra), for the parity test and the launch benchmark,
# in a venv of its own: its ~1 GB of dependencies and seconds of import stay out of
# the one that runs launches. The sagemaker-training toolkit (the toolkit extra) joins it: the
# reference of the SM_* variables of local runs, and the mlflow extra: the MLflow export's test
# starts a real tracking server from it.
SDK_VENV := .venv-sdk
SDK_STAMP := $(SDK_VENV)/.installed-stamp
sdk-venv: $(SDK_STAMP)
$(SDK_STAMP): pyproject.toml
	test -x $(SDK_VENV)/bin/python || $(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SDK_VENV)/bin/python -m pip install --quiet -e '.[sdk,toolkit,mlflow]'
	touch $@

# The kernel papermill starts warns that it talks over TCP without encryption: to papermill
# alone, on the loopback, with signed messages; the demo leaves that one line out.
demo: SHELL := /bin/bash
demo: .SHELLFLAGS := -o pipefail -c
demo: $(STAMP)
	mkdir -p experiments
	{ $(BIN)/papermill notebooks/launch.ipynb experiments/demo-launch.ipynb \
		-p config $(DEMO_CONFIG) --log-output 2>&1 1>&3 \
		| sed '/Kernel is running over TCP without encryption/d' >&2; } 3>&1
	@echo
	@echo "Done. The run's record is the folder printed as 'record:' just above; the executed"
	@echo "notebook is experiments/demo-launch.ipynb, and joins the record as notebook.ipynb a"
	@echo "moment after papermill exits ('sagebook show RUN' then says: notebook status: completed)."

test: $(TEST_STAMP) $(BROWSER_STAMP) $(SDK_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -n auto --maxprocesses 4

# The pass to run while working: every test but those marked slow (full launches, kernels,
# browsers, the MLflow server, many processes at once); `make test` runs them all.
test-quick: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -m "not slow" -n auto

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

bench: $(TEST_STAMP) $(SDK_STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(BROWSER_VENV) $(SDK_VENV) .pytest_cache .ruff_cache test-artifacts
