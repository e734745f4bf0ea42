# Two commands for a fresh clone: `make run` (set up + default matrix), `make test` (set up + all tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup browser run test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

PLUGINS := $(wildcard plugins/*/pyproject.toml)

# torch is pinned to the build this project is measured with (installs from the machine's disk here);
# every first-party plugin distribution under plugins/ is installed beside the core; the `ray` extra lets the
# tests run --executor ray, the `explain` extra (grad-cam) `oodbench explain`.
# The build's output goes to $(LOG); the terminal gets a line per step (and the log's tail if a step fails).
LOG := $(VENV)/setup.log
STEP = run_step() { echo "make: $$1"; shift; "$$@" >>$(LOG) 2>&1 || { tail -n 40 $(LOG); \
  echo "make: setup failed; the whole log is $(LOG)"; exit 1; }; }; run_step

$(STAMP): pyproject.toml Makefile $(PLUGINS) | $(BIN)/python
	@: > $(LOG)
	@$(STEP) "upgrading pip (log: $(LOG))" $(BIN)/python -m pip install --quiet --upgrade pip
	@$(STEP) "installing torch 2.14.1 and torchvision 0.29.1" \
	  $(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	@$(STEP) "installing memtorch, compiled against torch (5-7 minutes the first time, seconds from pip's cache)" \
	  bash plugins/oodbench-memristor/install-memtorch.sh $(BIN)/python  # memtorch (GPL-3.0)
	@$(STEP) "installing oodbench and the plugins under plugins/ (editable)" \
	  $(BIN)/python -m pip install --quiet -e '.[test,ray,explain]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	@touch $(STAMP)
	@echo "make: set up in $(VENV)"

setup: $(STAMP)

# Headless Chromium and its driver (Debian packages) for the HTML report's browser test; installing needs
# root. Where they cannot be installed the test skips and says why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { mkdir -p $(VENV); \
	  echo "make: installing chromium and chromium-driver (log: $(VENV)/browser.log)"; \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } \
	    > $(VENV)/browser.log 2>&1; } || \
	  echo "make: could not install chromium and chromium-driver: the HTML report's browser test will skip"

run: setup
	@echo "make: running the default matrix (quick): a line per finished cell when not on a terminal"
	$(BIN)/oodbench run --matrix

# Two pytest-xdist workers, a test file apiece at a time (module fixtures are built once), one torch thread each
# (tests/conftest.py): the suite's CPU time spread over both cores. `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2
test: setup browser
	@echo "make: running the test suite (pytest, $(TEST_WORKERS) workers)"
	$(BIN)/python -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

bench: setup
	$(BIN)/python -m pytest tests/benchmarks --benchmark-only --benchmark-group-by=group
