"""Where tables, views and published files live and how they are written: Unity Catalog names on Databricks, Delta
paths (and temporary views, plain files) locally.

Every job goes through this module, so the rest of the code never branches on the target.

Delta operations are SQL (`CREATE TABLE`, `MERGE INTO`, `DELETE`, `DESCRIBE HISTORY`), not delta-spark's Python
`DeltaTable`: that one calls into the JVM, which a Spark Connect client (Databricks serverless) does not have. The
same statements run on a classic session, on Spark Connect and on Databricks.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
from collections.abc import Callable
from datetime import date, datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DataType, StructField, StructType

from . import governance
from .config import Settings

LAYER_PROPERTY = {"bronze": "bronze", "silver": "silver", "gold": "gold", "quarantine": "silver", "ops": "ops"}


class Lakehouse:
    def __init__(self, spark: SparkSession | Callable[[], SparkSession], settings: Settings):
        """`spark` is a session, or a function that returns one: then Spark starts only when a table is read or
        written, so a run that finds nothing to do (see `stream_caught_up`) never starts it."""
        self._spark = spark
        self.settings = settings

    @property
    def spark(self) -> SparkSession:
        if callable(self._spark):
            self._spark = self._spark()
        return self._spark

    # ---- naming -----------------------------------------------------------------------------
    def path(self, table: str) -> str:
        return os.path.join(self.settings.location("warehouse"), self.settings.schema, table)

    def ref(self, table: str) -> str:
        """A SQL identifier for the table, usable in spark.table() and in SQL text."""
        if self.settings.is_local:
            return f"delta.`{self.path(table)}`"
        return f"`{self.settings.catalog}`.`{self.settings.schema}`.`{table}`"

    def display_name(self, table: str) -> str:
        if self.settings.is_local:
            return f"{self.settings.schema}.{table}"
        return f"{self.settings.catalog}.{self.settings.schema}.{table}"

    def checkpoint(self, name: str) -> str:
        return os.path.join(self.settings.location("checkpoints"), name)

    def view_ref(self, name: str) -> str:
        """How SQL names a view: `catalog`.`schema`.`name` in Unity Catalog; locally, where there is no metastore,
        the bare name of a temporary view of the session."""
        if self.settings.is_local:
            return name
        return f"`{self.settings.catalog}`.`{self.settings.schema}`.`{name}`"

    def create_view_statement(self, name: str, query: str) -> str:
        """The SQL that (re)creates a view: persistent in Unity Catalog, a temporary view of the session locally."""
        kind = "TEMPORARY VIEW" if self.settings.is_local else "VIEW"
        return f"CREATE OR REPLACE {kind} {self.view_ref(name)} AS {query}"

    # ---- reading ----------------------------------------------------------------------------
    def exists(self, table: str) -> bool:
        if self.settings.is_local:  # a Delta table is a folder with a transaction log that has a commit
            return bool(self._log_versions(table))
        return self.spark.catalog.tableExists(f"{self.settings.catalog}.{self.settings.schema}.{table}")

    def read(self, table: str) -> DataFrame:
        return self.spark.table(self.ref(table))

    def on(self, spark: SparkSession) -> Lakehouse:
        """The same lakehouse through another session: a `foreachBatch` function works through its batch's session
        (on Spark Connect it runs in the server, where the job's own session does not exist)."""
        return Lakehouse(spark, self.settings)

    def history(self, table: str, limit: int | None = None) -> DataFrame:
        """The table's commit history, newest first (`DESCRIBE HISTORY`)."""
        return self.spark.sql(f"DESCRIBE HISTORY {self.ref(table)}" + (f" LIMIT {int(limit)}" if limit else ""))

    def detail(self, table: str):
        """The table's `DESCRIBE DETAIL` row (format, location, partition and clustering columns, properties)."""
        return self.spark.sql(f"DESCRIBE DETAIL {self.ref(table)}").first()

    def version(self, table: str) -> int:
        """The table's latest committed version (locally read off the transaction log's file names: no job)."""
        if self.settings.is_local:
            return max(self._log_versions(table))
        return int(self.history(table, 1).select("version").first()[0])

    def _log_versions(self, table: str) -> list[int]:
        """The versions with a commit file in a local table's transaction log (none: not a Delta table)."""
        try:
            names = os.listdir(os.path.join(self.path(table), "_delta_log"))
        except OSError:
            return []
        return [int(n[:20]) for n in names if n.endswith(".json") and len(n) == 25 and n[:20].isdigit()]

    def _table_id(self, table: str) -> str | None:
        """A local table's id (its latest metaData action): a table dropped and created again gets a new one."""
        log_dir = os.path.join(self.path(table), "_delta_log")
        for version in sorted(self._log_versions(table), reverse=True):
            with open(os.path.join(log_dir, f"{version:020d}.json"), encoding="utf-8") as fh:
                for line in fh:
                    if '"metaData"' in line:
                        return json.loads(line)["metaData"]["id"]
        return None  # only in a log checkpoint (an old table): unknown

    # ---- what a run has to do, read without starting Spark where the target allows it ---------
    FINISHED = "medallion_finished"  # in a stream's checkpoint: the last batch of a run that read to the end

    def stream_finished(self, checkpoint: str) -> None:
        """Record that an `availableNow` run of a stream ended normally, having read everything there was when it
        started (called after `awaitTermination` returns). Local only: `stream_caught_up` reads it."""
        if not self.settings.is_local:
            return
        batches = self._batches(self.checkpoint(checkpoint), "commits")
        if batches:
            path = os.path.join(self.checkpoint(checkpoint), self.FINISHED)
            with open(path + ".tmp", "w", encoding="utf-8") as fh:
                fh.write(str(batches[-1]))
            os.replace(path + ".tmp", path)

    @staticmethod
    def _batches(folder: str, kind: str) -> list[int]:
        try:
            return sorted(int(n) for n in os.listdir(os.path.join(folder, kind)) if n.isdigit())
        except OSError:
            return []

    def stream_caught_up(self, source: str, checkpoint: str) -> bool:
        """True when an `availableNow` run of a Delta stream would read nothing: its last run ended normally
        (`stream_finished`) with its last batch committed, and the source has no version it had not read. Locally
        all of it is files (the transaction log; the checkpoint's offsets, commits and finish mark), so no Spark is
        started; False whenever it cannot tell (on Databricks, where Unity Catalog tables are not read as files; a run
        that died mid-way; a source table created again since)."""
        if not self.settings.is_local:
            return False
        folder = self.checkpoint(checkpoint)
        offsets, commits = self._batches(folder, "offsets"), self._batches(folder, "commits")
        try:
            with open(os.path.join(folder, self.FINISHED), encoding="utf-8") as fh:
                finished = int(fh.read().strip())
            if not offsets or commits[-1:] != offsets[-1:] or finished != offsets[-1]:
                return False  # no batch yet, the last one did not commit, or a later run did not finish
            with open(os.path.join(folder, "offsets", str(offsets[-1])), encoding="utf-8") as fh:
                offset = json.loads(fh.read().splitlines()[2])  # "v1", the batch's metadata, then the source's offset
            latest = self.version(source)
            table_id = self._table_id(source)
        except (OSError, ValueError, IndexError):
            return False
        # Delta's offset: (version, index of its last file read), or (next version, -1) once a version was read whole
        index, version = int(offset.get("index", -2)), int(offset.get("reservoirVersion", -1))
        read_through = version - 1 if index == -1 else version
        return table_id is not None and offset.get("reservoirId") == table_id and read_through >= latest

    def known_empty(self, table: str) -> bool:
        """True when a table is known to hold no rows without reading it (locally: the checksum Delta writes with a
        commit counts its files); False when it has rows or that cannot be told."""
        if not self.settings.is_local or not self.exists(table):
            return False
        crc = os.path.join(self.path(table), "_delta_log", f"{self.version(table):020d}.crc")
        try:
            with open(crc, encoding="utf-8") as fh:
                return json.load(fh).get("numFiles") == 0
        except (OSError, ValueError):
            return False

    def read_changes(self, table: str, start: int, end: int) -> DataFrame:
        """The change data feed of versions [start, end] (with `_change_type`, `_commit_version`)."""
        reader = (
            self.spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", start)
            .option("endingVersion", end)
        )
        return reader.load(self.path(table)) if self.settings.is_local else reader.table(self.ref(table))

    def read_stream(self, table: str, change_feed: bool = False):
        reader = self.spark.readStream.format("delta")
        if change_feed:
            reader = reader.option("readChangeFeed", "true")
        if self.settings.is_local:
            return reader.load(self.path(table))
        return reader.table(self.ref(table))

    # ---- writing ----------------------------------------------------------------------------
    def ensure(
        self,
        table: str,
        schema,
        layer: str,
        partition_by: list[str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> None:
        """Create the table if it does not exist, with change data feed on and its layer's properties; add the
        columns a newer release of the code expects to a table created by an older one."""
        if self.exists(table):
            have = set(self.read(table).columns)
            missing = [f for f in schema.fields if f.name not in have]
            if missing:
                cols = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
                self.spark.sql(f"ALTER TABLE {self.ref(table)} ADD COLUMNS ({cols})")
            return
        props = {"delta.enableChangeDataFeed": "true", "quality": LAYER_PROPERTY[layer]}
        props.update(properties or {})
        governed = governance.is_configured(self.settings, table)
        comments = governance.phi_comments(self.settings, table) if governed else {}  # PHI columns say so
        schema = StructType(
            [
                StructField(f.name, f.dataType, f.nullable, {**f.metadata, "comment": comments[f.name]})
                if f.name in comments
                else f
                for f in schema.fields
            ]
        )
        columns = ", ".join(
            f"`{f.name}` {f.dataType.simpleString()}"
            + ("" if f.nullable else " NOT NULL")
            + (f" COMMENT {governance.quote_string(f.metadata['comment'])}" if f.metadata.get("comment") else "")
            for f in schema.fields
        )
        statement = f"CREATE TABLE IF NOT EXISTS {self.ref(table)} ({columns}) USING DELTA"
        if partition_by:
            statement += f" PARTITIONED BY ({', '.join(f'`{c}`' for c in partition_by)})"
        cluster_by = self.clustering(table)
        if cluster_by:
            statement += f" CLUSTER BY ({', '.join(f'`{c}`' for c in cluster_by)})"
        statement += (
            " TBLPROPERTIES ("
            + ", ".join(f"{governance.quote_string(k)} = {governance.quote_string(v)}" for k, v in props.items())
            + ")"
        )
        self.spark.sql(statement)
        for statement in governance.unity_catalog_statements(self.settings, table, self.ref(table)) if governed else []:
            self.spark.sql(statement)  # PHI tags and gold-only grants (Databricks)

    def clustering(self, table: str) -> list[str]:
        """The liquid-clustering keys configured for a table (include/pipeline.yaml -> clustering)."""
        for layer, entities in (self.settings.raw.get("clustering") or {}).items():
            for entity, columns in entities.items():
                if self.settings.table_name(layer, entity) == table:
                    return list(columns)
        return []

    def append(self, df: DataFrame, table: str, txn: tuple[str, int] | None = None) -> None:
        """Append rows; with `txn=(app_id, version)` Delta skips a write it has already committed (exactly once)."""
        writer = df.write.format("delta").mode("append")
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
        self._save(writer, table)

    def overwrite_where(self, df: DataFrame, table: str, condition: str) -> None:
        """Replace the rows matching the SQL `condition` with `df` in one atomic commit (Delta `replaceWhere`).

        A catalog table takes it as `INSERT INTO … REPLACE WHERE` (Databricks SQL, and Spark 3.4+ on a Delta table):
        `saveAsTable` in overwrite mode with a `replaceWhere` option fails on open-source Spark's catalog tables
        (the overwrite is planned as a truncate first), and `insertInto` in overwrite mode ignores the option and
        replaces the whole table."""
        if self.settings.is_local:
            df.write.format("delta").mode("overwrite").option("replaceWhere", condition).save(self.path(table))
            return
        with self._temp_view(df) as view:
            df.sparkSession.sql(f"INSERT INTO {self.ref(table)} REPLACE WHERE {condition} SELECT * FROM {view}")

    def _save(self, writer, table: str) -> None:
        if self.settings.is_local:
            writer.save(self.path(table))
        else:
            writer.saveAsTable(self.ref(table))

    def frame(self, records: list[tuple], schema: StructType) -> DataFrame:
        """A few rows of plain values (str, int, float, bool, date, datetime, None; dict for a map column, list for
        an array column) as a DataFrame of `schema`, built from one SQL expression of typed literals. Not
        `createDataFrame` on a list: it starts Python worker processes (seconds per job process); not a column per
        value either: each `F.lit` is a round trip to the JVM (about a second per hundred values), and neither
        would work over Spark Connect the same way."""
        rows = ", ".join(
            "named_struct("
            + ", ".join(f"{_sql_literal(f.name)}, {_sql_literal(v, f.dataType)}" for v, f in zip(r, schema.fields))
            + ")"
            for r in records or [(None,) * len(schema.fields)]
        )
        frame = self.spark.range(1).selectExpr(f"inline(array({rows}))")
        return frame if records else frame.limit(0)

    _views = itertools.count()

    def merge(self, table: str, source: DataFrame, on: str, clauses: str) -> None:
        """`MERGE INTO table AS t USING source AS s ON <on> <clauses>` (the WHEN clauses as SQL). The source is a
        temporary view of its own session under a name no other merge of this process uses (streams of one job
        merge side by side)."""
        with self._temp_view(source) as view:
            source.sparkSession.sql(f"MERGE INTO {self.ref(table)} AS t USING {view} AS s ON {on} {clauses}")

    @contextlib.contextmanager
    def _temp_view(self, df: DataFrame):
        """`df` as a temporary view of its own session, under a name no other statement of this process uses."""
        view = f"_medallion_source_{os.getpid()}_{next(self._views)}"
        df.createOrReplaceTempView(view)
        try:
            yield view
        finally:
            df.sparkSession.catalog.dropTempView(view)

    def delete(self, table: str, condition: str | None = None) -> None:
        """Delete the rows matching the SQL `condition` (all rows without one); the table keeps its identity, history
        and change feed."""
        self.spark.sql(f"DELETE FROM {self.ref(table)}" + (f" WHERE {condition}" if condition else ""))

    def drop(self, table: str) -> None:
        """Remove a table and its data (used by full refreshes of derived layers only)."""
        if self.settings.is_local:
            shutil.rmtree(self.path(table), ignore_errors=True)
        else:
            self.spark.sql(f"DROP TABLE IF EXISTS {self.ref(table)}")

    def reset_checkpoint(self, name: str) -> None:
        shutil.rmtree(self.checkpoint(name), ignore_errors=True)

    # ---- files ------------------------------------------------------------------------------
    # Landing files and checkpoints are file paths on both targets: a local folder, or a Unity Catalog volume, which
    # Databricks mounts at /Volumes on the driver of serverless and cluster compute alike. Plain file operations work
    # on both, where the Hadoop file system would need the JVM, which Spark Connect (serverless) does not expose.
    def publish_file(self, staged_dir: str, final_path: str) -> None:
        """Move the one part file Spark wrote into `staged_dir` to `final_path` (readers never see half a file: an
        atomic rename locally, a volume's move on Databricks) and remove the staging folder. RuntimeError when there
        is not exactly one part file."""
        parts = sorted(f for f in os.listdir(staged_dir) if f.startswith("part-") and f.endswith(".txt"))
        if len(parts) != 1:
            raise RuntimeError(f"expected one staged part file, found {len(parts)}")
        os.makedirs(os.path.dirname(final_path), exist_ok=True)
        os.replace(os.path.join(staged_dir, parts[0]), final_path)
        shutil.rmtree(staged_dir, ignore_errors=True)

    def count(self, table: str) -> int | None:
        return int(self.read(table).count()) if self.exists(table) else None  # (numpy.int64 over Spark Connect)


def _sql_literal(value, data_type: DataType | None = None) -> str:
    """One value as a SQL literal of `data_type` (a string literal without one). Timestamps are written in UTC with
    their offset (a naive datetime is local time, as PySpark reads it), so the session time zone cannot shift them."""
    if type(value).__module__ == "numpy":  # a figure Spark Connect hands back as a NumPy scalar (count())
        value = value.item()
    if value is None:
        return f"CAST(NULL AS {data_type.simpleString()})"
    if isinstance(value, bool):
        text = "TRUE" if value else "FALSE"
    elif isinstance(value, str):
        text = governance.quote_string(value)
    elif isinstance(value, (int, float)):
        text = governance.quote_string(repr(float(value)) if isinstance(value, float) else str(value))
        text = {"'inf'": "'Infinity'", "'-inf'": "'-Infinity'", "'nan'": "'NaN'"}.get(text, text)
    elif isinstance(value, datetime):
        text = "TIMESTAMP " + governance.quote_string(value.astimezone(timezone.utc).isoformat(sep=" "))
    elif isinstance(value, date):
        text = f"DATE '{value.isoformat()}'"
    elif isinstance(value, dict):
        k, v = data_type.keyType, data_type.valueType
        text = "map(" + ", ".join(f"{_sql_literal(a, k)}, {_sql_literal(b, v)}" for a, b in value.items()) + ")"
    elif isinstance(value, (list, tuple)):
        text = "array(" + ", ".join(_sql_literal(v, data_type.elementType) for v in value) + ")"
    else:
        raise TypeError(f"no SQL literal for a {type(value).__name__}")
    return text if data_type is None else f"CAST({text} AS {data_type.simpleString()})"
