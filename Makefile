# reviewapp: `make run` serves a populated demo, `make test` runs the whole suite, `make bench` measures.
# Everything installs into .venv/ with pip (never uv or poetry: they miss the local CPU build of torch).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST := $(VENV)/bin/pytest
PORT ?= 8000
# Django debug pages (tracebacks, settings, every URL pattern on a 404) only when asked: `make run DEBUG=1`.
DEBUG ?= 0
STAMP := $(VENV)/.installed
PYTHON ?= $(shell command -v python3.11 || command -v python3)

# Per-suite time budgets (seconds). A suite past its budget fails the run instead of eating CI's 90 minutes.
BUDGET_CORE ?= 1200
BUDGET_DB ?= 1200
BUDGET_BROWSER ?= 420
BUDGET_RELIABILITY ?= 900
BUDGET_CRITIC ?= 420
BUDGET_TRAINERS ?= 300

.PHONY: run test test-core test-db test-browser test-reliability test-critic bench lint format system-deps venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "reviewapp needs Python 3.11 (python3.11 on PATH, or PYTHON=/path/to/python3.11)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ./client -e ".[dev,critic]"
	@touch $(STAMP)

# Debian packages the sandbox and the browser tests need. As root they are installed; otherwise we stop and
# print the exact command.
system-deps:
	@missing=""; \
	command -v git >/dev/null || missing="$$missing git"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v setpriv >/dev/null && command -v prlimit >/dev/null || missing="$$missing util-linux"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Missing system packages:$$missing. Run:"; \
	    echo "  sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

run: venv
	@command -v git >/dev/null || { echo "git is needed: sudo apt-get install -y git"; exit 1; }
	@command -v bwrap >/dev/null || [ "$$REVIEWAPP_ALLOW_UNSANDBOXED" = 1 ] || { \
	  echo "bubblewrap is needed to run patches safely: sudo apt-get install -y bubblewrap"; \
	  echo "(or REVIEWAPP_ALLOW_UNSANDBOXED=1 make run, and every result is flagged 'unsandboxed')"; exit 1; }
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	DEBUG=$(DEBUG) $(PY) manage.py serve --port $(PORT)

test: system-deps venv
	@mkdir -p build
	$(PY) -m playwright --version >/dev/null
	timeout $(BUDGET_CORE) $(PYTEST) tests/scoring/core -q -p no:django -W ignore::pytest.PytestConfigWarning
	timeout $(BUDGET_DB) $(PYTEST) tests -q -m "not browser and not reliability and not critic and not trainers" --ignore=tests/scoring/core
	timeout $(BUDGET_CRITIC) $(PYTEST) tests -q -m critic --ignore=tests/scoring/core
	timeout $(BUDGET_TRAINERS) $(PYTEST) tests -q -m trainers --durations=10 --ignore=tests/scoring/core
	timeout $(BUDGET_BROWSER) $(PYTEST) tests -q -m browser
	timeout $(BUDGET_RELIABILITY) $(PYTEST) tests -q -m reliability

# The database tests only (CI runs them a second time on SQLite, the default every new user gets).
test-db: venv
	timeout $(BUDGET_DB) $(PYTEST) tests -q -m "not browser and not reliability and not critic and not trainers" --ignore=tests/scoring/core

bench: system-deps venv
	$(PY) -m benchmarks

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	@! grep -rnE --include='*.py' 'type: ignore(\[[^]]*\])? *$$' scoring labeling tuning exports critic reviewapp client tests benchmarks \
	  || { echo "each '# type: ignore[code]' says why after it ('# type: ignore[code]  # why')"; exit 1; }

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf build data/work data/cache
