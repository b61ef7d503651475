# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest install clean bench soak postgres

# (Re)install when the project metadata changes; a bare `make test` keeps the venv current.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	@touch $(STAMP)

install: $(STAMP)

# The demo: a naive portal behind phi-proxy with synthetic patients; Ctrl-C stops and cleans up.
# Ports: make run DEMO_ARGS="--port 18080 --portal-port 18081 --admin-port 19090"
DEMO_ARGS ?=
run: $(STAMP)
	$(BIN)/phi-proxy demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict proxy keys

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

# Side-by-side benchmark (not part of `make test`; ~10 min; installs wrk/nginx-light if root).
bench: $(STAMP)
	cd bench && $(CURDIR)/$(BIN)/python run.py

# 10 minutes at saturation: 0 errors and RSS growth < 10% (SOAK_MINUTES=1 for a short run).
SOAK_MINUTES ?= 10
soak: $(STAMP)
	cd bench && $(CURDIR)/$(BIN)/python soak.py --minutes $(SOAK_MINUTES)

# A PostgreSQL server on 127.0.0.1:5432 with database `test` for the PostgreSQL tests (what CI
# does): installs and starts a throwaway one when none answers (root only).
postgres:
	bash scripts/test-postgres

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
