# Every target bootstraps .venv itself, so a fresh clone needs nothing but Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := exposure keyserver verification crypto benchmarks
# `make fuzz` runs each property test this many times its usual examples.
FUZZ_FACTOR ?= 20
PROTO_DIR := exposure/export/proto
REVISION_PROTO_DIR := keyserver/proto
# The schema is read from ../shared (never copied here); only the generated code is committed.
PROTO_SRC := ../shared/interop/proto

.DEFAULT_GOAL := help
.PHONY: help venv run demo test fuzz screenshots lint typecheck check proto clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install the project with its dev tools

run: $(STAMP) ## start the service on the embedded SQLite default (127.0.0.1:8080, state in ./var)
	$(BIN)/exposure serve

demo: $(STAMP) ## simulate 1,000 phones against a real server in a temporary directory
	$(BIN)/exposure demo

test: $(STAMP) ## run the whole test suite (PostgreSQL tests need EXPOSURE_TEST_DATABASE_URL)
	$(BIN)/python -m pytest

fuzz: $(STAMP) ## before a release: the hypothesis tests, unseeded, FUZZ_FACTOR (20) times the examples
	HYPOTHESIS_PROFILE=fuzz HYPOTHESIS_FUZZ_FACTOR=$(FUZZ_FACTOR) $(BIN)/python -m pytest -m hypothesis

screenshots: $(STAMP) ## rewrite docs/console/*.png from the console's browser tests (needs Chromium)
	EXPOSURE_WRITE_SCREENSHOTS=1 $(BIN)/python -m pytest -p no:cacheprovider tests/e2e/test_console_browser.py

lint: $(STAMP) ## ruff check, format check and the import contracts (pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP) ## mypy --strict on the packages and the benchmarks
	$(BIN)/mypy $(PACKAGES)

check: lint typecheck test ## everything CI runs

proto: $(STAMP) ## regenerate the protobuf modules from the vendored .proto files
	$(BIN)/python -m grpc_tools.protoc -I$(PROTO_SRC) --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
		--python_out=$(PROTO_DIR) \
		--mypy_out=$(PROTO_DIR) $(PROTO_SRC)/export.proto
	$(BIN)/python -m grpc_tools.protoc -I$(PROTO_SRC) --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
		--python_out=$(REVISION_PROTO_DIR) \
		--mypy_out=$(REVISION_PROTO_DIR) $(PROTO_SRC)/gaen_revision.proto

clean: ## remove the virtual environment and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
