# One-command entry points. Everything is project-local: .venv, .cache (Delta jars), .airflow, .lakehouse.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JARS   := .cache/ivy/.resolved
export MEDALLION_HOME := $(CURDIR)

.PHONY: run test test-fast lint format bench up setup lock wheel clean help

help:
	@echo "make run    - set up, then run one hourly cycle through the five Airflow DAGs (local target)"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make up     - start the Airflow components and keep them running (UI on http://127.0.0.1:8080)"
	@echo "make lint   - ruff's linter and formatter check (settings in pyproject.toml); make format applies both"
	@echo "make bench  - time the jobs and the whole cycle at the default volume and 10x it"
	@echo "make lock   - re-resolve requirements.lock from requirements.txt"
	@echo "make wheel  - build the Spark job wheel into dist/"

run: setup
	$(PY) scripts/airflow_local.py cycle

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) scripts/bench.py

up: setup
	$(PY) scripts/airflow_local.py up

setup: $(STAMP) $(JARS)
	@$(PY) scripts/airflow_local.py setup

# virtualenv with the locked packages, and the job package installed editable (its console entry points)
$(STAMP): requirements.lock spark_jobs/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null
	$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install -q uv==0.13.8
	$(PY) -m uv pip sync -q --python $(PY) requirements.lock
	$(PY) -m uv pip install -q --python $(PY) --no-deps -e spark_jobs
	touch $(STAMP)

# Delta Lake's jars, resolved from Maven Central once into .cache/ivy
$(JARS): $(STAMP) include/pipeline.yaml
	$(PY) -m medallion.session
	touch $(JARS)

lock:
	uv pip compile -q --python-version 3.11 requirements.txt -o requirements.lock --custom-compile-command "make lock"

wheel: $(STAMP)
	$(PY) -m uv build --wheel spark_jobs --out-dir dist

clean:
	rm -rf .lakehouse .airflow .bench dist build
