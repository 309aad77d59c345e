"""The one Spark-session factory: the active session on Databricks, a Delta-enabled local session otherwise.

A local job is a short-lived process whose JVM spends most of its CPU starting up: loading Spark's and Delta's classes
and compiling code it runs once. Two JVM settings from `local_spark` in include/pipeline.yaml cut that cost:
- `java_options` (default: the client compiler only and the serial collector, which suit small, short runs on a
  laptop; set `MEDALLION_SPARK_JAVA_OPTIONS` to "" for long, large runs where the optimizing compiler pays off);
- `class_archive`: a class-data-sharing archive of the classes a job loads (JDK 13+ dynamic CDS), written once by
  `python -m medallion.warmup` (`make setup`) from a warm-up that runs every kind of Delta operation the jobs use.
  Every later JVM maps it instead of loading and verifying those classes again. It is named after the Java runtime,
  the Spark installation and the Delta version, so a different JDK or Spark never picks up a stale one (the JVM also validates it and
  ignores it if it does not match).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import pyspark
from pyspark.sql import DataFrame, SparkSession

from .config import Settings


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def _project_path(settings: Settings, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else settings.root / path


def class_archive(settings: Settings) -> Path | None:
    """Where this Java runtime's class archive for this Spark and Delta lives (None when switched off)."""
    configured = settings.local_spark.get("class_archive")
    if not configured:
        return None
    java = (
        shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin")) if os.environ.get("JAVA_HOME") else None
    )
    java = java or shutil.which("java") or "java"
    runtime = os.path.realpath(java)
    stamp = os.stat(runtime).st_mtime_ns if os.path.exists(runtime) else 0
    # the archive holds classes of this JVM from these jars (the classpath is checked when it is mapped)
    jars = os.path.join(os.path.dirname(os.path.realpath(pyspark.__file__)), "jars")
    key = f"{runtime}|{stamp}|{jars}|{pyspark.__version__}|{settings.local_spark.get('delta_package')}|{sys.platform}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    folder = _project_path(settings, str(configured))
    return folder / f"spark-{pyspark.__version__}-{digest}.jsa"


def java_options(settings: Settings, warehouse: str, archive_to: Path | None = None) -> str:
    """The driver JVM's options: Derby's home in the warehouse, the configured options, and the class archive (used
    if it exists; written at exit instead when `archive_to` is given)."""
    options = [f"-Dderby.system.home={warehouse}/_derby", *str(settings.local_spark.get("java_options") or "").split()]
    archive = class_archive(settings)
    if archive is not None or archive_to is not None:
        options.append(
            "-Xlog:cds*=off"
        )  # the JVM reports classes it cannot archive on stdout: the job's summary stream
    if archive_to is not None:
        options.append(f"-XX:ArchiveClassesAtExit={archive_to}")
    elif archive is not None and archive.is_file():
        options.append(f"-XX:SharedArchiveFile={archive}")
    return " ".join(options)


def local_conf(settings: Settings, app_name: str, archive_to: Path | None = None) -> dict[str, str]:
    """Spark settings of the local session: Delta extension + catalog, project-local warehouse and caches."""
    ls = settings.local_spark
    ivy = _project_path(settings, str(ls.get("ivy_dir", ".cache/ivy")))
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
        "spark.driver.extraJavaOptions": java_options(settings, warehouse, archive_to),
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
        "spark.log.level": "ERROR",  # a static conf since Spark 3.5 (SPARK-43782): no JVM call after start
    }


def remote(settings: Settings) -> str | None:
    """The Spark Connect server a local job runs against instead of a session of its own (`local_spark.remote`, from
    `SPARK_REMOTE` as PySpark reads it), e.g. `sc://127.0.0.1:15002`; None for a classic session."""
    return settings.local_spark.get("remote") or None


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session (Databricks serverless, or `remote`): no JVM beside the client, and no
    `Observation` results in Spark 3.5's client (they arrive in Spark 4.0)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def cached(df: DataFrame) -> DataFrame:
    """`df` persisted where the engine allows it: a classic session (local, job cluster). Not over Spark Connect:
    DataFrame caching on serverless is a preview that needs environment version 5+ and is not offered in workspaces
    with the compliance security profile, which a workspace holding PHI runs (HIPAA). So every plan that is cached
    here must give the same rows when Spark computes it again: no clock read inside it, no source that changes in
    between. The Spark Connect tests run without the cache, as serverless does."""
    return df if is_connect(df.sparkSession) else df.persist()


def release(*frames: DataFrame) -> None:
    """Unpersist what `cached` persisted."""
    for df in frames:
        if not is_connect(df.sparkSession):
            df.unpersist()


WORKER_DID_NOT_CONNECT = "Python worker failed to connect back"


def start_stream(writer, attempts: int = 5, pause=time.sleep):
    """`writer.start()`, tried again when a Spark Connect server's Python worker for the `foreachBatch` function did
    not connect back in time (Spark 3.5's server waits 10 s for it; a busy server can miss that: seen three times
    running on CI's two busy cores). Nothing of the query has run then, so starting it again is safe, after a pause
    that grows with each attempt (2, 4, 6, 8 s); any other failure is raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            return writer.start()
        except Exception as exc:  # pyspark's Connect errors share no base class with a classic session's
            if WORKER_DID_NOT_CONNECT not in str(exc) or attempt == attempts:
                raise
        pause(2 * attempt)


def get_spark(settings: Settings, app_name: str = "medallion", archive_to: Path | None = None) -> SparkSession:
    """Return the session a job runs in. Locally it is created once per process and reused: a Spark Connect session
    when a server is configured (`remote`), else a classic one with `local_conf`."""
    if remote(settings) and not on_databricks():
        return SparkSession.builder.remote(remote(settings)).getOrCreate()
    if on_databricks() or not settings.is_local:
        active = SparkSession.getActiveSession()
        return active if active is not None else SparkSession.builder.appName(app_name).getOrCreate()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in local_conf(settings, app_name, archive_to).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
