# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-parts lint typecheck core-test pytest pytest-pure install core clean bench bench-audit soak postgres softhsm prometheus fuzz fuzz-audit openapi console-screenshots chromium

# (Re)install when the project metadata changes; a bare `make test` keeps the venv current.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	@touch $(STAMP)

# The compiled transform core (core/, Rust + PyO3, built by maturin through pip). Rebuilt when
# its sources change. Without a Rust toolchain the proxy runs its pure-Python core (same bytes,
# slower) and this says so; a build that starts and fails stops make.
CORE_SRC   := $(wildcard core/Cargo.toml core/Cargo.lock core/pyproject.toml core/src/*.rs)
CORE_STAMP := $(VENV)/.core-installed
$(CORE_STAMP): $(STAMP) $(CORE_SRC)
	@if command -v cargo >/dev/null 2>&1; then \
	    echo "building the compiled core (core/, Rust) into $(VENV) ..."; \
	    $(BIN)/python -m pip install --quiet --force-reinstall --no-deps ./core && touch $@; \
	else \
	    echo "note: no Rust toolchain (cargo) found: phi-proxy runs its pure-Python core"; \
	    echo "      (same bytes, slower). Install Rust and run make again to build core/."; \
	fi

install: $(STAMP) $(CORE_STAMP)
core: $(CORE_STAMP)

# The demo: a naive portal behind phi-proxy with synthetic patients; Ctrl-C stops and cleans up.
# Ports: make run DEMO_ARGS="--port 18080 --portal-port 18081 --admin-port 19090"
DEMO_ARGS ?=
run: $(STAMP) $(CORE_STAMP)
	$(BIN)/phi-proxy demo $(DEMO_ARGS)

# The admin API's OpenAPI document (a test keeps it equal to what /openapi.json serves).
openapi: $(STAMP)
	$(BIN)/python -m proxy.admin_api.openapi > docs/admin-api.openapi.json

# PNG screenshots of every console view for docs/console.md (needs Debian's chromium:
# bash scripts/test-chromium). The views are listed once, in proxy/console/nav.py.
console-screenshots: $(STAMP) $(CORE_STAMP)
	$(BIN)/python scripts/console_screenshots.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict proxy keys

# pytest-xdist: PYTEST_WORKERS processes for the main pytest run, PYTEST_PURE_WORKERS for the
# pure-core run (conftest.py says what a test must do to run in parallel; 0 runs the tests in
# one process, one at a time). Four main workers on a 2-core machine: many tests spend most of
# their time waiting (on a browser, Prometheus, a served proxy), and the CPU they leave idle
# goes to the others. loadscope: a class's tests, or a module's test functions, run on one
# worker, so a module- or class-scoped fixture is made once.
PYTEST_WORKERS ?= 4
PYTEST_PURE_WORKERS ?= 2
PYTEST_ARGS := -n $(PYTEST_WORKERS) --dist loadscope

# The tests start hundreds of Python processes (CLIs, `serve`, its workers). With bytecode
# writing off (PYTHONDONTWRITEBYTECODE in the environment), each would compile the project's
# modules from source again, and pytest would rewrite every test module in every worker: the
# test targets let Python keep its __pycache__ folders (git ignores them).
pytest pytest-pure: export PYTHONDONTWRITEBYTECODE :=

# pytest rewrites the asserts of each test module and caches the result beside it (~7 s of CPU
# for all of them). On a fresh clone the six workers of the two runs would each do it at once;
# one collection here does it first, and only again when a test file changed. (A collection
# error is left to the pytest runs to report.)
TEST_SOURCES := conftest.py $(shell find tests -name '*.py' 2>/dev/null)
$(VENV)/.tests-primed: $(STAMP) $(TEST_SOURCES)
	@$(BIN)/pytest --collect-only -q -p no:cacheprovider >/dev/null 2>&1 || true
	@touch $@
pytest pytest-pure: $(VENV)/.tests-primed

pytest: $(STAMP) $(CORE_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The transform and black-box suites again on the pure-Python core: both cores must hold.
pytest-pure: $(STAMP)
	PHI_PROXY_PURE=1 $(BIN)/pytest -n $(PYTEST_PURE_WORKERS) --dist loadscope tests/transform tests/blackbox

# The compiled core's own unit tests (Rust), when a toolchain is there.
core-test:
	@if command -v cargo >/dev/null 2>&1; then MAKEFLAGS= cargo test --quiet --manifest-path core/Cargo.toml; \
	else echo "note: no Rust toolchain (cargo): core/'s Rust unit tests were not run"; fi

# All five parts at once (most of a test's time is spent waiting on sockets and processes, so
# they overlap well even on 2 cores). Each part's output is printed in one piece when it ends;
# a failing part does not stop the others; `make test` then fails, make naming each failed
# part ("make[1]: *** [Makefile:N: pytest] Error 1").
test: $(STAMP) $(CORE_STAMP)
	@echo "make test: pytest, pytest-pure, core-test, typecheck and lint run in parallel;"
	@echo "           each one's output appears when it finishes."
	@$(MAKE) --no-print-directory --keep-going -j5 --output-sync=target test-parts
	@echo "make test: all parts passed"

test-parts: pytest pytest-pure core-test typecheck lint

# Side-by-side benchmark (not part of `make test`; ~10 min; installs wrk/nginx-light if root).
bench: $(STAMP) $(CORE_STAMP)
	cd bench && $(CURDIR)/$(BIN)/python run.py

# phi-audit verify and report on a 1,000,000-event trail (also part of `make bench`; the trail
# is written once, ~1-3 min, and cached under $TMPDIR/phi-bench-audit). AUDIT_EVENTS=70000 for less.
AUDIT_EVENTS ?= 1000000
bench-audit: $(STAMP) $(CORE_STAMP)
	cd bench && $(CURDIR)/$(BIN)/python audit_scale.py --events $(AUDIT_EVENTS)

# 10 minutes at saturation: 0 errors and RSS growth < 10% (SOAK_MINUTES=1 for a short run).
SOAK_MINUTES ?= 10
soak: $(STAMP) $(CORE_STAMP)
	cd bench && $(CURDIR)/$(BIN)/python soak.py --minutes $(SOAK_MINUTES)

# A PostgreSQL server on 127.0.0.1:5432 with database `test` for the PostgreSQL tests (what CI
# does): installs and starts a throwaway one when none answers (root only).
postgres:
	bash scripts/test-postgres

# SoftHSM2 for the PKCS#11 KEK tests (what CI does): installs Debian's softhsm2 when missing
# (root only); each test session makes its own throwaway token.
softhsm:
	bash scripts/test-softhsm

# Prometheus and promtool for the metrics tests (what CI does): installs Debian's prometheus
# when missing; the tests start their own server on a free port.
prometheus:
	bash scripts/test-prometheus

# Debian's chromium for the console's browser tests and screenshots (root; as CI does).
chromium:
	bash scripts/test-chromium

# Fuzz the compiled core against the pure-Python core (atheris/libFuzzer); FUZZ_MINUTES=10.
FUZZ_MINUTES ?= 1
fuzz: $(STAMP) $(CORE_STAMP)
	$(BIN)/python -m pip install --quiet 'atheris>=2.3'
	$(BIN)/python fuzz/fuzz_cores.py --minutes $(FUZZ_MINUTES)

# Fuzz the compiled audit-trail check against the Python one (phi-audit verify/report).
fuzz-audit: $(STAMP) $(CORE_STAMP)
	$(BIN)/python -m pip install --quiet 'atheris>=2.3'
	$(BIN)/python fuzz/fuzz_audit.py --minutes $(FUZZ_MINUTES)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis core/target
