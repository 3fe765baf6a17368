# Set-up is idempotent: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint setup clean bench-env

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU wheel of torch first, pinned, so pip never pulls the CUDA build.
	if command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install --quiet torch; \
	else $(BIN)/pip install --quiet torch==2.13.0; fi
	$(BIN)/pip install --quiet -e '.[dev,auto,onnx,tensorboard,mlflow,lightning,graph]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/polytask demo

# Two workers on two cores; tests/conftest.py gives each one torch thread. Whole files go to a
# worker (--dist loadfile), so a file's shared fixtures (the two-process run of
# tests/training/test_distributed.py) are built once. The slowest tests are listed so the suite
# stays under its 90 s budget. The few multi-process end-to-end tests (marked `slow`: kill -9 and
# resume, elastic restarts, concurrent runs) run in `make test-slow`; CI runs both.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15 -m "not slow" tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=10 -m slow tests

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples

clean:
	rm -rf $(VENV) runs

# Benchmark environment (benchmarks/step_overhead.py): polytask plus the peers it is compared
# with, kept out of the package's dependencies. torch first and pinned, so nothing upgrades it.
# LibMTL's PyPI release (1.1.5) requires torchvision, which it imports only for its ResNet models
# (from a module torchvision no longer has); the benchmark loads its weighting classes alone, so
# it is installed with --no-deps.
BENCH_VENV := .venv-bench
bench-env: $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed: pyproject.toml
	test -d $(BENCH_VENV) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet torch==2.13.0
	$(BENCH_VENV)/bin/pip install --quiet -e . 'torch==2.13.0'
	$(BENCH_VENV)/bin/pip install --quiet 'torchjd[full]' numpy scipy 'torch==2.13.0'
	$(BENCH_VENV)/bin/pip install --quiet --no-deps LibMTL
	touch $@
