# Two entry points that work on a fresh machine with Python 3.11:
#   make demo   - create .venv, install, run the end-to-end demo on embedded servers
#   make test   - create .venv, install, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The tests also cover the optional extras (MLflow lineage for fs trainset / fs promote).
$(BIN)/.installed-test: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[dev,mlflow]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/fs demo

test: $(BIN)/.installed-test
	$(BIN)/pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(BIN)/.installed
	for b in tests/benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) feature_repo/data .pytest_cache
