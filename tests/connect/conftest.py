"""The Spark Connect tier: the pipeline's tests again, with every job a Spark Connect client of a real Spark 3.5 Connect
server — the engine of Databricks serverless — started from the pip-installed PySpark with Delta and ANSI mode on
(scripts/spark_servers.py).

Each job is its own process with `SPARK_REMOTE` set (tests/engines.py): PySpark's Connect mode is process-wide, so it
cannot share a process with the tests' classic session, which reads what the server wrote. Tests imported into this
tier's modules run here unchanged."""

from __future__ import annotations

import pytest
from engines import job_runner, spark_servers


@pytest.fixture(scope="module")  # stopped when the tier's module is done: the worker goes on with other tests
def connect_server(tmp_path_factory):
    """One Spark Connect server for the tier (its JVM and its Python workers are the jobs' compute)."""
    server = spark_servers.start_connect(state=tmp_path_factory.mktemp("spark-connect"))
    yield server
    server.stop()


@pytest.fixture
def run_job(lakehouse, connect_server):
    return job_runner({"SPARK_REMOTE": f"sc://127.0.0.1:{connect_server.port}"})
