# `make test` and `make demo` work from a fresh clone with nothing installed but Python 3.11:
# each creates .venv if it is missing and installs the project into it first (~1-2 min once).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-fast lint demo bench bench-platform reproduce-mnist clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,postgres]'
	touch $(STAMP)

# The suite runs in 2 processes (pytest-xdist, a test file's tests in one process): most tests wait
# on Ray, PostgreSQL or a subprocess, so on 2 cores it takes ~2/3 of one process's time.
# `make test WORKERS=0` runs it in this one process (`WORKERS=auto`: one per core).
WORKERS ?= 2

test: $(STAMP)            # the suite, then ruff (rules in pyproject.toml)
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile
	$(BIN)/ruff check vat_study analysis tests benchmarks scripts

test-fast: $(STAMP)       # the inner loop: science, spec, analyses, the store on SQLite (no Ray, no PostgreSQL)
	$(BIN)/python -m pytest -m "not platform" -q

lint: $(STAMP)            # ruff alone (make test runs it after the suite)
	$(BIN)/ruff check vat_study analysis tests benchmarks scripts

demo: $(STAMP)
	$(BIN)/vat-study run studies/quickstart.yaml
	$(BIN)/vat-study report quickstart

bench: $(STAMP)            # a few minutes: VAT step time vs a minimal step (MLP, Conv-Small); xi fidelity
	$(BIN)/python -m benchmarks.step_time
	$(BIN)/python -m benchmarks.step_time --model conv_small_svhn --rounds 3 --steps 3
	$(BIN)/python -m benchmarks.xi_fidelity

bench-platform: $(STAMP)   # ~40 min on 2 cores: lanes, batched seeds; platform overhead and scaling
	$(BIN)/python -m benchmarks.lanes --quick
	$(BIN)/python -m benchmarks.batched_seeds
	$(BIN)/python -m benchmarks.study_overhead
	$(BIN)/python -m benchmarks.platform_overhead

reproduce-mnist: $(STAMP) # ~2.5 h on 2 cores: the committed MNIST reproductions into results/ (needs the MNIST files)
	VAT=$(BIN)/vat-study bash scripts/reproduce_mnist_cpu.sh

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
