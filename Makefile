# From a fresh clone (README "Quick start"): the environment, then the job, in one command each.
#   make smoke   .venv with the MLX backend for this machine, then the smoke pipeline
#   make test    .venv with the test extras (CPU PyTorch without an NVIDIA GPU), then the tests
# Both are idempotent: a second run reinstalls only when pyproject.toml or the installer changed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: smoke test install install-test
smoke: install
	$(BIN)/minillm pipeline --smoke-test

test: install-test
	$(BIN)/python -m pytest -q

install: $(VENV)/.minillm-installed
install-test: $(VENV)/.minillm-installed-test

$(VENV)/.minillm-installed: pyproject.toml launch/install.py
	$(PYTHON) launch/install.py --venv $(VENV)
	touch $@

$(VENV)/.minillm-installed-test: pyproject.toml launch/install.py
	$(PYTHON) launch/install.py --venv $(VENV) --test
	touch $@ $(VENV)/.minillm-installed
