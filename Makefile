# `make demo` and `make test` work on a fresh clone: each sets up what it needs first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# papermill must start the kernel in this venv, whatever kernels the user has installed.
export JUPYTER_DATA_DIR := $(CURDIR)/$(VENV)/share/jupyter
unexport JUPYTER_PATH

DEMO_CONFIG ?= configs/sagemaker_config.local.yaml

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# The launch environment: sagebook and the example's training requirements (local runs).
$(STAMP): pyproject.toml sagemaker_container/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e . -r sagemaker_container/requirements.txt
	touch $@

# The test tools on top of it.
TEST_STAMP := $(VENV)/.test-stamp
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP)
	mkdir -p experiments
	$(BIN)/papermill notebooks/launch.ipynb experiments/demo-launch.ipynb \
		-p config $(DEMO_CONFIG) --log-output
	@echo
	@echo "Done. The run's record is the folder printed as 'record:' just above;"
	@echo "the executed notebook is experiments/demo-launch.ipynb (and notebook.ipynb in the record)."

test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
