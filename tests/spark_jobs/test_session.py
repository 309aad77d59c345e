"""The Spark-session factory: a Delta-enabled local session with project-local storage and small-machine sizing."""
from __future__ import annotations

from medallion.config import load_settings
from medallion.lakehouse import Lakehouse
from medallion.session import local_conf


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
