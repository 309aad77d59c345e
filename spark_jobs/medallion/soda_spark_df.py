"""Soda's `spark_df` data source where soda-core-spark-df cannot be installed: on Databricks.

Why: soda-core-spark-df 3.5.x is four small modules plus a `pyspark<4` requirement. On serverless compute the
Spark client is Databricks Connect, and pip would put open-source pyspark beside it (breaking the session); on a
job cluster it would shadow the runtime's own pyspark. So the wheel depends on soda-core-spark only (Soda and its
Spark SQL dialect, no pyspark) and, when `soda.data_sources.spark_df_data_source` is missing, `register()` puts
this module's classes under that name: the same behaviour — every Soda query is `spark.sql(...)` on the job's
session and rows come back as tuples — written against the DataFrame API that classic PySpark and Spark Connect
share (no RDD, no JVM access), so it runs on serverless, on a cluster and locally.

Where soda-core-spark-df is installed (local runs, tests) its own modules are used and nothing here is loaded.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types

log = logging.getLogger("medallion.soda")

MODULE = "soda.data_sources.spark_df_data_source"


class SparkDfCursor:
    """DB-API cursor over `spark.sql`: what Soda's queries call."""

    def __init__(self, spark_session):
        self.spark_session = spark_session
        self.df = None
        self.description: tuple[tuple, ...] | None = None
        self.rowcount = -1
        self._offset = 0

    def execute(self, sql: str) -> None:
        self.df = self.spark_session.sql(sql)
        self.description = tuple((f.name, type(f.dataType).__name__) for f in self.df.schema.fields)
        self._offset = 0

    @staticmethod
    def _row(row) -> list:
        return [row[i] for i in range(len(row))]

    def fetchall(self) -> tuple[tuple, ...]:
        rows = self.df.collect()
        self.rowcount = len(rows)
        return tuple(tuple(self._row(r)) for r in rows)

    def fetchmany(self, size: int) -> tuple[tuple, ...]:
        self.rowcount = self.df.count()
        rows = self.df.offset(self._offset).limit(size).collect()
        self._offset += len(rows)
        return tuple(tuple(self._row(r)) for r in rows)

    def fetchone(self) -> tuple:
        rows = self.df.limit(1).collect()
        self.rowcount = len(rows)
        return tuple(self._row(rows[0])) if rows else None

    def close(self) -> None:
        pass


class SparkDfConnection:
    def __init__(self, spark_session):
        self.spark_session = spark_session

    def cursor(self) -> SparkDfCursor:
        return SparkDfCursor(self.spark_session)

    def close(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass


def _data_source_class():
    from soda.data_sources.spark_data_source import SparkSQLBase  # soda-core-spark: no pyspark needed
    from soda.execution.data_type import DataType

    class SparkDfDataSource(SparkSQLBase):
        TYPE = "spark_df"
        SCHEMA_CHECK_TYPES_MAPPING: dict = {
            "string": ["character varying", "varchar", "text"],
            "int": ["integer", "int"],
            "double": ["decimal"],
            "timestamp": ["timestamptz"],
        }
        SQL_TYPE_FOR_SCHEMA_CHECK_MAP = {
            DataType.TEXT: "string",
            DataType.INTEGER: "int",
            DataType.DECIMAL: "double",
            DataType.DATE: "date",
            DataType.TIME: "timestamp",
            DataType.TIMESTAMP: "timestamp",
            DataType.TIMESTAMP_TZ: "timestamp",
            DataType.BOOLEAN: "boolean",
        }

        def __init__(self, logs, data_source_name: str, data_source_properties: dict):
            super().__init__(logs, data_source_name, data_source_properties)
            self.spark_session = data_source_properties.get("spark_session")
            self.migrate_data_source_name = "spark_df"

        def connect(self):
            self.connection = SparkDfConnection(self.spark_session)

        def quote_table(self, table_name) -> str:
            return f"{table_name}"

        def sql_get_table_names_with_count(self, include_tables=None, exclude_tables=None):
            return None

        def cast_to_text(self, expr: str) -> str:
            return f"CAST({expr} AS string)"

        def test(self, sql: str):
            self.connection.spark_session.sql(sql)

    return SparkDfDataSource


def register(force: bool = False) -> str:
    """Make `spark_df` available to Soda; returns which implementation is in use ("soda-core-spark-df" or this
    module). `force` installs this module's even when soda-core-spark-df is present (tests)."""
    if not force:
        try:
            importlib.import_module(MODULE)
            return "soda-core-spark-df"
        except ModuleNotFoundError:
            pass
    module = types.ModuleType(MODULE, __doc__)
    module.SparkDfDataSource = _data_source_class()
    module.SparkDfConnection = SparkDfConnection
    module.SparkDfCursor = SparkDfCursor
    sys.modules[MODULE] = module
    log.info("soda: spark_df data source from medallion.soda_spark_df (soda-core-spark-df not installed)")
    return __name__
