"""Gold: the star schema. dim_patients as SCD Type 2 and point-in-time fact_claims / fact_medical_events.

Incremental: each run reads only the silver changes since the last run (change data feed streams with their
own checkpoints). For every patient touched, its whole version history is re-cut from silver, so versions that
arrive out of order land in their place; the surrogate key is a hash of (patient_id, effective_from), so a
re-run produces the same keys and MERGE leaves identical tables.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from . import views
from .cli import JobContext, entry
from .session import cached, release, start_stream
from .silver import SILVER_COLUMNS

# the attributes whose change makes a new dim version: every silver patient column but the key and the record time
TRACKED = [c for c in SILVER_COLUMNS["patients"] if c not in ("patient_id", "record_ts")]
CHANGE_TYPES = ("insert", "update_postimage")


def patient_history(silver_patients: DataFrame) -> DataFrame:
    """SCD2 rows for the given silver versions: consecutive identical versions collapse into one interval."""
    w = Window.partitionBy("patient_id").orderBy("record_ts")
    hashed = silver_patients.withColumn("row_hash", F.sha2(F.to_json(F.struct(*TRACKED)), 256))
    changed = hashed.withColumn("_prev_hash", F.lag("row_hash").over(w)).filter(
        F.col("_prev_hash").isNull() | (F.col("_prev_hash") != F.col("row_hash"))
    )
    return (
        changed.withColumn("effective_from", F.col("record_ts"))
        .withColumn("effective_to", F.lead("record_ts").over(w))
        .withColumn("is_current", F.col("effective_to").isNull())
        .withColumn("patient_key", F.xxhash64("patient_id", "effective_from"))
        .select("patient_key", "patient_id", *TRACKED, "effective_from", "effective_to", "is_current", "row_hash")
    )


def merge_dim(ctx: JobContext, patient_ids: DataFrame) -> None:
    lake = ctx.lakehouse
    silver = lake.read(ctx.settings.table_name("silver", "patients"))
    dim_name = ctx.settings.table_name("gold", "patients")
    new_rows = patient_history(silver.join(patient_ids, "patient_id", "left_semi"))
    known = lake.read(dim_name).join(patient_ids, "patient_id", "left_semi")
    stale = known.join(new_rows.select("patient_key"), "patient_key", "left_anti")
    # versions already in the dim exactly as re-cut are left out of the MERGE: only the files holding a row that
    # changes are rewritten, not every file holding a version of a touched patient
    same = (
        (F.col("n.patient_key") == F.col("k.patient_key"))
        & (F.col("n.row_hash") == F.col("k.row_hash"))
        & F.col("n.effective_to").eqNullSafe(F.col("k.effective_to"))
    )
    new_rows = new_rows.alias("n").join(known.alias("k"), same, "left_anti")
    source = (
        new_rows.withColumn("_op", F.lit("U"))
        .unionByName(stale.withColumn("_op", F.lit("D")).select(*new_rows.columns, "_op"))
        .withColumn("_updated_at", F.current_timestamp())
    )
    lake.merge(
        dim_name,
        source,
        "t.patient_key = s.patient_key",
        "WHEN MATCHED AND s._op = 'D' THEN DELETE "
        "WHEN MATCHED AND s._op = 'U' AND (NOT (t.row_hash <=> s.row_hash) OR NOT (t.effective_to <=> s.effective_to)) "
        "THEN UPDATE SET * "
        "WHEN NOT MATCHED AND s._op = 'U' THEN INSERT *",
    )


def point_in_time_key(facts: DataFrame, dim: DataFrame, date_col: str) -> DataFrame:
    """Attach the surrogate key of the patient version valid at the end of the fact's date.

    A date before the patient's first known version gets that first version (the earliest knowledge we have).
    """
    day_end = F.to_timestamp(F.date_add(F.col(date_col), 1))
    versions = dim.select(
        "patient_id", "patient_key", "effective_from", F.col("coverage_start_date").alias("_coverage_start")
    )
    joined = facts.select("_fact_id", "patient_id", date_col).join(versions, "patient_id")
    picked = joined.groupBy("_fact_id").agg(
        F.max(
            F.when(F.col("effective_from") < day_end, F.struct("effective_from", "patient_key", "_coverage_start"))
        ).alias("_valid"),
        F.min(F.struct("effective_from", "patient_key", "_coverage_start")).alias("_first"),
    )
    chosen = picked.select("_fact_id", F.coalesce("_valid", "_first").alias("_v"))
    return (
        facts.join(chosen, "_fact_id", "left")
        .withColumn("patient_key", F.col("_v.patient_key"))
        .withColumn("days_since_coverage_start", F.datediff(F.col(date_col), F.col("_v._coverage_start")))
        .drop("_v")
    )


def _date_key(col: str):
    return F.date_format(F.col(col), "yyyyMMdd").cast("int")


def claim_facts(claims: DataFrame, dim: DataFrame) -> DataFrame:
    base = claims.select(
        F.col("claim_id").alias("_fact_id"),
        "claim_id",
        "patient_id",
        "claim_date",
        "claim_amount",
        "diagnosis_code",
        "procedure_code",
        "claim_status",
    )
    return (
        point_in_time_key(base, dim, "claim_date")
        .withColumn("claim_date_key", _date_key("claim_date"))
        .withColumn("claim_month", F.date_format("claim_date", "yyyy-MM"))
        .withColumn("is_approved", F.col("claim_status").isin("APPROVED", "PAID"))
        .withColumn("is_denied", F.col("claim_status") == "DENIED")
        .withColumn("is_paid", F.col("claim_status") == "PAID")
        .withColumn("paid_amount", F.when(F.col("claim_status") == "PAID", F.col("claim_amount")).otherwise(0.0))
        .drop("_fact_id")
    )


def event_facts(events: DataFrame, dim: DataFrame) -> DataFrame:
    base = events.select(
        F.col("event_id").alias("_fact_id"), "event_id", "patient_id", "event_date", "event_type", "medical_provider"
    )
    return (
        point_in_time_key(base, dim, "event_date")
        .withColumn("event_date_key", _date_key("event_date"))
        .withColumn("event_month", F.date_format("event_date", "yyyy-MM"))
        .drop("_fact_id")
    )


FACTS = {"claims": ("claim_id", claim_facts), "medical_events": ("event_id", event_facts)}


def merge_facts(ctx: JobContext, entity: str, silver_rows: DataFrame, insert: bool = True) -> None:
    """Update the facts whose figures or patient key changed, then append the new ones.

    The update is a MERGE with only a conditional WHEN MATCHED clause, so Delta rewrites just the files holding a
    row that really changes; new facts are appended to new files. (One MERGE with an insert clause would rewrite
    every file holding any matched row -- with updates spread over all hours, the whole table, every run.)
    """
    lake = ctx.lakehouse
    key, build = FACTS[entity]
    table = ctx.settings.table_name("gold", entity)
    dim = lake.read(ctx.settings.table_name("gold", "patients"))
    facts = cached(build(silver_rows, dim).withColumn("_updated_at", F.current_timestamp()))
    try:
        compare = [c for c in facts.columns if c not in (key, "_updated_at")]
        changed = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in compare)
        lake.merge(table, facts, f"t.{key} = s.{key}", f"WHEN MATCHED AND ({changed}) THEN UPDATE SET *")
        if insert:
            lake.append(facts.join(lake.read(table).select(key), key, "left_anti"), table)
    finally:
        release(facts)


def ensure_tables(ctx: JobContext) -> None:
    lake = ctx.lakehouse
    spark = ctx.spark
    silver = {
        e: lake.read(ctx.settings.table_name("silver", e)).limit(0) for e in ("patients", "claims", "medical_events")
    }
    dim_schema = patient_history(silver["patients"]).withColumn("_updated_at", F.current_timestamp()).schema
    lake.ensure(ctx.settings.table_name("gold", "patients"), dim_schema, "gold")
    empty_dim = spark.createDataFrame([], dim_schema)
    for entity, (_, build) in FACTS.items():
        schema = build(silver[entity], empty_dim).withColumn("_updated_at", F.current_timestamp()).schema
        lake.ensure(ctx.settings.table_name("gold", entity), schema, "gold")


def _changes(batch: DataFrame) -> DataFrame:
    return batch.filter(F.col("_change_type").isin(*CHANGE_TYPES))


# each gold stream's checkpoint and the silver entity it reads (its change data feed)
STREAMS = {"gold_dim_patients": "patients", "gold_claims": "claims", "gold_medical_events": "medical_events"}
CHECKPOINTS = tuple(STREAMS)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--full-refresh",
        default="false",
        choices=["true", "false"],
        help="drop the gold tables and rebuild them from the whole of silver",
    )


def idle(ctx: JobContext) -> str | None:
    """Why this run has nothing to build, told without starting Spark where the target allows it: silver has no tables
    yet, or every gold stream has already read every silver version (read off the files locally). A full refresh of
    existing silver tables always runs."""
    lake, settings = ctx.lakehouse, ctx.settings
    missing = [
        settings.table_name("silver", e) for e in STREAMS.values() if not lake.exists(settings.table_name("silver", e))
    ]
    if missing:  # e.g. the hourly safety-net run while silver's first run is still creating its tables
        return f"silver tables do not exist yet ({', '.join(missing)}); nothing to build"
    if ctx.args.full_refresh == "true":
        return None
    gold_built = all(lake.exists(settings.table_name("gold", entity)) for entity in STREAMS.values())
    if gold_built and all(lake.stream_caught_up(settings.table_name("silver", e), cp) for cp, e in STREAMS.items()):
        return "no new rows in silver since the last run"
    return None


def run(ctx: JobContext) -> dict:
    lake = ctx.lakehouse
    settings = ctx.settings
    if ctx.args.full_refresh == "true":
        for entity in ("patients", "claims", "medical_events"):
            lake.drop(settings.table_name("gold", entity))
        for name in CHECKPOINTS:
            lake.reset_checkpoint(name)
    ensure_tables(ctx)
    dim_name = settings.table_name("gold", "patients")
    dim_version_before = lake.version(dim_name)

    # the batch functions work through their batch's session (`ctx.on`): on Spark Connect they run in the server
    def dim_batch(batch: DataFrame, _batch_id: int) -> None:
        merge_dim(ctx.on(batch.sparkSession), _changes(batch).select("patient_id").distinct())

    q = start_stream(
        lake.read_stream(settings.table_name("silver", "patients"), change_feed=True)
        .writeStream.foreachBatch(dim_batch)
        .option("checkpointLocation", lake.checkpoint("gold_dim_patients"))
        .trigger(availableNow=True)
    )
    q.awaitTermination()
    lake.stream_finished("gold_dim_patients")
    dim_version_after = lake.version(dim_name)

    for entity, (key, _) in FACTS.items():
        silver_name = settings.table_name("silver", entity)

        def fact_batch(batch: DataFrame, _batch_id: int, entity=entity, key=key) -> None:
            rows = _changes(batch).drop("_change_type", "_commit_version", "_commit_timestamp")
            w = Window.partitionBy(key).orderBy(F.col("_ingested_at").desc())
            latest = rows.withColumn("_r", F.row_number().over(w)).filter("_r = 1").drop("_r")
            merge_facts(ctx.on(batch.sparkSession), entity, latest)

        q = start_stream(
            lake.read_stream(silver_name, change_feed=True)
            .writeStream.foreachBatch(fact_batch)
            .option("checkpointLocation", lake.checkpoint(f"gold_{entity}"))
            .trigger(availableNow=True)
        )
        q.awaitTermination()
        lake.stream_finished(f"gold_{entity}")

    # patients whose history was re-cut this run: their facts may now point at another version
    if dim_version_after > dim_version_before:
        touched = lake.read_changes(dim_name, dim_version_before + 1, dim_version_after)
        # a re-cut interval (update / delete), or a version inserted *before* the current one (out of order: the
        # rows after it may keep their interval, yet facts dated earlier than them now belong to the new one)
        recut = F.col("_change_type").isin("update_postimage", "delete") | (
            (F.col("_change_type") == "insert") & ~F.col("is_current")
        )
        touched_ids = touched.filter(recut).select("patient_id").distinct()
        for entity in FACTS:
            silver_rows = lake.read(settings.table_name("silver", entity)).join(touched_ids, "patient_id", "left_semi")
            merge_facts(ctx, entity, silver_rows, insert=False)  # their facts are all in gold already

    metric_views = views.register(lake)  # pre-aggregated metrics over the star schema (persistent on Databricks)
    counts = {t: lake.count(settings.table_name("gold", t)) for t in ("patients", "claims", "medical_events")}
    return {
        "tables": {lake.display_name(settings.table_name("gold", t)): n for t, n in counts.items()},
        "views": metric_views,
        "dim_versions": [dim_version_before, dim_version_after],
        "full_refresh": ctx.args.full_refresh == "true",
    }


main = entry("gold", run, add_arguments, idle)

if __name__ == "__main__":
    main()
