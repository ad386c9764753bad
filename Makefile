# The two commands of the quick start: `make run` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench venv clean

$(STAMP): pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 is missing (apt-get install python3 python3-venv)"; exit 1; }
	@test -x $(PY) || python3 -m venv $(VENV) || { echo "python3 -m venv failed (apt-get install python3-venv)"; exit 1; }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: venv
	scripts/run.sh

test: venv
	scripts/test.sh $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: venv
	$(PY) bench/run.py

clean:
	rm -rf var
