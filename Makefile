# The two commands a new user types (README.md): `make demo` and `make test`.
# Each creates .venv from nothing with pip and installs the project with every extra.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint lab bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m alsresearch run experiments/demo.yaml

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

lab: $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name alsresearch --display-name "Python (alsresearch)"
	$(VENV)/bin/jupyter lab notebooks/

bench: $(STAMP)
	$(PY) benchmarks/bench_als.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_serve.py
	$(PY) benchmarks/bench_coldstart.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
