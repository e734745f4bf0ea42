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
$(STAMP): pyproject.toml Makefile $(PLUGINS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	bash plugins/oodbench-memristor/install-memtorch.sh $(BIN)/python  # memtorch (GPL-3.0), compiled against torch
	$(BIN)/python -m pip install --quiet -e '.[test,ray,explain]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $(STAMP)

setup: $(STAMP)

# Headless Chromium and its driver (Debian packages) for the HTML report's browser test; installing needs
# root. Where they cannot be installed the test skips and says why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } || \
	  echo "make: could not install chromium and chromium-driver: the HTML report's browser test will skip"

run: setup
	$(BIN)/oodbench run --matrix

test: setup browser
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m pytest tests/benchmarks --benchmark-only --benchmark-group-by=group
