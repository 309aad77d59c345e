"""Bronze: incremental, exactly-once ingestion of the landing CSV files into append-only Delta tables.

Only the source differs between targets:
- Databricks: Auto Loader (`cloudFiles`, csv, the explicit schema, a schema location, `rescue` evolution mode and
  the rescued-data column; columns are matched by header name).
- Local: Spark's file-stream source with the same schema in PERMISSIVE mode, line by line (a line that does not
  fit is kept whole in the rescued column). Files it would get wrong are re-read on their own: a header other than
  the expected one by header name, like Auto Loader (missing columns null, extra columns and values that cannot be
  typed go to the rescued column as JSON); a file holding a double quote with multi-line records.
- Both: RFC 4180 quoting (a quote inside a quoted field is doubled: `"Bob ""Jr"" Lee"`), and header names matched
  case-insensitively with surrounding spaces ignored (Auto Loader's `readerCaseSensitive=false`).

Everything after the source is shared: each micro-batch (`availableNow`, one checkpoint per table) gets lineage and
pipeline metadata, is appended with Delta's idempotent-write options (`txnAppId` = the streaming query's id,
`txnVersion` = the batch id), and one row per landing file goes to the `ops_bronze_files` table (files seen, rows,
rows with rescued data, status). A batch replayed after a crash is skipped by Delta, so no file lands twice and
none is missed. Files that cannot be read are recorded as `unreadable`, files whose header cannot be read by name
as `rejected` (alone: the rest of the batch lands), and neither stops the others.
"""

from __future__ import annotations

import codecs
import csv
import glob
import gzip
import io
import json
import logging
import os
import time
import zlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import NamedTuple
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, StringType, StructField, StructType, TimestampType

from . import ops
from .cli import JobContext, entities_argument, entry, selected_entities
from .ops import OpsTable
from .schemas import BRONZE_SCHEMAS, KEYS, RESCUED, landing_columns, source_schema, try_cast
from .session import is_connect, start_stream

log = logging.getLogger("medallion.bronze")

LINEAGE_FIELDS = [
    StructField(RESCUED, StringType(), True),
    StructField("_source_file", StringType(), True),
    StructField("_source_modified_at", TimestampType(), True),
    StructField("_run_id", StringType(), True),
    StructField("_ingest_date", DateType(), True),
]

PROBLEM_STATUSES = ("unreadable", "partial", "rejected")
MAX_HEADER_COLUMNS = 1000  # a wider header is not a landing file of ours: rejected, not planned
OBSERVE_MAX_FILES = 48  # up to this many files per batch, per-file figures are counted during the write


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
    if not settings.auto_loader:
        reader = (
            ctx.spark.readStream.format("csv")
            .schema(StructType(schema.fields + [StructField(RESCUED, StringType(), True)]))
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", RESCUED)
            .option("enforceSchema", "true")  # positional; odd files are re-read in align_files
            .option("multiLine", "false")  # splittable; files with quoted fields are re-read
            .option("maxFilesPerTrigger", max_files)
        )
    else:
        reader = (
            ctx.spark.readStream.format("cloudFiles")
            .option("cloudFiles.format", "csv")
            .option("cloudFiles.schemaLocation", ctx.lakehouse.checkpoint(f"bronze_{entity}_schema"))
            .option("cloudFiles.schemaEvolutionMode", "rescue")
            .option("cloudFiles.maxFilesPerTrigger", max_files)
            .option("rescuedDataColumn", RESCUED)
            .option("multiLine", "true")
            # header names matched case-insensitively, and with surrounding spaces ignored, like the local reader
            .option("readerCaseSensitive", "false")
            .option("ignoreLeadingWhiteSpace", "true")
            .option("ignoreTrailingWhiteSpace", "true")
            .schema(schema)
        )
    return (
        reader.option("header", "true")
        .option("encoding", "UTF-8")
        .option("escape", '"')  # RFC 4180: a quote inside a quoted field is doubled ("Robert ""Bob""")
        .option("ignoreCorruptFiles", "true")
        .option("ignoreMissingFiles", "true")
        .load(landing_pattern(ctx, entity))
        .select(
            "*",
            F.col("_metadata.file_path").alias("_source_file"),
            F.col("_metadata.file_modification_time").alias("_source_modified_at"),
        )
    )


# ---- local source helpers: the files of a micro-batch, their headers, what is in files without rows ------------


def local_path(uri: str) -> str:
    """`file:/a/b`, `file:///a/b` and `/a/b` all become `/a/b`; a volume's `dbfs:/Volumes/…` (as Auto Loader names
    files) becomes `/Volumes/…`, where Databricks mounts volumes for file access."""
    parsed = urlparse(uri)
    if parsed.scheme == "dbfs" and parsed.path.startswith("/Volumes/"):
        return unquote(parsed.path)
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
    raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # noqa: SIM115  (the caller closes it)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")


def header_name(name: str) -> str:
    """How a header name is matched to a column: case- and surrounding-space-insensitively (Auto Loader's
    `readerCaseSensitive=false`)."""
    return name.strip().lstrip("\ufeff").strip().lower()


def read_header(path: str) -> list[str] | None:
    """The column names in a file's first record (None for an empty or unreadable file)."""
    try:
        with _open_text(path) as fh:
            first = next(csv.reader(fh), None)
    except (OSError, EOFError, zlib.error, csv.Error):
        return None
    return [c.strip().lstrip("\ufeff") for c in first] if first else None


def unreadable_reason(exc: BaseException) -> str:
    """Why a file could not be read, by the exception's class only: a message may quote the file's own bytes
    (`BadGzipFile: Not a gzipped file (b'P1')` holds the first two), and an ops row or a log line never carries
    landing content."""
    if isinstance(exc, gzip.BadGzipFile):
        what = "not a gzip stream"
    elif isinstance(exc, EOFError):
        what = "the compressed stream ends before its end marker"
    elif isinstance(exc, zlib.error):
        what = "the compressed data is damaged"
    else:
        what = "the file could not be read" + (f" (errno {exc.errno})" if getattr(exc, "errno", None) else "")
    return f"{type(exc).__name__}: {what}"


def probe(path: str) -> tuple[str, str | None]:
    """Why a file gave no rows: empty, header only, or unreadable (with the reason; never file contents)."""
    try:
        if not os.path.exists(path):
            return "unreadable", "the file disappeared before it could be read"
        with _open_text(path) as fh:
            first = fh.readline()
            rest = any(line.strip() for line in fh)
    except (OSError, EOFError, zlib.error) as exc:
        return "unreadable", unreadable_reason(exc)
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
        return f"{unreadable_reason(exc)}; rows after the damage were not read"
    return None


def read_by_name(spark, path: str, header: list[str], entity: str) -> DataFrame:
    """Re-read one file matching columns by header name (Auto Loader's behaviour): missing columns are null,
    extra columns and values that cannot be typed are kept as JSON in the rescued column."""
    expected_names = set(landing_columns(entity))
    names, seen = [], set()
    for i, name in enumerate(header):
        name = header_name(name) if header_name(name) in expected_names else (name or f"_c{i}")
        names.append(name if name not in seen else f"{name}_{i}")
        seen.add(name)
    corrupt = "__corrupt_record"
    raw = (
        spark.read.format("csv")
        .schema(
            StructType([StructField(n, StringType(), True) for n in names] + [StructField(corrupt, StringType(), True)])
        )
        .option("header", "true")
        .option("enforceSchema", "true")
        .option("multiLine", "true")
        .option("escape", '"')
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", corrupt)
        .option("encoding", "UTF-8")
        .load(path)
    )
    typed, rescue = [], []
    expected = source_schema(entity)
    for f in expected.fields:
        if f.name in names:
            col = F.col(f"`{f.name}`")
            value = col if isinstance(f.dataType, StringType) else try_cast(f"`{f.name}`", f.dataType)
            typed.append(value.alias(f.name))
            if not isinstance(f.dataType, StringType):
                rescue.append(F.when(col.isNotNull() & value.isNull(), col).alias(f.name))
        else:
            typed.append(F.lit(None).cast(f.dataType).alias(f.name))
    rescue += [F.col(f"`{n}`") for n in names if n not in expected.fieldNames()]
    rescue.append(F.col(corrupt).alias("_corrupt_record"))
    as_json = F.to_json(F.struct(*rescue))
    return raw.select(
        *typed,
        F.when(as_json != "{}", as_json).alias(RESCUED),
        F.col("_metadata.file_path").alias("_source_file"),
        F.col("_metadata.file_modification_time").alias("_source_modified_at"),
    )


def scan_bytes(path: str) -> tuple[bool, bool]:
    """One pass over a file's bytes (C speed): (holds a double quote -- only then can a field span lines,
    is valid UTF-8 -- only otherwise can a value hold a replacement character)."""
    quote, decoder = False, codecs.getincrementaldecoder("utf-8")("strict")
    try:
        with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                quote = quote or b'"' in chunk
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return True, False  # read it the careful way, and flag what did not decode
    except (OSError, EOFError, zlib.error):
        return False, True
    return quote, True


def read_multiline(spark, path: str, entity: str, header: bool = True) -> DataFrame:
    """One file read like the stream reads it, but with records that may span lines (quoted newlines); with
    `header=False` its first line is a row too (a file whose header line is really data)."""
    schema = StructType(source_schema(entity).fields + [StructField(RESCUED, StringType(), True)])
    return (
        spark.read.format("csv")
        .schema(schema)
        .option("header", str(header).lower())
        .option("enforceSchema", "true")
        .option("multiLine", "true")
        .option("escape", '"')
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", RESCUED)
        .option("encoding", "UTF-8")
        .load(path)
        .select(
            "*",
            F.col("_metadata.file_path").alias("_source_file"),
            F.col("_metadata.file_modification_time").alias("_source_modified_at"),
        )
    )


def path_variants(paths) -> list[str]:
    """The spellings `_metadata.file_path` may use for local paths."""
    return [v for p in paths for v in (p, f"file:{p}", f"file://{p}")]


def file_metrics(files) -> list:
    """Aggregates for `DataFrame.observe`: rows and rows with rescued data, per file of the batch."""
    files = list(files)
    if len(files) == 1:  # the usual hourly batch: no per-row file test needed
        return [F.count(F.lit(1)).alias("rows_0"), F.count(RESCUED).alias("rescued_0")]
    metrics = []
    for i, path in enumerate(files):
        mine = F.col("_source_file").isin(path_variants([path]))
        metrics.append(F.count(F.when(mine, 1)).alias(f"rows_{i}"))
        metrics.append(F.count(F.when(mine & F.col(RESCUED).isNotNull(), 1)).alias(f"rescued_{i}"))
    return metrics


def header_verdict(header: list[str], entity: str) -> str | None:
    """Why a header that is not the expected one cannot be read by name (None: it can). The reason names counts
    and classes only, never a header value: a header that is really a data row holds a patient's values."""
    expected = landing_columns(entity)
    names = [header_name(h) for h in header]
    if not set(names) & set(expected):
        return (
            f"the first line has none of the expected column names ({len(header)} field(s); {len(expected)} expected)"
        )
    if len(header) > MAX_HEADER_COLUMNS:
        return f"the header has {len(header)} columns (more than {MAX_HEADER_COLUMNS})"
    known = [n for n in names if n in expected]
    if len(known) != len(set(known)):
        return "an expected column name appears more than once in the header"
    return None


def align_files(
    spark, batch: DataFrame, entity: str, files: dict[str, int | None]
) -> tuple[DataFrame, bool, dict[str, str]]:
    """The local source reads files line by line and by position (fast, splittable). Files it would get wrong are
    read again on their own: a header other than the expected one -> by column name; a double quote somewhere
    (a quoted field may hold a newline) -> with multi-line records. A file whose header cannot be read by name is
    rejected, alone: its rows are left out, the reason (no cell or header value) goes to its ops record, and every
    other file of the batch lands. Returns the rows, whether any file is not valid UTF-8, and the rejected files."""
    expected = landing_columns(entity)
    reread: dict[str, DataFrame] = {}
    rejected: dict[str, str] = {}
    any_invalid = False
    for path in files:
        header = read_header(path)
        if header is None:
            continue
        quote, valid = scan_bytes(path)
        any_invalid = any_invalid or not valid
        names = [header_name(h) for h in header]
        if names != expected and not set(names) & set(expected) and len(names) == len(expected):
            # no header at all: the first line is a row of the expected width -> every line is read by position
            reread[path] = read_multiline(spark, path, entity, header=False)
        elif names != expected:  # the same names in another case or with spaces: in place
            reason = header_verdict(header, entity)
            if reason is None:
                try:
                    df = read_by_name(spark, path, header, entity)
                    _ = df.schema  # analysed here: a name Spark cannot use fails for this file alone
                except Exception as exc:  # noqa: BLE001  (its message may quote a header value: class only)
                    reason = f"its header cannot be read by name ({type(exc).__name__})"
                else:
                    reread[path] = df
            if reason is not None:
                rejected[path] = reason
        elif quote:
            reread[path] = read_multiline(spark, path, entity)
    if not reread and not rejected:
        return batch, any_invalid, rejected
    log.info(
        "%s: %d file(s) read again on their own (other header, or quoted fields), %d rejected",
        entity,
        len(reread),
        len(rejected),
    )
    keep = batch.where(~F.col("_source_file").isin(path_variants([*reread, *rejected])))
    for df in reread.values():
        keep = keep.unionByName(df)
    return keep, any_invalid, rejected


def flag_invalid_encoding(df: DataFrame, entity: str) -> DataFrame:
    """Bytes that are not UTF-8 are decoded as U+FFFD: keep such rows out of silver by marking them as rescued."""
    strings = [f.name for f in source_schema(entity).fields if isinstance(f.dataType, StringType)]
    bad = [F.when(F.col(c).contains("\ufffd"), F.col(c)).alias(c) for c in strings]
    any_bad = F.concat_ws("", *strings).contains("\ufffd")
    note = F.to_json(F.struct(F.lit("invalid UTF-8 bytes").alias("_encoding_error"), *bad))
    return df.withColumn(RESCUED, F.coalesce(F.col(RESCUED), F.when(any_bad, note)))


def with_metadata(ctx: JobContext, df: DataFrame) -> DataFrame:
    """Pipeline metadata and lineage, identical for both sources."""
    return (
        df.withColumn("_ingested_at", F.current_timestamp())
        .withColumn("_pipeline_env", F.lit(ctx.settings.env))
        .withColumn("_run_id", F.lit(ctx.run_id))
        .withColumn("_ingest_date", F.to_date("_ingested_at"))
    )


# ---- the shared sink ----------------------------------------------------------------------------------------


class Landed(NamedTuple):
    """What one landing file put in the bronze table in one batch."""

    rows: int
    rescued: int
    modified: datetime | None = None


@dataclass
class BronzeSink:
    """foreachBatch handler: append a micro-batch exactly once and account for every file in it.

    One batch: `prepare` the rows, `write` them (per-file figures counted during the write where it can),
    `count_landed` what the commit added when they were not, `file_records` (one ops row per file, with its status),
    then `account` for them: a log line, and the batch's entries for the job's summary in `ops_stream_batches`
    (`BatchFigures`). The sink works through its batch's session and hands nothing back in memory: on Spark Connect
    it runs in the server, a copy of the object the job made; `summary` reads the run's batches back.
    """

    ctx: JobContext
    entity: str
    table: str
    checkpoint: str
    _app_id: str | None = None

    @property
    def file_log(self) -> OpsTable:
        return OpsTable(self.ctx.lakehouse, self.ctx.settings.raw["tables"]["ops"]["bronze_files"], ops.BRONZE_FILES)

    @property
    def figures(self) -> ops.BatchFigures:
        return ops.BatchFigures(self.ctx.run_id, f"bronze_{self.entity}")

    @property
    def local(self) -> bool:
        """With Spark's file source (locally, and on open-source Spark) the source's log lists the batch's files and
        bronze reads them itself; Auto Loader's batches are taken as they come."""
        return not self.ctx.settings.auto_loader

    def app_id(self, spark) -> str:
        """The streaming query's id (kept in its checkpoint): stable across restarts, new for a new checkpoint."""
        if self._app_id is None:
            path = os.path.join(self.checkpoint, "metadata")
            if self.local:  # a plain file: no Spark job for one line
                with open(local_path(path), encoding="utf-8") as fh:
                    meta = fh.readline()
            else:
                meta = spark.read.text(path).first()[0]
            self._app_id = f"medallion-bronze-{self.entity}-{json.loads(meta)['id']}"
        return self._app_id

    def relative(self, path: str) -> str:
        landing = local_path(self.ctx.settings.location("landing")).rstrip("/") + "/"
        path = local_path(path)
        return path[len(landing) :] if path.startswith(landing) else path

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        replace(self, ctx=self.ctx.on(batch.sparkSession)).process(batch, batch_id)

    def process(self, batch: DataFrame, batch_id: int) -> None:
        listed = batch_files_from_log(self.checkpoint, batch_id) if self.local else {}
        rows, rejected = self.prepare(batch, listed)
        started = time.perf_counter()
        txn = (self.app_id(batch.sparkSession), batch_id)
        before, after, observed = self.write(rows, batch_id, listed, txn)
        written_s = time.perf_counter() - started
        landed = observed if observed is not None else self.count_landed(batch, listed, before, after)
        replayed = after == before and bool(landed)
        records = self.file_records(batch_id, listed, landed, rejected)
        self.file_log.append(records, txn=txn)
        self.account(batch_id, records, replayed, written_s, time.perf_counter() - started - written_s)

    def prepare(self, batch: DataFrame, listed: dict[str, int | None]) -> tuple[DataFrame, dict[str, str]]:
        """The batch as bronze stores it: locally, files the fast line reader gets wrong read again (or rejected,
        with their reason); rows holding bytes that are not UTF-8 marked as rescued; pipeline metadata and lineage
        added."""
        invalid_utf8, rejected = True, {}  # Auto Loader: check every row
        if self.local:
            batch, invalid_utf8, rejected = align_files(batch.sparkSession, batch, self.entity, listed)
        if invalid_utf8:
            batch = flag_invalid_encoding(batch, self.entity)
        columns = [f.name for f in bronze_table_schema(self.entity).fields]
        return with_metadata(self.ctx, batch).select(*columns), rejected

    def write(
        self, rows: DataFrame, batch_id: int, listed: dict[str, int | None], txn: tuple[str, int]
    ) -> tuple[int, int, dict[str, Landed] | None]:
        """Append exactly once; returns the table's versions before and after, and the per-file figures when they
        were counted during the write (a few listed files, and the write committed), else None."""
        lake = self.ctx.lakehouse
        observation = None
        # per-file figures counted while writing, no second pass (a Spark 3.5 Connect client cannot read them)
        if 0 < len(listed) <= OBSERVE_MAX_FILES and not is_connect(rows.sparkSession):
            observation = Observation(f"bronze_{self.entity}_{batch_id}")
            rows = rows.observe(observation, *file_metrics(listed))
        before = lake.version(self.table)
        lake.append(rows, self.table, txn=txn)
        after = lake.version(self.table)
        if after == before or observation is None:
            return before, after, None
        metrics = observation.get
        return (
            before,
            after,
            {
                path: Landed(metrics[f"rows_{i}"], metrics[f"rescued_{i}"])
                for i, path in enumerate(listed)
                if metrics[f"rows_{i}"]
            },
        )

    def count_landed(
        self, batch: DataFrame, listed: dict[str, int | None], before: int, after: int
    ) -> dict[str, Landed]:
        """Per-file figures read back from the table (two columns)."""
        lake = self.ctx.lakehouse
        if after > before:  # many files, or Auto Loader: count what the commit just added
            landed = lake.read_changes(self.table, before + 1, after)
        else:
            # Delta skipped the write: this (txnAppId, txnVersion) was committed by a run that died before
            # its checkpoint commit, so the rows are in the table already (or the batch was empty)
            files = list(listed) or [r[0] for r in batch.select("_source_file").distinct().collect()]
            landed = lake.read(self.table).where(F.col("_source_file").isin(path_variants(files)))
        return {
            local_path(r["_source_file"]): Landed(r["rows"], r["rescued"], r["modified"])
            for r in landed.groupBy("_source_file")
            .agg(
                F.count(F.lit(1)).alias("rows"),
                F.count(RESCUED).alias("rescued"),
                F.max("_source_modified_at").alias("modified"),
            )
            .collect()
        }

    def file_status(self, path: str, rows: int) -> tuple[str, str | None]:
        """ingested; partial (a compressed file damaged after some rows); or why a file gave no rows."""
        if rows:  # the file is read on the driver: a local path, or a volume's /Volumes path on Databricks
            reason = verify_compressed(path)
            return ("partial" if reason else "ingested"), reason
        return probe(path)

    def file_records(
        self,
        batch_id: int,
        listed: dict[str, int | None],
        landed: dict[str, Landed],
        rejected: dict[str, str] | None = None,
    ) -> list[dict]:
        """One `ops_bronze_files` row per file of the batch (listed by the source's log, or found in the table);
        a rejected file's record carries its reason."""
        rejected = rejected or {}
        now = datetime.now(timezone.utc)
        table = self.ctx.lakehouse.display_name(self.table)
        records = []
        for path in sorted(set(listed) | set(landed)):
            rows, rescued, modified = landed.get(path, Landed(0, 0))
            status, reason = ("rejected", rejected[path]) if path in rejected else self.file_status(path, rows)
            if listed.get(path):
                modified = datetime.fromtimestamp(listed[path] / 1000, timezone.utc)
            records.append(
                {
                    "run_id": self.ctx.run_id,
                    "batch_id": batch_id,
                    "table_name": table,
                    "file_path": self.relative(path),
                    "file_modified_at": modified,
                    "status": status,
                    "rows": int(rows),
                    "rescued_rows": int(rescued),
                    "reason": reason,
                    "recorded_at": now,
                }
            )
        return records

    def account(
        self, batch_id: int, records: list[dict], replayed: bool, written_s: float, accounting_s: float
    ) -> None:
        """The batch's files for the job's summary (a replayed batch's rows were counted by the run that wrote them)
        and its one log line; file paths and counts only."""
        files = []
        for rec in records:
            entry_ = {
                "file": rec["file_path"],
                "status": rec["status"],
                "rows": rec["rows"],
                "rescued_rows": rec["rescued_rows"],
            }
            if rec["reason"]:
                entry_["reason"] = rec["reason"]
            if replayed:  # landed by the interrupted run; counted there, not here
                entry_.update(rows=0, rescued_rows=0, replayed=True)
            if rec["status"] in PROBLEM_STATUSES:
                log.warning("%s: file %s is %s: %s", self.entity, rec["file_path"], rec["status"], rec["reason"])
            files.append(entry_)
        log.info(
            "%s batch %d: %d file(s), %d row(s) in %.1fs (+%.1fs accounting)%s",
            self.entity,
            batch_id,
            len(records),
            sum(r["rows"] for r in records),
            written_s,
            accounting_s,
            " [replayed]" if replayed else "",
        )
        if replayed:
            log.warning("%s: batch %d was already committed by an interrupted run; skipped", self.entity, batch_id)
        self.figures.record(
            self.ctx.lakehouse,
            batch_id,
            {"files": len(files), "rows": sum(f["rows"] for f in files), "replayed": int(replayed)},
            detail=json.dumps(files),
        )

    def sweep(self, started: float) -> None:
        """Auto Loader hands a batch rows only, so a landing file that gave none (empty, header only, unreadable)
        never reaches the sink. After the run, every landing file of the entity that was there before the stream
        started (an `availableNow` run reads all of those) and has no ops record is probed and recorded like a file
        the local source lists (batch -1). Locally that log lists such files in their batch: nothing to sweep."""
        if self.local:
            return
        landing = local_path(self.ctx.settings.location("landing"))
        suffixes = self.ctx.settings.raw.get("bronze", {}).get("compressed_suffixes") or []
        names = [self.ctx.settings.landing_file(self.entity) + s for s in ["", *suffixes]]
        there = {
            path: os.stat(path).st_mtime
            for name in names
            for path in glob.glob(os.path.join(glob.escape(landing), "*", name))
        }
        there = {path: mtime for path, mtime in there.items() if mtime < started}
        if not there:
            return
        lake = self.ctx.lakehouse
        recorded = {
            r[0]
            for r in lake.read(self.file_log.name)
            .where(F.col("table_name") == lake.display_name(self.table))
            .select("file_path")
            .distinct()
            .collect()
        }
        unseen = {path: int(mtime * 1000) for path, mtime in there.items() if self.relative(path) not in recorded}
        if unseen:
            records = self.file_records(-1, unseen, {})
            self.file_log.append(records)
            self.account(-1, records, False, 0.0, 0.0)

    def summary(self) -> dict:
        """The run's batches of this entity, as their sink recorded them (a swept file as batch -1)."""
        batches = self.figures.read(self.ctx.lakehouse)
        files = [f for _, _, detail in batches for f in json.loads(detail or "[]")]

        def total(key):
            return sum(f[key] for f in files)

        problems = [f["file"] for f in files if f["status"] in PROBLEM_STATUSES]
        by_status: dict[str, int] = {}
        for f in files:
            by_status[f["status"]] = by_status.get(f["status"], 0) + 1
        return {
            "table": self.ctx.lakehouse.display_name(self.table),
            "batches": sum(batch_id >= 0 for batch_id, _, _ in batches),
            "batches_replayed": sum(figures.get("replayed", 0) for _, figures, _ in batches),
            "files_seen": len(files),
            "files_by_status": by_status,
            "rows_ingested": total("rows"),
            "rows_rescued": total("rescued_rows"),
            "unreadable_files": problems,
            "files": files,
        }


def start(ctx: JobContext, entity: str):
    """Create the entity's tables if needed and start its stream; returns (query, sink)."""
    lake = ctx.lakehouse
    table = ctx.settings.table_name("bronze", entity)
    stats = [KEYS[entity], *(ctx.settings.raw.get("bronze", {}).get("stats_columns") or [])]
    lake.ensure(
        table,
        bronze_table_schema(entity),
        "bronze",
        partition_by=["_ingest_date"],
        properties={"delta.appendOnly": "true", "delta.dataSkippingStatsColumns": ",".join(stats)},
    )
    OpsTable.open(
        lake,
        ctx.settings.raw["tables"]["ops"]["bronze_files"],
        ops.BRONZE_FILES,
        properties={"delta.appendOnly": "true"},
    )
    ops.BatchFigures.ensure(lake)
    checkpoint = lake.checkpoint(f"bronze_{entity}")
    sink = BronzeSink(ctx, entity, table, checkpoint)
    query = start_stream(
        source_stream(ctx, entity)
        .writeStream.foreachBatch(sink)
        .queryName(f"bronze_{entity}")
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
    )
    return query, sink


def run(ctx: JobContext) -> dict:
    """The entities' streams run side by side (each has its own table and checkpoint; their ops rows are blind
    appends, which Delta commits concurrently). Over Spark Connect one after another: there each stream's
    `foreachBatch` function runs in a Python process the server starts for it, and Spark 3.5's server gives that
    process 10 seconds to connect back; three starting at once on a busy server can miss that."""
    started = time.time()
    running = {}
    try:
        for entity in selected_entities(ctx.args):
            running[entity] = start(ctx, entity)
            if is_connect(ctx.spark):
                running[entity][0].awaitTermination()
        for query, _ in running.values():
            query.awaitTermination()
    finally:
        for query, _ in running.values():
            if query.isActive:
                query.stop()
    for _, sink in running.values():
        sink.sweep(started)
    results = {entity: sink.summary() for entity, (_, sink) in running.items()}
    unreadable = [f"{e}: {p}" for e, r in results.items() for p in r["unreadable_files"]]
    return {
        "tables": results,
        "files_seen": sum(r["files_seen"] for r in results.values()),
        "rows_ingested": sum(r["rows_ingested"] for r in results.values()),
        "rows_rescued": sum(r["rows_rescued"] for r in results.values()),
        "unreadable_files": unreadable,
    }


add_arguments = entities_argument
main = entry("bronze", run, add_arguments)

if __name__ == "__main__":
    main()
