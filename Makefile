# emotune: `make demo` sets up .venv and runs the demo; `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NUMBA_CACHE_DIR ?= $(CURDIR)/.emotune/numba

.PHONY: venv demo test lint typecheck bench clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/emotune demo $(if $(DATA),--data $(DATA),)

lint: $(STAMP)
	$(BIN)/ruff check features spaces search tests benchmarks
	$(BIN)/ruff format --check features spaces search tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy features spaces search

# Debian's Chromium, for the browser tests (dashboard, HTML reports); installed once when missing.
browser:
	@command -v chromium >/dev/null || { apt-get install -y -q chromium >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }

test: lint typecheck browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/deep.py

clean:
	rm -rf $(VENV) .emotune .pytest_cache .mypy_cache .ruff_cache
