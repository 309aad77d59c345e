"""Lakehouse reads a run's to-do list off the files Delta and Structured Streaming write (no Spark): checked here
against checkpoints and transaction logs written by the real engine, not against files made up by the test; and the
few-row frames it builds from SQL literals, checked against Spark's own `createDataFrame`."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DateType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from medallion.lakehouse import Lakehouse


def _stream_once(spark, lake: Lakehouse, source: str, checkpoint: str) -> int:
    """One `availableNow` run of a change-feed stream, as gold runs them; returns the rows it read."""
    seen = []
    query = (
        lake.read_stream(source, change_feed=True)
        .writeStream.foreachBatch(lambda df, _id: seen.append(df.count()))
        .option("checkpointLocation", lake.checkpoint(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    lake.stream_finished(checkpoint)
    return sum(seen)


def test_a_stream_is_caught_up_only_once_it_has_read_every_version_of_its_source(spark, settings):
    lake = Lakehouse(spark, settings)
    lake.append(spark.range(3), "src")
    assert not lake.stream_caught_up("src", "cp")  # never ran
    assert _stream_once(spark, lake, "src", "cp") == 3
    assert lake.stream_caught_up("src", "cp")
    assert _stream_once(spark, lake, "src", "cp") == 0  # ... and a run then reads nothing, as promised

    lake.append(spark.range(2), "src")  # a new version
    assert not lake.stream_caught_up("src", "cp")
    assert _stream_once(spark, lake, "src", "cp") == 2
    assert lake.stream_caught_up("src", "cp")

    spark.sql(f"DELETE FROM {lake.ref('src')} WHERE id = 0")  # a delete is a version too (change feed)
    assert not lake.stream_caught_up("src", "cp")
    assert _stream_once(spark, lake, "src", "cp") == 2
    assert lake.stream_caught_up("src", "cp")


def test_a_source_table_created_again_is_never_taken_as_caught_up(spark, settings):
    lake = Lakehouse(spark, settings)
    lake.append(spark.range(3), "src")
    lake.append(spark.range(1), "src")
    _stream_once(spark, lake, "src", "cp")
    assert lake.stream_caught_up("src", "cp")
    lake.drop("src")
    lake.append(spark.range(1), "src")  # version 0 of a new table: behind the checkpoint's offset, but another table
    assert not lake.stream_caught_up("src", "cp")


def test_a_run_that_did_not_finish_is_not_caught_up(spark, settings):
    """A run that died between batches (the Airflow retry must not skip what it left) or between writing a batch's
    offset and committing it."""
    import os

    lake = Lakehouse(spark, settings)
    lake.append(spark.range(3), "src")
    lake.append(spark.range(3), "src")
    query = (
        lake.read_stream("src", change_feed=True)
        .writeStream.foreachBatch(lambda df, _id: None)
        .option("checkpointLocation", lake.checkpoint("cp"))
        .option("maxFilesPerTrigger", 1)  # one file per batch: the first batch ends mid-way through the data
        .trigger(once=True)
        .start()
    )
    query.awaitTermination()  # died after its first batch: no finish mark
    assert not lake.stream_caught_up("src", "cp")
    _stream_once(spark, lake, "src", "cp")
    assert lake.stream_caught_up("src", "cp")
    commits = os.path.join(lake.checkpoint("cp"), "commits")
    last = max(os.listdir(commits), key=lambda n: int(n) if n.isdigit() else -1)
    os.remove(os.path.join(commits, last))  # as if it died between writing its offset and committing the batch
    assert not lake.stream_caught_up("src", "cp")


def test_emptiness_and_existence_come_from_the_transaction_log(spark, settings):
    from pyspark.sql.types import LongType, StructField, StructType

    lake = Lakehouse(spark, settings)
    assert not lake.exists("t") and not lake.known_empty("t")
    lake.ensure("t", StructType([StructField("id", LongType())]), "silver")
    assert lake.exists("t") and lake.known_empty("t")
    lake.append(spark.range(2), "t")
    assert not lake.known_empty("t")
    spark.sql(f"DELETE FROM {lake.ref('t')}")
    assert lake.known_empty("t") and lake.count("t") == 0


def test_spark_starts_only_when_a_table_is_read_or_written(settings):
    def no_spark():
        pytest.fail("Spark was started")

    lake = Lakehouse(no_spark, settings)
    assert not lake.exists("t") and not lake.stream_caught_up("t", "cp") and not lake.known_empty("t")
    assert lake.path("t").endswith("/t") and lake.checkpoint("cp").endswith("/cp")


ODD = StructType(
    [
        StructField("text", StringType()),
        StructField("n", LongType()),
        StructField("x", DoubleType()),
        StructField("ok", BooleanType()),
        StructField("day", DateType()),
        StructField("at", TimestampType()),
        StructField("tags", MapType(StringType(), ArrayType(DoubleType()))),
    ]
)


@pytest.mark.parametrize("time_zone", ["UTC", "America/Los_Angeles"])
def test_rows_become_the_values_spark_itself_would_store(spark, settings, time_zone):
    """The literals are SQL text: Spark's own `createDataFrame` of the same rows is the reference, whatever the
    session time zone (quotes, backslashes, newlines, Unicode, extreme numbers, aware and naive datetimes)."""
    records = [
        (
            'it\'s \\ a "test"\n\t☃ 𝄞',
            -(2**63),
            float("nan"),
            True,
            date(1, 1, 1),
            datetime(2026, 3, 8, 10, 0, 0, 5),
            {"a'b": [float("-inf"), -0.0, 5e-324]},
        ),
        (
            "",
            2**63 - 1,
            1.7976931348623157e308,
            False,
            date(9999, 12, 31),
            datetime(2026, 11, 1, 1, 30, tzinfo=timezone(timedelta(hours=-7))),
            {},
        ),
        (None, None, None, None, None, None, None),
        (
            "x",
            0,
            0.1,
            None,
            date(2024, 2, 29),
            datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
            {"k": None},
        ),
    ]
    previous = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", time_zone)
    try:
        ours = Lakehouse(spark, settings).frame(records, ODD)
        assert ours.schema.simpleString() == ODD.simpleString()
        got, want = ours.collect(), spark.createDataFrame(records, ODD).collect()
    finally:
        spark.conf.set("spark.sql.session.timeZone", previous)
    assert [repr(r) for r in got] == [repr(r) for r in want]  # repr: NaN == NaN, -0.0 kept apart from 0.0
    empty = Lakehouse(spark, settings).frame([], ODD)
    assert empty.count() == 0 and empty.schema.simpleString() == ODD.simpleString()
