# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
# `make demo` installs what infuse needs to run; `make test` (and `make check`) add the dev extras
# (test tools, lm-eval, linters): two stamps, so a demo never waits for the dev tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test check install install-dev clean bench browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# torch is pinned first: a CPU wheel is provided locally; an unpinned torch would pull CUDA builds.
$(RUNTIME_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e .
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/pip install -e ".[dev]"
	touch $(DEV_STAMP)

install: $(RUNTIME_STAMP)

install-dev: $(DEV_STAMP)

demo: $(RUNTIME_STAMP)
	$(BIN)/python -m infuse.demo

# The web UI's browser tests (tests/test_web_browser.py) drive Debian's Chromium through Playwright.
# Installed with apt where this runs as root; elsewhere those tests are skipped, saying why.
browser:
	@if command -v chromium >/dev/null 2>&1; then echo "browser tests: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get install -y chromium fonts-ipafont-gothic >/dev/null 2>&1 \
	   || (apt-get update >/dev/null 2>&1 && apt-get install -y chromium fonts-ipafont-gothic >/dev/null 2>&1)) \
	  && echo "browser tests: installed chromium" \
	  || echo "note: apt could not install chromium; the browser tests will be skipped"; \
	else echo "note: no chromium, and installing it needs root and apt; the browser tests will be skipped"; fi

test: $(DEV_STAMP) browser
	$(BIN)/python -m pytest

# Lint, format and type checks (CI runs them with the tests).
check: $(DEV_STAMP)
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m ruff format --check src tests benchmarks
	$(BIN)/python -m mypy

bench: $(RUNTIME_STAMP)
	$(BIN)/python benchmarks/retrieval.py

clean:
	rm -rf $(VENV) .demo-workspace
