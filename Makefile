# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck pytest install clean bench

# (Re)install when the project metadata changes; a bare `make test` keeps the venv current.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
	@touch $(STAMP)

install: $(STAMP)

# Until the demo lands: a key round trip in a throwaway folder (a KEK, a keystore, one token).
run: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && cd "$$tmp" && \
	printf 'keys: {keystore: ./keystore.json, kek: {provider: file, path: ./kek.b64}}\n' > phi.yaml && \
	$(CURDIR)/$(BIN)/phi-keys -c phi.yaml init --generate-kek kek.b64 && \
	$(CURDIR)/$(BIN)/phi-keys -c phi.yaml add-practice practice-a && \
	$(CURDIR)/$(BIN)/phi-keys -c phi.yaml list && \
	echo '123-45-6789' | $(CURDIR)/$(BIN)/phi-keys -c phi.yaml encrypt --practice practice-a --field ssn

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict proxy keys

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
