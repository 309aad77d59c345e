"""Bronze: incremental, exactly-once ingestion of the landing CSV files into append-only Delta tables.

Only the source differs between targets:
- Databricks: Auto Loader (`cloudFiles`, csv, the explicit schema, a schema location, `rescue` evolution mode and
  the rescued-data column; columns are matched by header name).
- Local: Spark's file-stream source with the same schema in PERMISSIVE mode (a line that does not fit is kept
  whole in the rescued column). Files whose header differs from the expected columns are re-read by header name,
  like Auto Loader does: missing columns are null, extra columns and values that cannot be typed go to the rescued
  column as JSON.

Everything after the source is shared: each micro-batch (`availableNow`, one checkpoint per table) gets lineage and
pipeline metadata, is appended with Delta's idempotent-write options (`txnAppId` = the streaming query's id,
`txnVersion` = the batch id), and one row per landing file goes to the `ops_bronze_files` table (files seen, rows,
rows with rescued data, status). A batch replayed after a crash is skipped by Delta, so no file lands twice and
none is missed. Files that cannot be read are recorded as `unreadable` and do not stop the others.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (DateType, LongType, StringType, StructField, StructType, TimestampType)

from .cli import JobContext, entities_argument, entry, selected_entities
from .schemas import BRONZE_SCHEMAS, RESCUED, landing_columns, source_schema

log = logging.getLogger("medallion.bronze")

LINEAGE_FIELDS = [
    StructField(RESCUED, StringType(), True),
    StructField("_source_file", StringType(), True),
    StructField("_source_modified_at", TimestampType(), True),
    StructField("_run_id", StringType(), True),
    StructField("_ingest_date", DateType(), True),
]

FILES_SCHEMA = StructType([
    StructField("run_id", StringType(), False),
    StructField("batch_id", LongType(), False),
    StructField("table_name", StringType(), False),
    StructField("file_path", StringType(), False),
    StructField("file_modified_at", TimestampType(), True),
    StructField("status", StringType(), False),  # ingested | empty | header_only | unreadable | partial
    StructField("rows", LongType(), False),
    StructField("rescued_rows", LongType(), False),
    StructField("reason", StringType(), True),
    StructField("recorded_at", TimestampType(), False),
])
PROBLEM_STATUSES = ("unreadable", "partial")


def bronze_table_schema(entity: str) -> StructType:
    """The product request's schema (pipeline metadata included) plus lineage and rescued data."""
    fields = [StructField(f.name, f.dataType, True) for f in BRONZE_SCHEMAS[entity].fields]
    return StructType(fields + LINEAGE_FIELDS)


def landing_pattern(ctx: JobContext, entity: str) -> str:
    name = ctx.settings.landing_file(entity)
    suffixes = ctx.settings.raw.get("bronze", {}).get("compressed_suffixes") or []
    file_glob = name + ("{" + ",".join(["", *suffixes]) + "}" if suffixes else "")
    return os.path.join(ctx.settings.location("landing"), "*", file_glob)


def source_stream(ctx: JobContext, entity: str) -> DataFrame:
    """The only target-specific part: a streaming DataFrame of the entity's landing files, with file lineage."""
    settings = ctx.settings
    schema = source_schema(entity)
    max_files = str(settings.raw.get("bronze", {}).get("max_files_per_trigger") or 1000)
    if settings.is_local:
        reader = (ctx.spark.readStream.format("csv")
                  .schema(StructType(schema.fields + [StructField(RESCUED, StringType(), True)]))
                  .option("mode", "PERMISSIVE")
                  .option("columnNameOfCorruptRecord", RESCUED)
                  .option("enforceSchema", "true")  # positional; headers are checked per file in align_headers
                  .option("maxFilesPerTrigger", max_files))
    else:
        reader = (ctx.spark.readStream.format("cloudFiles")
                  .option("cloudFiles.format", "csv")
                  .option("cloudFiles.schemaLocation", ctx.lakehouse.checkpoint(f"bronze_{entity}_schema"))
                  .option("cloudFiles.schemaEvolutionMode", "rescue")
                  .option("cloudFiles.maxFilesPerTrigger", max_files)
                  .option("rescuedDataColumn", RESCUED)
                  .schema(schema))
    return (reader.option("header", "true").option("multiLine", "true").option("encoding", "UTF-8")
            .option("ignoreCorruptFiles", "true").option("ignoreMissingFiles", "true")
            .load(landing_pattern(ctx, entity))
            .select("*", F.col("_metadata.file_path").alias("_source_file"),
                    F.col("_metadata.file_modification_time").alias("_source_modified_at")))


# ---- local source helpers: the files of a micro-batch, their headers, what is in files without rows ------------

def local_path(uri: str) -> str:
    """`file:/a/b`, `file:///a/b` and `/a/b` all become `/a/b`."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("file", "") else uri


def batch_files_from_log(checkpoint: str, batch_id: int) -> dict[str, int | None]:
    """The files the file-stream source assigned to a batch (path -> modification time in ms), from its log."""
    folder = os.path.join(local_path(checkpoint), "sources", "0")
    for name in (str(batch_id), f"{batch_id}.compact"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                entries = [json.loads(line) for line in fh.read().splitlines()[1:] if line.strip()]
            return {local_path(e["path"]): e.get("timestamp") for e in entries if e.get("batchId") == batch_id}
    return {}


def _open_text(path: str):
    raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def read_header(path: str) -> list[str] | None:
    """The column names in a file's first record (None for an empty or unreadable file)."""
    try:
        with _open_text(path) as fh:
            first = next(csv.reader(fh), None)
    except (OSError, EOFError, zlib.error, csv.Error):
        return None
    return [c.strip().lstrip("\ufeff") for c in first] if first else None


def probe(path: str) -> tuple[str, str | None]:
    """Why a file gave no rows: empty, header only, or unreadable (with the reason; never file contents)."""
    try:
        if not os.path.exists(path):
            return "unreadable", "the file disappeared before it could be read"
        with _open_text(path) as fh:
            first = fh.readline()
            rest = any(line.strip() for line in fh)
    except (OSError, EOFError, zlib.error) as exc:
        return "unreadable", f"{type(exc).__name__}: {str(exc)[:200]}"
    if not first.strip():
        return "empty", None
    if not rest:
        return "header_only", None
    return "unreadable", "Spark could not read any row from a non-empty file"


def verify_compressed(path: str) -> str | None:
    """For a compressed file that gave rows: the reason it was cut short, if its stream is damaged."""
    if not path.endswith(".gz"):
        return None
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}; rows after the damage were not read"
    return None


def read_by_name(spark, path: str, header: list[str], entity: str) -> DataFrame:
    """Re-read one file matching columns by header name (Auto Loader's behaviour): missing columns are null,
    extra columns and values that cannot be typed are kept as JSON in the rescued column."""
    names, seen = [], set()
    for i, name in enumerate(header):
        name = name or f"_c{i}"
        names.append(name if name not in seen else f"{name}_{i}")
        seen.add(name)
    corrupt = "__corrupt_record"
    raw = (spark.read.format("csv")
           .schema(StructType([StructField(n, StringType(), True) for n in names]
                              + [StructField(corrupt, StringType(), True)]))
           .option("header", "true").option("enforceSchema", "true").option("multiLine", "true")
           .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", corrupt).option("encoding", "UTF-8")
           .load(path))
    typed, rescue = [], []
    expected = source_schema(entity)
    for f in expected.fields:
        if f.name in names:
            col = F.col(f"`{f.name}`")
            value = col if isinstance(f.dataType, StringType) else col.cast(f.dataType)
            typed.append(value.alias(f.name))
            if not isinstance(f.dataType, StringType):
                rescue.append(F.when(col.isNotNull() & value.isNull(), col).alias(f.name))
        else:
            typed.append(F.lit(None).cast(f.dataType).alias(f.name))
    rescue += [F.col(f"`{n}`") for n in names if n not in expected.fieldNames()]
    rescue.append(F.col(corrupt).alias("_corrupt_record"))
    as_json = F.to_json(F.struct(*rescue))
    return raw.select(*typed, F.when(as_json != "{}", as_json).alias(RESCUED),
                      F.col("_metadata.file_path").alias("_source_file"),
                      F.col("_metadata.file_modification_time").alias("_source_modified_at"))


def align_headers(spark, batch: DataFrame, entity: str, files: dict[str, int | None]) -> DataFrame:
    """Replace the positional rows of files whose header is not the expected one by a by-name read."""
    expected = landing_columns(entity)
    mismatched = {p: h for p in files if (h := read_header(p)) is not None and h != expected}
    if not mismatched:
        return batch
    log.warning("%s: %d file(s) with a different header are matched by column name", entity, len(mismatched))
    keep = batch.where(~F.col("_source_file").isin(
        [f"file:{p}" for p in mismatched] + [f"file://{p}" for p in mismatched] + list(mismatched)))
    for path, header in mismatched.items():
        keep = keep.unionByName(read_by_name(spark, path, header, entity))
    return keep


def flag_invalid_encoding(df: DataFrame, entity: str) -> DataFrame:
    """Bytes that are not UTF-8 are decoded as U+FFFD: keep such rows out of silver by marking them as rescued."""
    strings = [f.name for f in source_schema(entity).fields if isinstance(f.dataType, StringType)]
    bad = [F.when(F.col(c).contains("\ufffd"), F.col(c)).alias(c) for c in strings]
    any_bad = F.lit(False)
    for c in strings:
        any_bad = any_bad | F.coalesce(F.col(c).contains("\ufffd"), F.lit(False))
    note = F.to_json(F.struct(F.lit("invalid UTF-8 bytes").alias("_encoding_error"), *bad))
    return df.withColumn(RESCUED, F.coalesce(F.col(RESCUED), F.when(any_bad, note)))


def with_metadata(ctx: JobContext, df: DataFrame) -> DataFrame:
    """Pipeline metadata and lineage, identical for both sources."""
    return (df.withColumn("_ingested_at", F.current_timestamp())
            .withColumn("_pipeline_env", F.lit(ctx.settings.env))
            .withColumn("_run_id", F.lit(ctx.run_id))
            .withColumn("_ingest_date", F.to_date("_ingested_at")))


# ---- the shared sink ----------------------------------------------------------------------------------------

@dataclass
class BronzeSink:
    """foreachBatch handler: append a micro-batch exactly once and account for every file in it."""
    ctx: JobContext
    entity: str
    table: str
    files_table: str
    checkpoint: str
    batches: int = 0
    replayed: int = 0
    files: list[dict] = field(default_factory=list)
    _app_id: str | None = None

    def app_id(self, spark) -> str:
        """The streaming query's id (kept in its checkpoint): stable across restarts, new for a new checkpoint."""
        if self._app_id is None:
            meta = spark.read.text(os.path.join(self.checkpoint, "metadata")).first()[0]
            self._app_id = f"medallion-bronze-{self.entity}-{json.loads(meta)['id']}"
        return self._app_id

    def relative(self, path: str) -> str:
        landing = local_path(self.ctx.settings.location("landing")).rstrip("/") + "/"
        path = local_path(path)
        return path[len(landing):] if path.startswith(landing) else path

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        lake = self.ctx.lakehouse
        local = self.ctx.settings.is_local
        listed = batch_files_from_log(self.checkpoint, batch_id) if local else {}
        if local:
            batch = align_headers(spark, batch, self.entity, listed)
        columns = [f.name for f in bronze_table_schema(self.entity).fields]
        rows = with_metadata(self.ctx, flag_invalid_encoding(batch, self.entity)).select(*columns).persist()
        try:
            stats = {local_path(r["_source_file"]): r for r in rows.groupBy("_source_file", "_source_modified_at")
                     .agg(F.count(F.lit(1)).alias("rows"), F.count(RESCUED).alias("rescued")).collect()}
            txn = (self.app_id(spark), batch_id)
            before = lake.version(self.table)
            lake.append(rows, self.table, txn=txn)
            # Delta skips a (txnAppId, txnVersion) it has committed before: a batch replayed after a crash
            replayed = lake.version(self.table) == before and bool(stats)
        finally:
            rows.unpersist()
        now = datetime.now(timezone.utc)
        records = []
        for path in sorted(set(listed) | set(stats)):
            r = stats.get(path)
            if r is not None:
                reason = verify_compressed(path) if local else None
                status = "partial" if reason else "ingested"
                n, rescued, modified = int(r["rows"]), int(r["rescued"]), r["_source_modified_at"]
            else:
                status, reason = probe(path) if local else ("unreadable", "no rows")
                n, rescued = 0, 0
                ms = listed.get(path)
                modified = datetime.fromtimestamp(ms / 1000, timezone.utc) if ms else None
            records.append((self.ctx.run_id, batch_id, lake.display_name(self.table), self.relative(path), modified,
                            status, n, rescued, reason, now))
        if records:
            lake.append(spark.createDataFrame(records, FILES_SCHEMA), self.files_table, txn=txn)
        for rec in records:
            entry_ = {"file": rec[3], "status": rec[5], "rows": rec[6], "rescued_rows": rec[7]}
            if rec[8]:
                entry_["reason"] = rec[8]
            if replayed:  # landed by the interrupted run; counted there, not here
                entry_.update(rows=0, rescued_rows=0, replayed=True)
            if rec[5] in PROBLEM_STATUSES:
                log.warning("%s: file %s is %s: %s", self.entity, rec[3], rec[5], rec[8])
            self.files.append(entry_)
        self.batches += 1
        self.replayed += int(replayed)
        if replayed:
            log.warning("%s: batch %d was already committed by an interrupted run; skipped", self.entity, batch_id)

    def summary(self) -> dict:
        def total(key):
            return sum(f[key] for f in self.files)
        problems = [f["file"] for f in self.files if f["status"] in PROBLEM_STATUSES]
        by_status: dict[str, int] = {}
        for f in self.files:
            by_status[f["status"]] = by_status.get(f["status"], 0) + 1
        return {"table": self.ctx.lakehouse.display_name(self.table), "batches": self.batches,
                "batches_replayed": self.replayed,
                "files_seen": len(self.files), "files_by_status": by_status, "rows_ingested": total("rows"),
                "rows_rescued": total("rescued_rows"), "unreadable_files": problems, "files": self.files}


def ingest(ctx: JobContext, entity: str) -> dict:
    lake = ctx.lakehouse
    table = ctx.settings.table_name("bronze", entity)
    files_table = ctx.settings.raw["tables"]["ops"]["bronze_files"]
    lake.ensure(table, bronze_table_schema(entity), "bronze", partition_by=["_ingest_date"],
                properties={"delta.appendOnly": "true"})
    lake.ensure(files_table, FILES_SCHEMA, "ops", properties={"delta.appendOnly": "true"})
    checkpoint = lake.checkpoint(f"bronze_{entity}")
    sink = BronzeSink(ctx, entity, table, files_table, checkpoint)
    query = (source_stream(ctx, entity).writeStream.foreachBatch(sink)
             .option("checkpointLocation", checkpoint).trigger(availableNow=True).start())
    query.awaitTermination()
    return sink.summary()


def run(ctx: JobContext) -> dict:
    results = {entity: ingest(ctx, entity) for entity in selected_entities(ctx.args)}
    unreadable = [f"{e}: {p}" for e, r in results.items() for p in r["unreadable_files"]]
    return {"tables": results, "files_seen": sum(r["files_seen"] for r in results.values()),
            "rows_ingested": sum(r["rows_ingested"] for r in results.values()),
            "rows_rescued": sum(r["rows_rescued"] for r in results.values()), "unreadable_files": unreadable}


add_arguments = entities_argument
main = entry("bronze", run, add_arguments)

if __name__ == "__main__":
    main()
