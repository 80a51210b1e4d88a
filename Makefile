# gridnode — developer entry points. `make setup` is idempotent; every other target depends on it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test demo programs bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest

demo: setup
	$(PY) -m simulators.demo

programs: setup
	$(PY) -m simulators.chain.build

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# ruff on everything; mypy on the shipped package (py.typed promises its types to users)
lint: setup
	$(VENV)/bin/ruff check gridnode simulators tests bench
	$(VENV)/bin/mypy gridnode

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
