"""The operations tables: what the jobs record about their own runs (files seen, run figures, check outcomes,
monitoring measures). Beside the domain tables, never part of them, and aggregates only: no patient value.

One home for their schemas and one way to write them, so every ops table behaves alike and a new figure is added in
one place. `OpsTable.open` creates the table on first use through `Lakehouse.ensure` (change data feed on,
`quality=ops`, columns a newer release adds are added). Rows — dicts by column name or tuples in column order — are
built as literals in the JVM (`Lakehouse.frame`): `createDataFrame` on a list would start Python worker processes
in every job run. Every write is idempotent: a retried run replaces its own rows (`upsert`, `replace_run`), or
Delta's idempotent-write options skip a batch already committed (`append` with `txn`).

Table names: include/pipeline.yaml -> `tables.ops` (what the layer jobs record) and `monitoring.tables` (what the
monitoring job measures).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, BooleanType, DoubleType, LongType, MapType, StringType, StructField,
                               StructType, TimestampType)

from .governance import quote_string
from .lakehouse import Lakehouse

S, L, D, B, T = StringType(), LongType(), DoubleType(), BooleanType(), TimestampType()

# ---- what the layer jobs record (tables.ops) ---------------------------------------------------------------------

BRONZE_FILES = StructType([  # one row per landing file bronze has seen
    StructField("run_id", S, False),
    StructField("batch_id", L, False),
    StructField("table_name", S, False),
    StructField("file_path", S, False),
    StructField("file_modified_at", T, True),
    StructField("status", S, False),  # ingested | empty | header_only | unreadable | partial
    StructField("rows", L, False),
    StructField("rescued_rows", L, False),
    StructField("reason", S, True),
    StructField("recorded_at", T, False),
])

SILVER_RUN_COUNTS = ("rows_in", "valid", "quarantined", "exact_duplicates", "held", "released",
                     "expired_to_quarantine", "rescued_resolved")
SILVER_RUNS = StructType([  # one row per silver run and entity
    StructField("run_id", S, False),
    StructField("entity", S, False),
    StructField("processed_at", T, False),
    *[StructField(name, L, False) for name in SILVER_RUN_COUNTS],
    StructField("quarantined_by_rule", MapType(S, L), False),
    StructField("quality_score", D, True),
    StructField("target_score", D, False),
])

SODA_CHECKS = StructType([  # one row per Soda check per silver run
    StructField("run_id", S, False),
    StructField("checked_at", T, False),
    StructField("table_name", S, False),
    StructField("check_name", S, False),
    StructField("column_name", S, True),
    StructField("outcome", S, False),
    StructField("level", S, False),
    StructField("measured_value", D, True),
    StructField("measured_text", S, True),
    StructField("definition", S, True),
    StructField("check_identity", S, True),
])

TABLE_COUNTS = StructType([  # row count of every table per monitoring run
    StructField("run_id", S, False),
    StructField("measured_at", T, False),
    StructField("interval_start", T, True),
    StructField("interval_end", T, True),
    StructField("layer", S, False),
    StructField("table_name", S, False),
    StructField("row_count", L, True),
])


# ---- what the monitoring job measures (monitoring.tables) ---------------------------------------------------------

def _measure(*fields: tuple) -> StructType:
    head = [StructField("run_id", S, False), StructField("measured_at", T, False)]
    return StructType(head + [StructField(name, kind, True) for name, kind in fields])


MONITORING = {
    "quality": _measure(("entity", S), ("valid", L), ("quarantined", L), ("score", D), ("total_valid", L),
                        ("total_quarantined", L), ("total_score", D), ("target_score", D), ("breach", B),
                        ("source", S)),
    "quarantine_rules": _measure(("entity", S), ("rule", S), ("window_rows", L), ("total_rows", L)),
    "freshness": _measure(("layer", S), ("entity", S), ("table_name", S), ("exists", B), ("newest_at", T),
                          ("age_minutes", D), ("sla_minutes", D), ("basis", S), ("stale", B)),
    "volumes": _measure(("entity", S), ("table_name", S), ("batch", S), ("rows", L), ("band_low", D),
                        ("band_high", D), ("history_batches", L), ("anomaly", B), ("latest", B)),
    "drift": _measure(("column_name", S), ("entity", S), ("table_name", S), ("psi", D), ("rows_current", L),
                      ("rows_baseline", L), ("status", S), ("breach", B)),
    "reconciliation": _measure(("entity", S), ("landed", L), ("processed", L), ("valid", L), ("quarantined", L),
                               ("duplicates", L), ("held", L), ("backlog", L), ("difference", L), ("balanced", B),
                               ("source", S), ("breach", B)),
    "audit": _measure(("layer", S), ("table_name", S), ("from_version", L), ("to_version", L), ("commits", L),
                      ("operations", MapType(S, L)), ("writer_run_id", S), ("inserts", L), ("updates", L),
                      ("deletes", L)),
    "breaches": _measure(("kind", S), ("subject", S), ("detail", S), ("key", S), ("new", B)),
}
DRIFT_BASELINE = StructType([  # the baseline's bins, captured once (delete its rows to re-baseline)
    StructField("column_name", S, False), StructField("entity", S, True), StructField("edges", ArrayType(D), True),
    StructField("proportions", ArrayType(D), True), StructField("rows", L, True),
    StructField("captured_run_id", S, True), StructField("captured_at", T, True),
])


# ---- the one writer -----------------------------------------------------------------------------------------------

Row = Mapping[str, Any] | Sequence[Any]


@dataclass(frozen=True)
class OpsTable:
    """One operations table of one environment, written through `Lakehouse`."""

    lake: Lakehouse
    name: str
    schema: StructType

    @classmethod
    def open(cls, lake: Lakehouse, name: str, schema: StructType,
             properties: dict[str, str] | None = None) -> "OpsTable":
        """The table, created first if it does not exist (`properties` only apply then)."""
        lake.ensure(name, schema, "ops", properties=properties)
        return cls(lake, name, schema)

    def frame(self, rows: Iterable[Row]) -> DataFrame:
        """Rows (dicts by column name, or tuples in column order) as a DataFrame of the table's schema."""
        records = [tuple(row.get(f.name) for f in self.schema.fields) if isinstance(row, Mapping) else tuple(row)
                   for row in rows]
        return self.lake.frame(records, self.schema)

    def append(self, rows: Iterable[Row], txn: tuple[str, int] | None = None) -> None:
        """Append rows (with `txn`, exactly once: see `Lakehouse.append`); nothing for no rows."""
        rows = list(rows)
        if rows:
            self.lake.append(self.frame(rows), self.name, txn=txn)

    def upsert(self, rows: Iterable[Row], keys: Sequence[str], delete_unmatched: Column | None = None) -> None:
        """One MERGE on `keys`: matching rows are replaced, new ones inserted, and — with `delete_unmatched`, a
        condition on the stored row `t` — stored rows it selects that the new rows do not hold are deleted."""
        on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        merge = (self.lake.delta(self.name).alias("t").merge(self.frame(rows).alias("s"), on)
                 .whenMatchedUpdateAll().whenNotMatchedInsertAll())
        if delete_unmatched is not None:
            merge = merge.whenNotMatchedBySourceDelete(condition=delete_unmatched)
        merge.execute()

    def replace_run(self, run_id: str, rows: Iterable[Row]) -> None:
        """Store one run's rows: what an earlier attempt of the same run wrote is replaced in one atomic commit."""
        rows = list(rows)
        if not rows:
            self.lake.delta(self.name).delete(F.col("run_id") == run_id)
            return
        self.lake.overwrite_where(self.frame(rows), self.name, f"run_id = {quote_string(run_id)}")
