"""Monitor: one row per run with the row count of every pipeline table, appended to an operations table."""
from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from .cli import JobContext, entry

COUNTS_SCHEMA = StructType([
    StructField("run_id", StringType(), False),
    StructField("measured_at", TimestampType(), False),
    StructField("interval_start", TimestampType(), True),
    StructField("interval_end", TimestampType(), True),
    StructField("layer", StringType(), False),
    StructField("table_name", StringType(), False),
    StructField("row_count", LongType(), True),
])

LAYERS = ("bronze", "silver", "gold", "quarantine", "held")


def table_counts(ctx: JobContext) -> list[tuple[str, str, int | None]]:
    tables = ctx.settings.raw["tables"]
    return [(layer, name, ctx.lakehouse.count(name)) for layer in LAYERS for name in tables[layer].values()]


def run(ctx: JobContext) -> dict:
    lake = ctx.lakehouse
    ops = ctx.settings.raw["tables"]["ops"]["table_counts"]
    lake.ensure(ops, COUNTS_SCHEMA, "ops")
    measured = datetime.now(timezone.utc)
    counts = table_counts(ctx)
    rows = [(ctx.run_id, measured, ctx.interval_start, ctx.interval_end, layer, name, n) for layer, name, n in counts]
    # idempotent per run id: a retry replaces the rows of its own run
    df = ctx.spark.createDataFrame(rows, COUNTS_SCHEMA)
    (lake.delta(ops).alias("t").merge(df.alias("s"), "t.run_id = s.run_id AND t.table_name = s.table_name")
     .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute())
    return {"table": lake.display_name(ops), "counts": {name: n for _, name, n in counts}}


main = entry("monitor", run)

if __name__ == "__main__":
    main()
