# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
PY       ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
PROTOS   := $(shell find protos -name '*.proto')
SITE      = $(shell $(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

.PHONY: help install protos lint test run bench clean fmt

help:
	@echo "make run    - start the suite (embedded PostgreSQL unless DATABASE_URL is set)"
	@echo "make test   - lint (ruff, mypy, import rules, buf) and run every test"
	@echo "make bench  - benchmarks, written to bench/results/latest.json"
	@echo "make lint | protos | fmt | clean"

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	echo "$(CURDIR)/gen" > "$(SITE)/crm_generated_stubs.pth"
	touch $@

install: $(VENV)/.installed

# Stubs are generated, never committed.
gen/.stamp: $(PROTOS) $(VENV)/.installed
	rm -rf gen && mkdir -p gen
	$(BIN)/python -m grpc_tools.protoc -Iprotos -I"$$($(BIN)/python -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')" \
		--plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
		--python_out=gen --grpc_python_out=gen --mypy_out=gen --mypy_grpc_out=gen $(PROTOS)
	touch $@

protos: gen/.stamp

node_modules/.bin/buf: package.json
	@if command -v npm >/dev/null 2>&1; then npm install --no-audit --no-fund --silent; else echo "npm not found: buf lint will be skipped"; fi

lint: protos node_modules/.bin/buf
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	@if [ -x node_modules/.bin/buf ]; then node_modules/.bin/buf lint protos && echo "buf lint: ok"; \
	 else echo "buf lint skipped: install Node.js/npm to run it"; fi

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

run: protos
	$(BIN)/python -m services.run

bench: protos
	$(BIN)/python -m bench

clean:
	rm -rf gen $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
