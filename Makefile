# The two commands of the quick start: `make run` and `make test`.
# Python dependencies come from the lock (requirements/*.txt, with hashes): a fresh machine
# installs exactly what was tested. `make upgrade` refreshes the lock on purpose.
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements/dev.txt
STAMP := $(VENV)/.installed
COMPILE := $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links

.PHONY: run test lint typecheck format bench venv upgrade clean

$(STAMP): $(LOCK)
	@command -v python3 >/dev/null || { echo "python3 is missing (apt-get install python3 python3-venv)"; exit 1; }
	@test -x $(PY) || python3 -m venv $(VENV) || { echo "python3 -m venv failed (apt-get install python3-venv)"; exit 1; }
	$(VENV)/bin/pip install -q --require-hashes -r $(LOCK)
	@touch $(STAMP)

venv: $(STAMP)

run: venv
	scripts/run.sh

test: venv
	scripts/test.sh $(ARGS)

# ruff (lint and format), the import layers (import-linter, contracts in pyproject.toml) and a
# type check of the pure modules.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(MAKE) --no-print-directory typecheck

typecheck: venv
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: venv
	$(PY) bench/run.py

# New releases arrive on purpose: refresh the lock from pyproject.toml's ranges, install it,
# and run the whole suite against it.
upgrade: venv
	$(COMPILE) --upgrade --extra dev -o requirements/dev.txt pyproject.toml
	$(COMPILE) --upgrade -o requirements/base.txt pyproject.toml
	$(VENV)/bin/pip install -q --require-hashes -r $(LOCK)
	@touch $(STAMP)
	$(MAKE) --no-print-directory lint test

clean:
	rm -rf var
