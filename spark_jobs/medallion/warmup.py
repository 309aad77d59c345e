"""`python -m medallion.warmup` (run by `make setup`): resolve and cache the Delta jars, check that Delta works, and
write the class-data-sharing archive every later local job maps (see `session`).

The warm-up runs each kind of operation the jobs run — Delta create/append/overwrite with change data feed, MERGE,
a change-feed read, an `availableNow` stream with `foreachBatch`, a CSV read, Arrow conversion — on a few made-up
rows in a temporary folder, so the archive holds the classes a real job loads. The JVM writes the archive when it
exits; it is written under a temporary name and moved into place only once complete, so a job never maps half a file.
"""

from __future__ import annotations

import os
import sys
import tempfile

from pyspark import SparkContext

from .config import load_settings
from .session import class_archive, get_spark


def exercise(spark, folder: str) -> None:
    """A few rows through every kind of operation the jobs use."""
    table, other, source = (os.path.join(folder, name) for name in ("t", "u", "landing"))
    os.makedirs(source)
    with open(os.path.join(source, "rows.csv"), "w", encoding="utf-8") as fh:
        fh.write('id,name,ts\n1,"a ""b""",2026-01-01T00:00:00Z\n2,c,not a time\n')
    csv = spark.read.option("header", True).csv(source)
    csv.selectExpr("cast(id as bigint) id", "name", "try_to_timestamp(ts) ts").write.format("delta").save(table)
    spark.range(3).selectExpr("id", "'x' name", "current_timestamp() ts").write.format("delta").mode("append").save(
        table
    )
    spark.sql(
        f"MERGE INTO delta.`{table}` t USING (SELECT 1L id, 'm' name, current_timestamp() ts) s ON t.id = s.id "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )
    spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).load(table).groupBy(
        "_change_type"
    ).count().collect()
    spark.sql(f"DESCRIBE HISTORY delta.`{table}`").collect()

    def batch(df, batch_id):
        df.groupBy("name").count().write.format("delta").mode("overwrite").save(other)

    query = (
        spark.readStream.format("delta")
        .load(table)
        .writeStream.foreachBatch(batch)
        .option("checkpointLocation", os.path.join(folder, "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    spark.read.format("delta").load(other).toPandas()


def main() -> int:
    settings = load_settings()
    archive = class_archive(settings)
    partial = None
    if archive is not None and not archive.is_file():
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_name(f"{archive.name}.{os.getpid()}.partial")
    spark = get_spark(settings, app_name="medallion-warmup", archive_to=partial)
    version = spark.version
    with tempfile.TemporaryDirectory(prefix="medallion-warmup-") as folder:
        exercise(spark, folder)
    jvm = SparkContext._gateway.proc  # the driver JVM this process started
    spark.stop()
    jvm.stdin.close()  # the gateway exits when its parent's pipe closes, writing the archive on the way out
    jvm.wait(timeout=300)
    print(f"Spark {version} with Delta ready; jars cached under {settings.local_spark.get('ivy_dir', '.cache/ivy')}")
    if partial is not None:
        if partial.is_file() and partial.stat().st_size:
            os.replace(partial, archive)
            print(f"class archive written: {archive} ({archive.stat().st_size >> 20} MiB)")
        else:
            print("class archive not written (this Java runtime cannot archive); jobs start without it")
    elif archive is not None:
        print(f"class archive in place: {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
