"""The operations tables: what the jobs record about their own runs (files seen, run figures, check outcomes,
monitoring measures). Beside the domain tables, never part of them, and aggregates only: no patient value.

One home for their schemas and one way to write them, so every ops table behaves alike and a new figure is added in
one place. `OpsTable.open` creates the table on first use through `Lakehouse.ensure` (change data feed on,
`quality=ops`, columns a newer release adds are added). Rows — dicts by column name or tuples in column order — are
built from one SQL expression of typed literals (`Lakehouse.frame`): `createDataFrame` on a list would start Python
worker processes in every job run. Every write is idempotent: a retried run replaces its own rows in one commit
(`replace_run`), or Delta's idempotent-write options skip a batch already committed (`append` with `txn`).

Table names: include/pipeline.yaml -> `tables.ops` (what the layer jobs record) and `monitoring.tables` (what the
monitoring job measures).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from .governance import quote_string
from .lakehouse import Lakehouse

S, L, D, B, T = StringType(), LongType(), DoubleType(), BooleanType(), TimestampType()

# ---- what the layer jobs record (tables.ops) ---------------------------------------------------------------------


def _schema(*fields: tuple) -> StructType:
    """A schema from (name, type) fields, nullable, and (name, type, False) fields, required."""
    return StructType([StructField(name, kind, *nullable) for name, kind, *nullable in fields])


BRONZE_FILES = _schema(  # one row per landing file bronze has seen
    ("run_id", S, False),
    ("batch_id", L, False),
    ("table_name", S, False),
    ("file_path", S, False),
    ("file_modified_at", T),
    ("status", S, False),  # ingested | empty | header_only | unreadable | partial
    ("rows", L, False),
    ("rescued_rows", L, False),
    ("reason", S),
    ("recorded_at", T, False),
)

SILVER_RUN_COUNTS = (
    "rows_in",
    "valid",
    "quarantined",
    "exact_duplicates",
    "held",
    "released",
    "expired_to_quarantine",
    "rescued_resolved",
)
SILVER_RUNS = _schema(  # one row per silver run and entity
    ("run_id", S, False),
    ("entity", S, False),
    ("processed_at", T, False),
    *[(name, L, False) for name in SILVER_RUN_COUNTS],
    ("quarantined_by_rule", MapType(S, L), False),
    ("quality_score", D),
    ("target_score", D, False),
)

SODA_CHECKS = _schema(  # one row per Soda check per silver run
    ("run_id", S, False),
    ("checked_at", T, False),
    ("table_name", S, False),
    ("check_name", S, False),
    ("column_name", S),
    ("outcome", S, False),
    ("level", S, False),
    ("measured_value", D),
    ("measured_text", S),
    ("definition", S),
    ("check_identity", S),
)

STREAM_BATCHES = _schema(  # one row per micro-batch of a job's stream: what the batch function did
    ("run_id", S, False),
    ("stream", S, False),
    ("batch_id", L, False),
    ("figures", MapType(S, L), False),
    ("detail", S),  # JSON: per-file entries (bronze), the one-line reason a batch stopped the run (silver)
    ("recorded_at", T, False),
)

TABLE_COUNTS = _schema(  # row count of every table per monitoring run
    ("run_id", S, False),
    ("measured_at", T, False),
    ("interval_start", T),
    ("interval_end", T),
    ("layer", S, False),
    ("table_name", S, False),
    ("row_count", L),
)


# ---- what the monitoring job measures (monitoring.tables) ---------------------------------------------------------


def _measure(*fields: tuple) -> StructType:
    """A monitoring table: the run and when it measured, then its (nullable) figures."""
    return _schema(("run_id", S, False), ("measured_at", T, False), *fields)


MONITORING = {
    "quality": _measure(
        ("entity", S),
        ("valid", L),
        ("quarantined", L),
        ("score", D),
        ("total_valid", L),
        ("total_quarantined", L),
        ("total_score", D),
        ("target_score", D),
        ("breach", B),
        ("source", S),
    ),
    "quarantine_rules": _measure(("entity", S), ("rule", S), ("window_rows", L), ("total_rows", L)),
    "freshness": _measure(
        ("layer", S),
        ("entity", S),
        ("table_name", S),
        ("exists", B),
        ("newest_at", T),
        ("age_minutes", D),
        ("sla_minutes", D),
        ("basis", S),
        ("stale", B),
    ),
    "volumes": _measure(
        ("entity", S),
        ("table_name", S),
        ("batch", S),
        ("rows", L),
        ("band_low", D),
        ("band_high", D),
        ("history_batches", L),
        ("anomaly", B),
        ("latest", B),
    ),
    "drift": _measure(
        ("column_name", S),
        ("entity", S),
        ("table_name", S),
        ("psi", D),
        ("rows_current", L),
        ("rows_baseline", L),
        ("status", S),
        ("breach", B),
    ),
    "reconciliation": _measure(
        ("entity", S),
        ("landed", L),
        ("processed", L),
        ("valid", L),
        ("quarantined", L),
        ("duplicates", L),
        ("held", L),
        ("backlog", L),
        ("difference", L),
        ("balanced", B),
        ("source", S),
        ("breach", B),
    ),
    "audit": _measure(
        ("layer", S),
        ("table_name", S),
        ("from_version", L),
        ("to_version", L),
        ("commits", L),
        ("operations", MapType(S, L)),
        ("writer_run_id", S),
        ("inserts", L),
        ("updates", L),
        ("deletes", L),
    ),
    "breaches": _measure(("kind", S), ("subject", S), ("detail", S), ("key", S), ("new", B)),
}
DRIFT_BASELINE = _schema(  # the baseline's bins, captured once (delete its rows to re-baseline)
    ("column_name", S, False),
    ("entity", S),
    ("edges", ArrayType(D)),
    ("proportions", ArrayType(D)),
    ("rows", L),
    ("captured_run_id", S),
    ("captured_at", T),
)


# ---- the one writer -----------------------------------------------------------------------------------------------

Row = Mapping[str, Any] | Sequence[Any]


@dataclass(frozen=True)
class OpsTable:
    """One operations table of one environment, written through `Lakehouse`."""

    lake: Lakehouse
    name: str
    schema: StructType

    @classmethod
    def open(cls, lake: Lakehouse, name: str, schema: StructType, properties: dict[str, str] | None = None) -> OpsTable:
        """The table, created first if it does not exist (`properties` only apply then)."""
        lake.ensure(name, schema, "ops", properties=properties)
        return cls(lake, name, schema)

    def frame(self, rows: Iterable[Row]) -> DataFrame:
        """Rows (dicts by column name, or tuples in column order) as a DataFrame of the table's schema."""
        records = [
            tuple(row.get(f.name) for f in self.schema.fields) if isinstance(row, Mapping) else tuple(row)
            for row in rows
        ]
        return self.lake.frame(records, self.schema)

    def append(self, rows: Iterable[Row], txn: tuple[str, int] | None = None) -> None:
        """Append rows (with `txn`, exactly once: see `Lakehouse.append`); nothing for no rows."""
        rows = list(rows)
        if rows:
            self.lake.append(self.frame(rows), self.name, txn=txn)

    def replace_run(self, run_id: str, rows: Iterable[Row], within: tuple[str, Sequence[str]] | None = None) -> None:
        """Store one run's rows: what an earlier attempt of the same run wrote is replaced in one atomic commit (a
        `replaceWhere` overwrite: one write, where a MERGE would scan the table twice). `within` = (column, values)
        narrows the replaced rows to those values (a run that wrote some entities leaves the others' rows); every
        new row must lie inside them."""
        rows = list(rows)
        condition = f"run_id = {quote_string(run_id)}"
        if within is not None:
            column, values = within
            condition += f" AND {column} IN ({', '.join(quote_string(v) for v in values)})"
        if not rows:
            self.lake.delete(self.name, condition)
            return
        self.lake.overwrite_where(self.frame(rows), self.name, condition)


# ---- figures of micro-batches ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchFigures:
    """What a `foreachBatch` function did, told to the job that started the stream through a Delta table.

    The function cannot hand figures back in memory: on Spark Connect (Databricks serverless) it is pickled into the
    server and runs there, so whatever it changes is the server's copy. It records one `ops_stream_batches` row per
    batch instead, and the job sums its run's rows once the stream has ended. A batch run again in the same job run
    (a retried task replaying its last batch) counts once: its latest row wins.
    """

    run_id: str
    stream: str

    @staticmethod
    def ensure(lake: Lakehouse) -> None:
        """Create the table if needed (before the stream starts: its batches only append)."""
        OpsTable.open(lake, lake.settings.raw["tables"]["ops"]["stream_batches"], STREAM_BATCHES)

    def record(self, lake: Lakehouse, batch_id: int, figures: Mapping[str, int], detail: str | None = None) -> None:
        row = (self.run_id, self.stream, int(batch_id), {k: int(v) for k, v in figures.items()}, detail)
        table = OpsTable(lake, lake.settings.raw["tables"]["ops"]["stream_batches"], STREAM_BATCHES)
        table.append([(*row, datetime.now(timezone.utc))])

    def read(self, lake: Lakehouse) -> list[tuple[int, dict[str, int], str | None]]:
        """(batch id, figures, detail) of every batch this run's stream recorded, in batch order."""
        name = lake.settings.raw["tables"]["ops"]["stream_batches"]
        if not lake.exists(name):
            return []
        rows = (
            lake.read(name)
            .where(f"run_id = {quote_string(self.run_id)} AND stream = {quote_string(self.stream)}")
            .select("batch_id", "figures", "detail", "recorded_at")
            .collect()
        )
        latest: dict[int, Any] = {}
        for r in sorted(rows, key=lambda r: r["recorded_at"]):
            latest[r["batch_id"]] = r
        return [(b, dict(r["figures"] or {}), r["detail"]) for b, r in sorted(latest.items())]

    def totals(self, lake: Lakehouse) -> dict[str, int]:
        """The run's figures summed over its batches."""
        total: dict[str, int] = {}
        for _, figures, _ in self.read(lake):
            for k, v in figures.items():
                total[k] = total.get(k, 0) + v
        return total
