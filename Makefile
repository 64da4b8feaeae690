# The two commands a fresh machine needs: `make run` and `make test`.
# Both create .venv on first use; nothing else has to be installed by hand.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test test-latest lock soak lint fmt bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("tracesd needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

# Installs come from hashed lock files of exact versions (requirements/*.lock), so a new
# release on the registry never changes what `make test` or CI runs. pyproject.toml keeps
# the compatible ranges users get from `pip install .`; `make lock` re-resolves the locks
# within those ranges, `make test-latest` tries the newest releases before a refresh.
RUN_LOCK := requirements/run.lock
DEV_LOCK := requirements/dev.lock
PIP       = $(1)/python -m pip --quiet --disable-pip-version-check
LOCKFLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --all-build-deps \
             --no-emit-find-links --no-emit-index-url --no-emit-trusted-host

# Stamps: reinstall when a lock file or pyproject.toml changes. The project itself goes in
# with --no-deps and no build isolation, so nothing outside the lock is ever installed;
# `pip check` then fails the install when pyproject.toml's ranges and the lock disagree.
$(VENV)/.installed-run: pyproject.toml $(RUN_LOCK) | $(BIN)/python
	$(call PIP,$(BIN)) install --require-hashes -r $(RUN_LOCK)
	$(call PIP,$(BIN)) install --no-deps --no-build-isolation -e .
	$(call PIP,$(BIN)) check  # the lock still satisfies pyproject.toml's ranges
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(DEV_LOCK) | $(BIN)/python
	$(call PIP,$(BIN)) install --require-hashes -r $(DEV_LOCK)
	$(call PIP,$(BIN)) install --no-deps --no-build-isolation -e .
	$(call PIP,$(BIN)) check
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run  ## the daemon in the foreground, default config
	$(BIN)/tracesd run $(ARGS)

test: $(VENV)/.installed-dev  ## the whole test suite
	$(BIN)/python -m pytest $(ARGS)

# The suite against the newest releases that pyproject.toml's ranges allow, in a venv of its
# own (not in .ci/run: a release must never break a landing). Run it before `make lock`.
LATEST := .venv-latest
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(call PIP,$(LATEST)/bin) install --upgrade pip
	$(call PIP,$(LATEST)/bin) install --upgrade -e '.[test,dev]'
	$(LATEST)/bin/python -m pip list --format=freeze --exclude-editable
	$(LATEST)/bin/python -m pytest $(ARGS)

# Re-resolve both locks to the newest versions within pyproject.toml's ranges, with hashes.
lock: $(VENV)/.installed-dev
	$(BIN)/pip-compile $(LOCKFLAGS) --upgrade -o $(RUN_LOCK) pyproject.toml
	$(BIN)/pip-compile $(LOCKFLAGS) --upgrade --extra test --extra dev -c $(RUN_LOCK) \
	    -o $(DEV_LOCK) pyproject.toml

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
	rm -rf $(VENV) $(LATEST) .pytest_cache .mypy_cache .ruff_cache *.egg-info
