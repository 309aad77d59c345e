"""The Spark-session factory: a Delta-enabled local session with project-local storage and small-machine sizing."""

from __future__ import annotations

from medallion.config import load_settings
from medallion.lakehouse import Lakehouse
from medallion.session import class_archive, local_conf


def test_local_conf_enables_delta_and_keeps_everything_project_local(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDALLION_LAKEHOUSE", str(tmp_path))
    s = load_settings()
    conf = local_conf(s, "x")
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.catalog.spark_catalog"] == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    assert conf["spark.jars.packages"].startswith("io.delta:delta-spark_2.12:3.3.")
    assert conf["spark.sql.warehouse.dir"] == str(tmp_path / "warehouse")
    assert conf["spark.ui.enabled"] == "false"
    assert conf["spark.sql.shuffle.partitions"] == str(s.local_spark["shuffle_partitions"])
    assert conf["spark.jars.ivy"].startswith(str(s.root))


def test_session_writes_delta_tables_with_change_data_feed(spark, settings):
    from pyspark.sql.types import LongType, StructField, StructType

    lake = Lakehouse(spark, settings)
    schema = StructType([StructField("id", LongType())])
    lake.ensure("t_probe", schema, "silver")
    lake.append(spark.range(5), "t_probe")
    assert lake.count("t_probe") == 5
    props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {lake.ref('t_probe')}").collect()}
    assert props["delta.enableChangeDataFeed"] == "true" and props["quality"] == "silver"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"


def test_local_jobs_map_the_class_archive_once_setup_wrote_it_and_start_without_it_before(tmp_path, monkeypatch):
    """The archive is per Java runtime and Spark/Delta version; a JVM is told to map it only when it exists, and the
    configured JVM options can be switched off with an empty value."""
    monkeypatch.setenv("MEDALLION_LAKEHOUSE", str(tmp_path / "lh"))
    monkeypatch.setenv("MEDALLION_SPARK_CLASS_ARCHIVE", str(tmp_path / "cds"))
    s = load_settings()
    archive = class_archive(s)
    assert archive.parent == tmp_path / "cds" and archive.suffix == ".jsa"
    options = local_conf(s, "x")["spark.driver.extraJavaOptions"]
    assert "SharedArchiveFile" not in options and "-XX:TieredStopAtLevel=1" in options.split()
    archive.parent.mkdir()
    archive.write_bytes(b"archive")
    assert f"-XX:SharedArchiveFile={archive}" in local_conf(s, "x")["spark.driver.extraJavaOptions"].split()
    writing = local_conf(s, "x", archive_to=tmp_path / "new.jsa")["spark.driver.extraJavaOptions"].split()
    assert f"-XX:ArchiveClassesAtExit={tmp_path / 'new.jsa'}" in writing and not any(
        "SharedArchive" in o for o in writing
    )

    monkeypatch.setenv("MEDALLION_SPARK_JAVA_OPTIONS", "")
    monkeypatch.setenv("MEDALLION_SPARK_CLASS_ARCHIVE", "")
    off = load_settings()
    assert class_archive(off) is None
    assert local_conf(off, "x")["spark.driver.extraJavaOptions"].split() == [
        f"-Dderby.system.home={off.location('warehouse')}/_derby"
    ]


def test_the_class_archive_is_named_after_the_java_runtime_it_was_written_by(tmp_path, monkeypatch):
    """A different JDK (JAVA_HOME) gets its own archive name, so it never maps another runtime's classes."""
    monkeypatch.setenv("MEDALLION_SPARK_CLASS_ARCHIVE", str(tmp_path / "cds"))
    names = set()
    for home in ("a", "b"):
        java = tmp_path / home / "bin" / "java"
        java.parent.mkdir(parents=True)
        java.write_text("#!/bin/sh\n")
        java.chmod(0o755)
        monkeypatch.setenv("JAVA_HOME", str(tmp_path / home))
        names.add(class_archive(load_settings()).name)
    assert len(names) == 2


def test_a_stream_start_is_tried_again_only_when_the_servers_python_worker_did_not_connect_back():
    import pytest

    from medallion.session import WORKER_DID_NOT_CONNECT, start_stream

    class Writer:
        def __init__(self, failures):
            self.failures, self.calls = list(failures), 0

        def start(self):
            self.calls += 1
            if self.failures:
                raise RuntimeError(self.failures.pop(0))
            return "query"

    pauses = []
    flaky = Writer([f"(org.apache.spark.SparkException) {WORKER_DID_NOT_CONNECT}."] * 4)
    assert (start_stream(flaky, pause=pauses.append), flaky.calls) == ("query", 5)
    assert pauses == [2, 4, 6, 8]  # a busy server gets time to settle
    for failures in (["[STREAM_FAILED] something else"], [WORKER_DID_NOT_CONNECT] * 5):
        broken = Writer(failures)
        with pytest.raises(RuntimeError):
            start_stream(broken, pause=lambda seconds: None)
        assert broken.calls == len(failures)
