# Two entry points on a fresh machine: `make demo` (the main job on the embedded model) and `make test`.
# Setup is shared and idempotent: a venv with the CPU build of torch, the package, and bubblewrap.

VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch 2.13.0 lies on disk on this machine kind; an unpinned torch would pull a CUDA build.
# On a GPU machine use TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo bench lint typecheck check

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	# llama-cpp-python (the embedded models' engine) builds from its sdist here: 10-20 min on 2 cores.
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip install -q -e '.[dev]'
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q bubblewrap >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null)) \
	      && echo "installed bubblewrap (strongest sandbox level)"; \
	  else echo "warning: bubblewrap missing and not root: the sandbox will use a weaker isolation level" >&2; fi; \
	fi
	touch $@

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The main job: the policy comparison on HumanEval eval-split tasks (disjoint from the calibration split
# that produced the gate thresholds shipped with the axis), ending with the policy table. DEMO_LIMIT=40
# for the issue's 40.
DEMO_LIMIT ?= 4
demo: setup
	$(VENV)/bin/valueagent eval humaneval --split eval --limit $(DEMO_LIMIT) --concurrency 16 \
	    --policies single,always-test,value,logprob-gate --output-dir runs/demo-$(DEMO_LIMIT) --resume

bench: setup
	$(PY) benchmarks/bench_backend.py

# lint-imports: the allowed import directions and no cycles ([tool.importlinter] in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check valueagent graphs tests benchmarks scripts
	$(VENV)/bin/lint-imports

# Strict mypy on the package ([tool.mypy] in pyproject.toml says which flags are still off and why).
typecheck: setup
	$(VENV)/bin/mypy

check: lint typecheck test
