"""Helpers for the monitoring tests: small hand-made tables with the columns the monitor reads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StringType, StructField, StructType, TimestampType

from medallion.ops import SILVER_RUNS, OpsTable

BRONZE = StructType(
    [
        StructField("row_key", StringType()),
        StructField("_source_file", StringType()),
        StructField("_ingested_at", TimestampType()),
        StructField("_run_id", StringType()),
    ]
)
QUARANTINE = StructType(
    [
        StructField("row_key", StringType()),
        StructField("_failed_rules", ArrayType(StringType())),
        StructField("_quarantined_at", TimestampType()),
        StructField("_run_id", StringType()),
    ]
)
SILVER_PATIENTS = StructType(
    [
        StructField("patient_id", StringType()),
        StructField("age", IntegerType()),
        StructField("bmi", DoubleType()),
        StructField("charges", DoubleType()),
        StructField("_processed_at", TimestampType()),
        StructField("_run_id", StringType()),
    ]
)


def ago(minutes: float) -> datetime:
    return datetime.now(timezone.utc) - timedelta(minutes=minutes)


class Tables:
    def __init__(self, spark, settings):
        from medallion.lakehouse import Lakehouse

        self.spark, self.settings = spark, settings
        self.lake = Lakehouse(spark, settings)

    def write(self, table: str, schema: StructType, rows: list[tuple]) -> None:
        OpsTable.open(self.lake, table, schema)  # created like an ops table, whatever its name
        if rows:
            self.lake.append(self.spark.createDataFrame(rows, schema), table)

    def silver_run(
        self,
        run_id,
        entity,
        processed_at,
        rows_in,
        valid,
        quarantined,
        dups=0,
        held=0,
        released=0,
        expired=0,
        by_rule=None,
    ):
        score = (valid + released) / max(1, valid + released + quarantined + expired)
        self.write(
            self.settings.raw["tables"]["ops"]["silver_runs"],
            SILVER_RUNS,
            [
                (
                    run_id,
                    entity,
                    processed_at,
                    rows_in,
                    valid,
                    quarantined,
                    dups,
                    held,
                    released,
                    expired,
                    0,
                    by_rule or {},
                    score,
                    0.995,
                )
            ],
        )

    def bronze(self, entity: str, batches: dict[str, int], ingested_at: datetime, run_id: str = "bronze_1"):
        rows = [
            (f"{batch}-{i}", f"file:/lake/landing/{batch}/{entity}.csv", ingested_at, run_id)
            for batch, n in batches.items()
            for i in range(n)
        ]
        self.write(self.settings.table_name("bronze", entity), BRONZE, rows)

    def quarantine(self, entity: str, rules: list[list[str]], at: datetime):
        self.write(
            self.settings.table_name("quarantine", entity),
            QUARANTINE,
            [(f"q{i}", r, at, "silver_1") for i, r in enumerate(rules)],
        )

    def measure(self, run_id="m_test", previous_at=None, previous_run_id=None):
        from medallion.metrics import Measure

        return Measure(
            lake=self.lake,
            settings=self.settings,
            run_id=run_id,
            now=datetime.now(timezone.utc),
            previous_at=previous_at,
            previous_run_id=previous_run_id,
        )


@pytest.fixture
def tables(spark, settings):
    return Tables(spark, settings)
