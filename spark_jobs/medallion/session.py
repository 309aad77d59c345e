"""The one Spark-session factory: the active session on Databricks, a Delta-enabled local session otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.sql import SparkSession

from .config import Settings


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def local_conf(settings: Settings, app_name: str) -> dict[str, str]:
    """Spark settings of the local session: Delta extension + catalog, project-local warehouse and caches."""
    ls = settings.local_spark
    ivy = Path(ls.get("ivy_dir", ".cache/ivy"))
    ivy = ivy if ivy.is_absolute() else settings.root / ivy
    warehouse = settings.location("warehouse")
    return {
        **{str(k): str(v) for k, v in (ls.get("conf") or {}).items()},
        "spark.app.name": app_name,
        "spark.master": ls.get("master", "local[*]"),
        "spark.driver.memory": str(ls.get("driver_memory", "4g")),
        "spark.jars.packages": ls.get("delta_package", "io.delta:delta-spark_2.12:3.3.2"),
        "spark.jars.ivy": str(ivy.resolve()),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.warehouse.dir": warehouse,
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={warehouse}/_derby",
        "spark.sql.shuffle.partitions": str(ls.get("shuffle_partitions", 4)),
        "spark.default.parallelism": str(ls.get("shuffle_partitions", 4)),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "true",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "true",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
    }


def get_spark(settings: Settings, app_name: str = "medallion") -> SparkSession:
    """Return the session a job runs in. Locally it is created once per process and reused."""
    if on_databricks() or not settings.is_local:
        active = SparkSession.getActiveSession()
        return active if active is not None else SparkSession.builder.appName(app_name).getOrCreate()
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    builder = SparkSession.builder
    for key, value in local_conf(settings, app_name).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


if __name__ == "__main__":  # `python -m medallion.session`: resolve and cache the Delta jars, check Delta works
    from .config import load_settings

    _spark = get_spark(load_settings(), app_name="medallion-warmup")
    print(f"Spark {_spark.version} with Delta ready; jars cached in {_spark.conf.get('spark.jars.ivy')}")
    _spark.stop()
