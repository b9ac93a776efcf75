# slimkit: every target does its own set-up, so `make test` / `make demo` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: setup data test demo bench bench-gpu clean

setup: $(STAMP) data

# Reinstall only when the project's dependency files change (idempotent and fast otherwise).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

data:
	bash scripts/ensure_fashion_mnist.sh

test: setup
	$(PY) -m pytest -q

demo: setup
	$(VENV)/bin/slimkit demo --out runs/demo

bench: setup
	$(PIP) install -q -c constraints.txt -e '.[dev,bench]'
	$(PY) benchmarks/run_all.py

bench-gpu: setup
	$(PIP) install -q -c constraints.txt -e '.[dev,bench]'
	$(PY) benchmarks/run_gpu.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
