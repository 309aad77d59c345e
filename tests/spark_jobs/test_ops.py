"""The operations tables' one writer: rows as SQL literals (maps and arrays too), idempotent per run."""

from __future__ import annotations

from pyspark.sql.types import ArrayType, DoubleType, LongType, MapType, StringType, StructField, StructType

from medallion import ops
from medallion.lakehouse import Lakehouse
from medallion.ops import OpsTable

SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("key", StringType(), False),
        StructField("counts", MapType(StringType(), LongType()), True),
        StructField("edges", ArrayType(DoubleType()), True),
    ]
)


def _rows(table: OpsTable) -> list[tuple]:
    return sorted((r.run_id, r.key, r.counts, r.edges) for r in table.lake.read(table.name).collect())


def test_rows_by_name_or_position_keep_maps_and_arrays(spark, settings):
    table = OpsTable.open(Lakehouse(spark, settings), "ops_test_frame", SCHEMA)
    table.append(
        [
            {"run_id": "r1", "key": "a", "counts": {"x": 2}, "edges": [1.0, float("inf")]},
            ("r1", "b", {}, []),
            ("r1", "c", None, None),
        ]
    )
    table.append([])  # nothing to write: no commit
    assert _rows(table) == [("r1", "a", {"x": 2}, [1.0, float("inf")]), ("r1", "b", {}, []), ("r1", "c", None, None)]
    props = table.lake.detail(table.name)["properties"]
    assert props["quality"] == "ops" and props["delta.enableChangeDataFeed"] == "true"
    assert table.lake.version(table.name) == 1


def test_a_retried_run_replaces_its_own_rows_and_leaves_other_runs(spark, settings):
    table = OpsTable.open(Lakehouse(spark, settings), "ops_test_runs", SCHEMA)
    table.replace_run("r1", [("r1", "a", None, None), ("r1", "b", None, None)])
    table.replace_run("it's", [("it's", "a", None, None)])  # a quote in the run id is no SQL injection
    table.replace_run("r1", [("r1", "c", None, None)])
    assert [(r, k) for r, k, _, _ in _rows(table)] == [("it's", "a"), ("r1", "c")]


def test_a_run_replaces_only_its_rows_within_the_values_it_names(spark, settings):
    table = OpsTable.open(Lakehouse(spark, settings), "ops_test_within", SCHEMA)
    table.replace_run("r1", [("r1", "a", {"n": 1}, None), ("r1", "b", None, None)])
    table.replace_run("r0", [("r0", "a", None, None)])
    table.replace_run("r1", [("r1", "a", {"n": 2}, None)], within=("key", ["a"]))  # b, written by another step, stays
    assert _rows(table) == [("r0", "a", None, None), ("r1", "a", {"n": 2}, None), ("r1", "b", None, None)]
    table.replace_run("r1", [], within=("key", ["b"]))  # no rows: the named ones go, in one delete
    assert _rows(table) == [("r0", "a", None, None), ("r1", "a", {"n": 2}, None)]


def test_every_per_run_ops_table_is_keyed_by_its_run_id():
    schemas = [ops.BRONZE_FILES, ops.SILVER_RUNS, ops.SODA_CHECKS, ops.TABLE_COUNTS, *ops.MONITORING.values()]
    assert all(s.fieldNames()[0] == "run_id" and not s.fields[0].nullable for s in schemas)
