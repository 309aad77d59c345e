"""Bronze: incremental, exactly-once ingestion of the landing CSV files into append-only Delta tables.

Locally the source is Spark's file-stream source; on Databricks it is Auto Loader (`cloudFiles`). Both read
with the product request's exact schema, keep lines that do not fit in the rescued-data column, and run with
`availableNow` and one checkpoint per table, so a file is ingested once however often bronze runs.
Everything after the source is shared code.
"""
from __future__ import annotations

import os

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, StructField, StructType, TimestampType

from .cli import JobContext, entities_argument, entry, selected_entities
from .schemas import BRONZE_SCHEMAS, RESCUED, source_schema

LINEAGE_FIELDS = [
    StructField(RESCUED, StringType(), True),
    StructField("_source_file", StringType(), True),
    StructField("_source_modified_at", TimestampType(), True),
    StructField("_run_id", StringType(), True),
    StructField("_ingest_date", DateType(), True),
]


def bronze_table_schema(entity: str) -> StructType:
    """The product request's schema (pipeline metadata included) plus lineage and rescued data."""
    fields = [StructField(f.name, f.dataType, True) for f in BRONZE_SCHEMAS[entity].fields]
    return StructType(fields + LINEAGE_FIELDS)


def source_stream(ctx: JobContext, entity: str) -> DataFrame:
    """The only target-specific part: a streaming DataFrame of the entity's landing files."""
    settings = ctx.settings
    pattern = os.path.join(settings.location("landing"), "*", settings.landing_file(entity))
    schema = source_schema(entity)
    if settings.is_local:
        reader = (ctx.spark.readStream.format("csv")
                  .schema(StructType(schema.fields + [StructField(RESCUED, StringType(), True)]))
                  .option("mode", "PERMISSIVE")
                  .option("columnNameOfCorruptRecord", RESCUED))
    else:
        reader = (ctx.spark.readStream.format("cloudFiles")
                  .option("cloudFiles.format", "csv")
                  .option("cloudFiles.schemaLocation", ctx.lakehouse.checkpoint(f"bronze_{entity}_schema"))
                  .option("cloudFiles.schemaEvolutionMode", "rescue")
                  .option("rescuedDataColumn", RESCUED)
                  .schema(schema))
    return (reader.option("header", "true").option("enforceSchema", "false").option("multiLine", "true")
            .option("encoding", "UTF-8").load(pattern))


def with_metadata(ctx: JobContext, df: DataFrame) -> DataFrame:
    """Pipeline metadata and lineage, identical for both sources."""
    out = (df.withColumn("_ingested_at", F.current_timestamp())
           .withColumn("_pipeline_env", F.lit(ctx.settings.env))
           .withColumn("_source_file", F.col("_metadata.file_path"))
           .withColumn("_source_modified_at", F.col("_metadata.file_modification_time"))
           .withColumn("_run_id", F.lit(ctx.run_id))
           .withColumn("_ingest_date", F.to_date("_ingested_at")))
    return out


def ingest(ctx: JobContext, entity: str) -> dict:
    lake = ctx.lakehouse
    table = ctx.settings.table_name("bronze", entity)
    schema = bronze_table_schema(entity)
    lake.ensure(table, schema, "bronze", partition_by=["_ingest_date"],
                properties={"delta.appendOnly": "true"})
    stream = with_metadata(ctx, source_stream(ctx, entity)).select(*[f.name for f in schema.fields])
    query = lake.stream_to(stream, table, lake.checkpoint(f"bronze_{entity}"), partition_by=["_ingest_date"])
    query.awaitTermination()
    rows = sum(int(p.get("numInputRows", 0)) for p in query.recentProgress)
    return {"table": lake.display_name(table), "rows_ingested": rows}


def run(ctx: JobContext) -> dict:
    results = {entity: ingest(ctx, entity) for entity in selected_entities(ctx.args)}
    return {"tables": results, "rows_ingested": sum(r["rows_ingested"] for r in results.values())}


add_arguments = entities_argument
main = entry("bronze", run, add_arguments)

if __name__ == "__main__":
    main()
