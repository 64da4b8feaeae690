# The two commands a fresh machine needs: `make run` and `make test`.
# Both create .venv on first use; nothing else has to be installed by hand.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test test-latest lock soak lint fmt bench clean traces-cli traces-cli-if-npm compat

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

# Two workers (pytest-xdist): the suite is mostly waiting on real daemons, servers and
# timeouts, so two halves finish in about half the time, also with the other core busy.
# Not `auto`: every test is written to pass beside one other, and more workers would put
# more real daemons on the machine than the suite is checked with. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2

test: $(VENV)/.installed-dev traces-cli-if-npm  ## the whole test suite (with the compat suite when npm is there)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(ARGS)

# The compatibility suite against the real Traces CLI (pytest -m traces_cli) alone.
compat: $(VENV)/.installed-dev traces-cli  ## the compatibility suite against the pinned real Traces CLI
	$(BIN)/python -m pytest -m traces_cli $(ARGS)

# The suite against the newest releases that pyproject.toml's ranges allow, in a venv of its
# own (not in .ci/run: a release must never break a landing). Run it before `make lock`.
LATEST := .venv-latest
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(call PIP,$(LATEST)/bin) install --upgrade pip
	$(call PIP,$(LATEST)/bin) install --upgrade -e '.[test,dev]'
	$(LATEST)/bin/python -m pip list --format=freeze --exclude-editable
	$(LATEST)/bin/python -m pytest -n $(TEST_WORKERS) $(ARGS)

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

bench: $(VENV)/.installed-dev traces-cli-if-npm  ## benchmarks; numbers go to the README table
	$(BIN)/python -m bench $(ARGS)

# The real Traces CLI, pinned, for the compatibility tests against it (tests/tracescli.py
# finds it). npm installs the platform package alone into .cache/traces-cli/ (git-ignored):
# no global install, no install scripts, no package.json or lock file written. The stamp
# carries the version, so changing the pin re-installs and nothing else does. Only Linux
# x86_64 has a 0.6.31 binary on the registry: elsewhere, or without npm, the target says
# so and fails, and the tests that need the CLI skip with that reason.
TRACES_CLI_VERSION := 0.6.31
TRACES_CLI_PACKAGE := @traces-sh/traces-linux-x64
TRACES_CLI_DIR     := .cache/traces-cli
TRACES_CLI_STAMP   := $(TRACES_CLI_DIR)/.installed-$(TRACES_CLI_VERSION)
TRACES_CLI         := $(TRACES_CLI_DIR)/node_modules/$(TRACES_CLI_PACKAGE)/bin/traces

traces-cli: $(TRACES_CLI_STAMP)  ## the pinned real Traces CLI, at $(TRACES_CLI)

# `make test` installs the CLI for the compat suite whenever npm is present. Without npm,
# or when the install fails (no registry, another platform), it says the suite is skipped
# and goes on (each compat test then skips with the reason), except under CI
# (TRACESD_REQUIRE_TRACES_CLI=1, set by .ci/run), where a missing CLI fails the run.
traces-cli-if-npm:
	@if ! command -v npm >/dev/null; then \
	    echo "compat suite skipped: npm not found (install Node.js/npm to run it)" >&2; \
	    [ "$$TRACESD_REQUIRE_TRACES_CLI" != 1 ] || { echo "TRACESD_REQUIRE_TRACES_CLI=1: failing" >&2; exit 1; }; \
	elif ! $(MAKE) --no-print-directory -s traces-cli; then \
	    echo "compat suite skipped: make traces-cli failed (see above)" >&2; \
	    [ "$$TRACESD_REQUIRE_TRACES_CLI" != 1 ] || { echo "TRACESD_REQUIRE_TRACES_CLI=1: failing" >&2; exit 1; }; \
	fi

$(TRACES_CLI_STAMP):
	@[ "$$(uname -s)-$$(uname -m)" = Linux-x86_64 ] || { echo "traces-cli: $(TRACES_CLI_PACKAGE)@$(TRACES_CLI_VERSION) is Linux x86_64 only, this is $$(uname -s)-$$(uname -m)" >&2; exit 1; }
	@command -v npm >/dev/null || { echo "traces-cli: npm not found; install Node.js/npm, then run make traces-cli" >&2; exit 1; }
	rm -rf $(TRACES_CLI_DIR)
	mkdir -p $(TRACES_CLI_DIR)
	npm install --prefix $(TRACES_CLI_DIR) --no-save --no-package-lock --ignore-scripts \
	    --no-audit --no-fund --loglevel=error $(TRACES_CLI_PACKAGE)@$(TRACES_CLI_VERSION)
	$(TRACES_CLI) --version
	@touch $@

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache .mypy_cache .ruff_cache *.egg-info
