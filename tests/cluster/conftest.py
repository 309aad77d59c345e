"""The standalone-cluster tier: a representative part of the pipeline's tests with every job the driver of a Spark
standalone cluster (one master and one worker on 127.0.0.1, started from the pip-installed PySpark by
scripts/spark_servers.py), as on a Databricks job cluster: executors in another JVM with their own Python workers, so
everything Spark ships to them must serialize and every path must be shared.

Each job is its own process with `MEDALLION_SPARK_MASTER` set (tests/engines.py); the tests' own classic session
reads what the cluster wrote."""

from __future__ import annotations

import pytest
from engines import job_runner, spark_servers


@pytest.fixture(scope="module")  # stopped when the tier's module is done: the worker goes on with other tests
def spark_cluster(tmp_path_factory):
    servers = spark_servers.start_cluster(state=tmp_path_factory.mktemp("spark-cluster"), cores=2, memory="2g")
    yield servers[0]
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def run_job(lakehouse, spark_cluster):
    return job_runner(
        {"MEDALLION_SPARK_MASTER": f"spark://127.0.0.1:{spark_cluster.port}", "MEDALLION_SPARK_DRIVER_MEMORY": "1g"}
    )
