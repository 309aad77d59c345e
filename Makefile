# One-command entry points. Everything is project-local: .venv, .cache (Delta jars), .airflow, .lakehouse.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JARS   := .cache/ivy/.resolved
export MEDALLION_HOME := $(CURDIR)

.PHONY: run test test-fast test-unit test-connect test-cluster test-extended test-databricks workspace-up connect-up cluster-up servers-down lint format bench up \
  setup lock wheel clean help

help:
	@echo "make run    - set up, then run one hourly cycle through the five Airflow DAGs (local target)"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make up     - start the Airflow components and keep them running (UI on http://127.0.0.1:8080)"
	@echo "make test-unit - the small tier CI also runs on the Astro Runtime's Python: make test-unit PYTHON=python3.12 VENV=.cache/venv-py3.12"
	@echo "make test-connect - the pipeline's tests with the jobs on a Spark Connect server (the engine of serverless)"
	@echo "make test-cluster - a subset with the jobs on a Spark standalone cluster (a master and a worker, as a job cluster)"
	@echo "make test-extended - the tests make test leaves out for time (marked extended): longer engine tests, the backfill"
	@echo "make test-databricks - the Databricks target end to end: Airflow's Databricks tasks against an emulated workspace"
	@echo "               whose Jobs API runs the wheel on a Spark Connect server (make workspace-up starts one for make up)"
	@echo "make connect-up / cluster-up / servers-down - start those engines here, or stop them (jobs use them through"
	@echo "               SPARK_REMOTE / MEDALLION_SPARK_MASTER: see python scripts/spark_servers.py env)"
	@echo "make lint   - ruff's linter and formatter check (settings in pyproject.toml); make format applies both"
	@echo "make bench  - time the jobs and the whole cycle at the default volume and 10x it"
	@echo "make lock   - re-resolve requirements.lock (runtime) and requirements-dev.lock (+ test tools)"
	@echo "make wheel  - build the Spark job wheel into dist/"

run: setup
	$(PY) scripts/airflow_local.py cycle

# Two workers (pytest-xdist): the Airflow tests wait on the scheduler and on task start-up while the other worker runs
# Spark-job tests; tests/conftest.py says which tests stay together. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "not extended"

test-fast: setup
	$(PY) -m pytest -m "not slow"

# The small tier (DAG integrity, deploy, the job package's interpreter-sensitive unit tests: imports, CLI, config,
# secrets, pandas inside Spark), which CI also runs on the Astro Runtime's Python in a second venv (the network tests
# ask PyPI or Debian about the locks, whatever the interpreter: they run once, in make test)
UNIT_TESTS := tests/dags tests/deploy tests/spark_jobs/test_imports.py tests/spark_jobs/test_cli.py \
  tests/spark_jobs/test_config.py tests/spark_jobs/test_secrets.py \
  tests/spark_jobs/test_generate.py::test_files_have_the_bronze_columns_in_order_and_claims_reference_patients
test-unit: setup
	$(PY) -m pytest -m "not slow and not network" $(UNIT_TESTS)

# The other engines (scripts/spark_servers.py): each tier starts its own on free ports
test-connect: setup
	$(PY) -m pytest tests/connect

test-cluster: setup
	$(PY) -m pytest tests/cluster

# Everything make test leaves out to stay within its 30 minutes (pytest.ini's `extended` marker): the other engines'
# longer tests, the backfill through Airflow, the Databricks target end to end
test-extended: setup
	$(PY) -m pytest -m extended

# The Databricks target end to end against the emulated workspace (scripts/workspace.py)
test-databricks: setup
	$(PY) -m pytest tests/deploy/test_executing_jobs_api.py tests/e2e/test_databricks_cycle.py

workspace-up: setup
	$(PY) scripts/workspace.py up

connect-up: setup
	$(PY) scripts/spark_servers.py connect-up

cluster-up: setup
	$(PY) scripts/spark_servers.py cluster-up

servers-down:
	$(PY) scripts/spark_servers.py down

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

# virtualenv with the locked packages (runtime + test tools), and the job package installed editable (its console
# entry points). PYTHON=python3.12 VENV=.venv-3.12 builds a second one beside it from the same lock.
$(STAMP): requirements-dev.lock spark_jobs/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null
	$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install -q uv==0.13.8
	$(PY) -m uv pip sync -q --python $(PY) requirements-dev.lock
	$(PY) -m uv pip install -q --python $(PY) --no-deps -e spark_jobs
	touch $(STAMP)

# Delta Lake's jars, resolved from Maven Central once into .cache/ivy, and the JVM's class archive (.cache/cds)
$(JARS): $(STAMP) include/pipeline.yaml spark_jobs/medallion/session.py spark_jobs/medallion/warmup.py
	$(PY) -m medallion.warmup
	touch $(JARS)

# requirements.lock: what the Airflow image installs; requirements-dev.lock: the same pins plus the test tools. Resolved for
# Python 3.11; tests/deploy/test_locks.py checks that 3.12 (the Astro Runtime's) resolves to the same pins.
lock: $(STAMP)
	$(PY) -m uv pip compile -q --python-version 3.11 requirements.txt -o requirements.lock --custom-compile-command "make lock"
	$(PY) -m uv pip compile -q --python-version 3.11 requirements-dev.txt -c requirements.lock -o requirements-dev.lock \
	  --custom-compile-command "make lock"

wheel: $(STAMP)
	$(PY) -m uv build --wheel spark_jobs --out-dir dist

clean:
	rm -rf .lakehouse .airflow .bench dist build
