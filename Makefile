# The two commands a fresh machine needs: `make run` and `make test`.
# Both create .venv on first use; nothing else has to be installed by hand.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test soak lint fmt bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("tracesd needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

# Stamps: reinstall when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run  ## the daemon in the foreground, default config
	$(BIN)/tracesd run $(ARGS)

test: $(VENV)/.installed-dev  ## the whole test suite
	$(BIN)/python -m pytest $(ARGS)

soak: $(VENV)/.installed-dev  ## the fault suite's long real-time variants (minutes each)
	$(BIN)/python -m pytest -m soak $(ARGS)

lint: $(VENV)/.installed-dev  ## format check, lint, types
	$(BIN)/ruff format --check tracesd tests bench
	$(BIN)/ruff check tracesd tests bench
	$(BIN)/mypy

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff format tracesd tests bench
	$(BIN)/ruff check --fix tracesd tests bench

bench: $(VENV)/.installed-dev  ## benchmarks; numbers go to the README table
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
