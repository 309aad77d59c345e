"""Silver: standardize, validate against the rule catalog, quarantine failures, tokenize identifiers, upsert.

Reads each bronze table incrementally (a Delta stream with its own checkpoint, `availableNow`), so every run
processes only the bronze rows it has not processed yet; writes are MERGEs keyed by the business key, so a
re-run converges to the same tables. Every bronze row ends in a silver table, in quarantine with the names of
the rules it failed, held (its patient has not arrived), or counted as a duplicate.

The rules are compiled from the column contracts (`rules.py`) with Delta Live Tables' severities: a `warn` rule
flags a kept row (`_warnings`), a `quarantine` rule sends it to quarantine, a `fail` rule stops the run before the
micro-batch writes anything. Every silver, quarantine and held row records the rule-catalog version that judged it,
so a rule change can be applied to what is stored: `--revalidate-quarantine` re-judges quarantined rows from their
bronze rows, `--full-refresh` re-judges the whole of bronze.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DateType, StringType, TimestampType

from . import ops
from .cli import JobContext, JobError, entities_argument, entry, selected_entities
from .codesets import dotted_icd10, ensure_reference, with_membership
from .config import ConfigError
from .governance import quote_string
from .ops import OpsTable
from .rules import catalog, catalog_version, code_set_columns, failing, membership_flag
from .schemas import KEYS, RESCUED, landing_columns, source_schema, try_cast
from .secrets import hash_salt
from .session import cached, release, start_stream
from .soda_checks import raise_for_failures, run_scans

ARRIVAL_ORDER = ["_ingested_at", "_source_file"]  # later arrival wins


def _trim_upper(c: str):
    return F.upper(F.trim(F.col(c)))


def token(col, salt: str):
    """Salted SHA-256 of a direct identifier (names are case- and space-normalized first)."""
    return F.when(col.isNull(), None).otherwise(F.sha2(F.concat(F.lit(salt + "|"), F.upper(F.trim(col))), 256))


def standardize(entity: str, df: DataFrame, salt: str, quality: dict) -> DataFrame:
    """Trim, case-fold enumerations, type dates and timestamps. What cannot be typed becomes NULL and fails a rule."""
    if entity == "patients":
        cap = quality["hipaa_age"]
        return (
            df.withColumn("patient_id", F.trim("patient_id"))
            .withColumn(
                "age", F.when(F.col("age") >= cap["cap_from"], F.lit(cap["reported_as"])).otherwise(F.col("age"))
            )  # HIPAA Safe Harbor: 89 and over are reported as 90
            .withColumn("first_name_token", token(F.col("first_name"), salt))
            .withColumn("last_name_token", token(F.col("last_name"), salt))
            .withColumn("sex", _trim_upper("sex"))
            .withColumn("region", _trim_upper("region"))
            .withColumn("insurance_plan", _trim_upper("insurance_plan"))
            .withColumn("coverage_start_date", try_cast("trim(coverage_start_date)", DateType()))
            .withColumn("record_ts", try_cast("trim(`timestamp`)", TimestampType()))
            .drop("timestamp")  # the raw names stay until the rules have judged them (potential_test_patient)
        )
    if entity == "claims":
        return (
            df.withColumn("claim_id", F.trim("claim_id"))
            .withColumn("patient_id", F.trim("patient_id"))
            .withColumn("claim_date", try_cast("trim(claim_date)", DateType()))
            .withColumn("diagnosis_code", dotted_icd10(F.col("diagnosis_code"), quality))  # one form: dotted
            .withColumn("procedure_code", _trim_upper("procedure_code"))
            .withColumn("claim_status", _trim_upper("claim_status"))
        )
    return (
        df.withColumn("event_id", F.trim("event_id"))
        .withColumn("patient_id", F.trim("patient_id"))
        .withColumn("event_date", try_cast("trim(event_date)", DateType()))
        .withColumn("event_type", _trim_upper("event_type"))
        .withColumn("medical_provider", F.trim("medical_provider"))
    )


TRUE_WORDS, FALSE_WORDS = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")


def lenient(sql: str, data_type):
    """A landed text value (`sql`, an expression over columns) typed the forgiving way silver standardizes: NULL
    when it still cannot be typed, also with ANSI mode on."""
    raw = F.expr(sql)
    if isinstance(data_type, BooleanType):
        low = F.lower(F.trim(raw))
        return F.when(low.isin(*TRUE_WORDS), F.lit(True)).when(low.isin(*FALSE_WORDS), F.lit(False))
    if isinstance(data_type, StringType):
        return raw
    return try_cast(f"trim({sql})", data_type)


# Auto Loader names the file a rescued value came from inside the rescued JSON; it is lineage (bronze keeps the file
# in _source_file), not a value
RESCUED_FILE_KEY = "_file_path"


def resolve_rescued(entity: str, df: DataFrame) -> DataFrame:
    """Resolve rescued data that standardization can type: a row the CSV reader could not type only because of
    a value such as `yes`, `1` or ` 40 ` gets its values back (booleans from true/false/yes/no/1/0, numbers with
    spaces) and loses its rescued mark. Rescued data comes in two shapes, resolved alike:
    - a whole line (the local line reader's PERMISSIVE mode): resolvable when it has exactly the entity's fields;
    - JSON of the values that did not fit, by column name (Auto Loader's rescued-data column, with the file in
      `_file_path`; the local by-name reader's, without it): resolvable when every name is a typed column.
    Lines with a wrong number of fields or quotes, extra columns, unreadable records or undecodable bytes stay
    rescued and fail `no_rescued_data` -- nothing is guessed."""
    fields = source_schema(entity).fields
    typed = [f for f in fields if not isinstance(f.dataType, StringType)]
    raw = F.col(RESCUED)
    is_line = (
        raw.isNotNull() & ~raw.startswith("{") & ~raw.contains('"') & (F.size(F.split(raw, ",", -1)) == len(fields))
    )
    is_json = raw.isNotNull() & raw.startswith("{")
    parts, found = "_rescued_parts", "_rescued_values"  # `get` / `try_element_at`: NULL where [] fails under ANSI
    line_value = {f.name: f"get({parts}, {i})" for i, f in enumerate(fields)}
    json_value = {f.name: f"try_element_at({found}, '{f.name}')" for f in typed}
    out = df.withColumn(parts, F.when(is_line, F.split(raw, ",", -1))).withColumn(
        found,
        F.when(
            is_json,
            F.expr(
                f"transform_keys(map_filter(from_json({RESCUED}, 'map<string,string>'), "
                f"(k, v) -> k <> '{RESCUED_FILE_KEY}'), (k, v) -> lower(trim(k)))"
            ),
        ),
    )

    def fits(sql: str, data_type) -> F.Column:  # blank, or a value standardization can type
        return (F.trim(F.expr(sql)) == "") | lenient(sql, data_type).isNotNull()

    line_ok, json_ok = (
        F.lit(True),
        F.size(F.expr(f"array_except(map_keys({found}), array({', '.join(repr(f.name) for f in typed)}))")) == 0,
    )
    for f in fields:
        line_ok = line_ok & fits(line_value[f.name], f.dataType)
    for f in typed:
        json_ok = json_ok & (F.expr(json_value[f.name]).isNull() | fits(json_value[f.name], f.dataType))
    out = out.withColumn(
        "_rescue_resolved", F.coalesce((is_line & line_ok) | (is_json & (F.size(found) > 0) & json_ok), F.lit(False))
    )
    for f in fields:
        from_line = F.when(F.trim(F.expr(line_value[f.name])) == "", F.lit(None)).otherwise(
            lenient(line_value[f.name], f.dataType)
        )
        value = F.when(is_line, from_line)
        if f.name in json_value:  # a JSON value replaces the column's NULL; a column not in the JSON keeps its value
            in_json = F.expr(json_value[f.name])
            typed_json = F.when(F.trim(in_json) == "", F.lit(None)).otherwise(lenient(json_value[f.name], f.dataType))
            value = value.when(is_json & in_json.isNotNull(), typed_json)
        value = value.otherwise(F.col(f.name))
        out = out.withColumn(f.name, F.when(F.col("_rescue_resolved"), value).otherwise(F.col(f.name)))
    resolved = out.withColumn(RESCUED, F.when(F.col("_rescue_resolved"), F.lit(None)).otherwise(F.col(RESCUED)))
    return resolved.drop(parts, found)


def confidence(quality: dict, entity: str):
    """Share of the entity's expected attributes that are present after standardization (0..1)."""
    attributes = quality["confidence_attributes"][entity]
    present = sum(F.when(F.col(c).isNotNull(), 1).otherwise(0) for c in attributes)
    return F.round(present / F.lit(len(attributes)), 4)


def version_order(quality: dict, entity: str) -> list:
    """How versions of one key rank, best first: newest version, then the configured conflict strategy."""
    order = [] if entity == "patients" else [F.col("_ingested_at").desc()]  # a claim's version is its arrival
    for criterion in quality["conflict_strategy"]:
        if criterion == "highest_confidence":
            order.append(F.col("_confidence").desc())
        elif criterion == "latest_arrival":
            order += [F.col(c).desc() for c in ARRIVAL_ORDER]
        else:
            raise ConfigError(f"unknown conflict strategy {criterion!r}; use highest_confidence, latest_arrival")
    return order


def replaces(quality: dict, entity: str) -> str:
    """MERGE condition: the incoming version `s` wins over the stored one `t` of the same key."""
    terms, ties = [], []
    if entity != "patients":
        terms.append("s._ingested_at > t._ingested_at")
        ties.append("s._ingested_at = t._ingested_at")
    for criterion in quality["conflict_strategy"]:
        tie = " AND ".join(ties) if ties else "TRUE"
        if criterion == "highest_confidence":
            terms.append(f"({tie} AND s._confidence > t._confidence)")
            ties.append("s._confidence = t._confidence")
        elif criterion == "latest_arrival":
            terms.append(
                f"({tie} AND (s._ingested_at > t._ingested_at OR "
                "(s._ingested_at = t._ingested_at AND s._source_file > t._source_file)))"
            )
            ties.append("s._ingested_at = t._ingested_at AND s._source_file = t._source_file")
    return " OR ".join(terms)


SILVER_COLUMNS = {
    "patients": [
        "patient_id",
        "first_name_token",
        "last_name_token",
        "age",
        "sex",
        "region",
        "bmi",
        "smoker",
        "children",
        "charges",
        "insurance_plan",
        "coverage_start_date",
        "record_ts",
    ],
    "claims": [
        "claim_id",
        "patient_id",
        "claim_amount",
        "claim_date",
        "diagnosis_code",
        "procedure_code",
        "claim_status",
    ],
    "medical_events": ["event_id", "patient_id", "event_date", "event_type", "medical_provider"],
}
# The key a silver row is upserted on: patients keep every version (one per record timestamp).
MERGE_KEYS = {"patients": ["patient_id", "record_ts"], "claims": ["claim_id"], "medical_events": ["event_id"]}
LINEAGE = ["_source_file", "_ingested_at", "_run_id"]
# silver only: the confidence, the warnings, the rule-catalog version the row was judged by
EXTRA = ["_confidence", "_warnings", "_rule_version"]
# a quarantined (or held) row: its identity (hashed into _row_hash), then when and by which catalog it was judged
Q_IDENTITY = {e: cols + ["_failed_rules", "_source_file", "_ingested_at"] for e, cols in SILVER_COLUMNS.items()}
Q_COLUMNS = {e: cols + ["_run_id", "_rule_version"] for e, cols in Q_IDENTITY.items()}


# The oldest date and timestamp Parquet stores alike under every rebase mode. An older one (a date before 1582-10-15,
# an INT96 timestamp before 1900) fails the whole write under Spark 3's default mode EXCEPTION
# (INCONSISTENT_BEHAVIOR_CROSS_VERSION.WRITE_ANCIENT_DATETIME), and a serverless job cannot choose the mode. Every
# contract floor is later (tests/spark_jobs/test_contracts.py), so only a quarantined row can carry such a value: it
# is written as null there, its rules say why, and its bronze row keeps the text as it landed.
WRITABLE_FROM = "1900-01-01"


def writable_times(df: DataFrame) -> DataFrame:
    """`df` with every date or timestamp before WRITABLE_FROM as null, whatever the runtime's rebase mode."""
    out = []
    for field in df.schema.fields:
        col = F.col(field.name)
        if isinstance(field.dataType, (DateType, TimestampType)):
            col = F.when(col >= F.lit(WRITABLE_FROM).cast(field.dataType), col).alias(field.name)
        out.append(col)
    return df.select(*out)


def new_stats() -> dict:
    """A silver run's figures for one entity, all zero."""
    return {
        "rows_in": 0,
        "exact_duplicates": 0,
        "superseded_in_batch": 0,
        "rescued_resolved": 0,
        "valid": 0,
        "quarantined": 0,
        "held": 0,
        "released": 0,
        "expired_to_quarantine": 0,
        "inserted": 0,
        "updated": 0,
        "quarantined_by_rule": {},
        "warned_by_rule": {},
    }


BY_RULE = ("quarantined_by_rule", "warned_by_rule")


def add_figures(stats: dict, figures: dict) -> None:
    """Add a batch's figures to a run's: counts, and per-rule counts (flat, as `<kind>:<rule>`, in a batch record)."""
    for key, value in figures.items():
        kind, _, rule = key.partition(":")
        if kind in BY_RULE and rule:
            stats[kind][rule] = stats[kind].get(rule, 0) + int(value)
        elif isinstance(value, dict):
            for r, n in value.items():
                stats[key][r] = stats[key].get(r, 0) + int(n)
        else:
            stats[key] = stats.get(key, 0) + int(value)


class SilverBatch:
    """Processes one micro-batch of one entity's bronze rows.

    As a `foreachBatch` function it works through its batch's session and records the batch's figures in
    `ops_stream_batches` (`BatchFigures`): on Spark Connect it runs in the server, a copy of the object the job made.
    The job's own figures (held rows released, re-validation) are counted in `stats` by the job itself."""

    def __init__(self, ctx: JobContext, entity: str, stats: dict):
        self.ctx, self.entity, self.stats = ctx, entity, stats
        self.figures = ops.BatchFigures(ctx.run_id, f"silver_{entity}")
        self.salt = hash_salt(ctx.settings)
        self.silver = ctx.settings.table_name("silver", entity)
        self.quarantine = ctx.settings.table_name("quarantine", entity)
        self.held = ctx.settings.table_name("held", entity) if entity != "patients" else None
        self.rules = catalog(ctx.settings.quality, entity, ctx.settings.env)
        self.version = catalog_version(ctx.settings.quality)
        # column -> reference table of its code set (loaded once per code-set version)
        self.references = {
            col: ensure_reference(self.lake, ctx.settings, name)
            for col, name in code_set_columns(ctx.settings.quality, entity).items()
        }

    def judged(self, df: DataFrame) -> DataFrame:
        """The rule catalog applied: `_failed_rules` (quarantine), `_warnings` (warn), `_fatal` (fail)."""
        by = {sev: [r for r in self.rules if r.severity == sev] for sev in ("quarantine", "warn", "fail")}
        return (
            df.withColumn("_failed_rules", failing(by["quarantine"]))
            .withColumn("_warnings", failing(by["warn"]))
            .withColumn("_fatal", failing(by["fail"]))
        )

    @property
    def lake(self):
        return self.ctx.lakehouse

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """One micro-batch of the stream: judged and written through the batch's session, its figures recorded (a
        fail-level failure too, with its one-line reason, which the job reports)."""
        judge = SilverBatch.__new__(SilverBatch)
        judge.__dict__.update(self.__dict__, ctx=self.ctx.on(batch.sparkSession))
        try:
            figures = judge.judge(batch)
        except JobError as exc:
            self.figures.record(judge.lake, batch_id, {"fatal": 1}, detail=str(exc))
            raise
        flat = {k: v for k, v in figures.items() if k not in BY_RULE}
        flat.update({f"{kind}:{rule}": n for kind in BY_RULE for rule, n in figures[kind].items()})
        self.figures.record(judge.lake, batch_id, flat)

    def fatal_reason(self) -> str | None:
        """The one-line reason a batch of this run stopped it at a fail-level rule, if one did."""
        return next((detail for _, f, detail in self.figures.read(self.ctx.lakehouse) if f.get("fatal")), None)

    def warnings(self, df: DataFrame) -> DataFrame:
        """`_warnings` of rows that were judged in an earlier run (held rows): the warn rules hold only contracts."""
        return df.withColumn("_warnings", failing([r for r in self.rules if r.severity == "warn"]))

    def judge(self, batch: DataFrame) -> dict:
        """Judge and write a batch of bronze rows; returns its figures (`new_stats` keys). JobError (nothing of the
        batch written) when a row fails a fail-level rule."""
        raw_cols = landing_columns(self.entity)
        batch = cached(batch)
        rows_in = batch.count()
        # exact duplicates (every landed value equal, in one file) are counted and dropped. The same values sent again
        # in a later file are a re-send, not a duplicate: they go on as a version (a status may go back to an
        # earlier value), so the outcome is the same whether the files reach silver in one run or in several
        distinct = batch.dropDuplicates(raw_cols + [RESCUED, "_source_file"])
        std = standardize(self.entity, resolve_rescued(self.entity, distinct), self.salt, self.ctx.settings.quality)
        std = std.withColumn("_confidence", confidence(self.ctx.settings.quality, self.entity))
        for col, ref in self.references.items():  # code-set membership: a broadcast join, read by known_<col>
            std = with_membership(std, col, self.lake.read(ref), membership_flag(col))
        std = self.judged(std).drop("first_name", "last_name")  # judged: from here on only their tokens
        if self.entity != "patients":
            patients = (
                self.lake.read(self.ctx.settings.table_name("silver", "patients")).select("patient_id").distinct()
            )
            known = patients.withColumn("_patient_known", F.lit(True))
            std = (
                std.join(known, "patient_id", "left")
                .withColumn(
                    "_failed_rules",
                    F.when(
                        F.col("_patient_known").isNull() & (F.size("_failed_rules") == 0),
                        F.array(F.lit("patient_exists")),
                    ).otherwise(F.col("_failed_rules")),
                )
                .drop("_patient_known")
            )
        std = cached(std.withColumn("_run_id", F.lit(self.ctx.run_id)).withColumn("_rule_version", F.lit(self.version)))
        only_patient_missing = F.col("_failed_rules") == F.array(F.lit("patient_exists"))
        counts = std.agg(
            F.count("*").alias("n"),
            F.sum((F.size("_failed_rules") == 0).cast("int")).alias("valid"),
            F.sum(only_patient_missing.cast("int")).alias("held"),
            F.sum(F.col("_rescue_resolved").cast("int")).alias("resolved"),
            F.sum((F.size("_fatal") > 0).cast("int")).alias("fatal"),
        ).first()
        n_valid = int(counts["valid"] or 0)
        n_held = int(counts["held"] or 0) if self.entity != "patients" else 0
        n_bad = int(counts["n"]) - n_valid - n_held
        if counts["fatal"]:  # before anything of the batch is written: the run stops, the checkpoint stays put
            names = sorted(r[0] for r in std.select(F.explode("_fatal")).distinct().collect())
            release(std)
            release(batch)
            raise JobError(
                f"silver {self.entity}: {counts['fatal']} row(s) failed fail-level rule(s) {', '.join(names)}; "
                "nothing of the batch was written"
            )
        # a MERGE costs seconds even with nothing to merge: each runs only for rows of its kind (counted above)
        valid = std.filter(F.size("_failed_rules") == 0)
        superseded, written = self.upsert(valid) if n_valid else (0, {})
        if n_held:  # only its patient missing: the row waits for it
            self.hold(std.filter(only_patient_missing))
        by_rule = {}
        if n_bad:
            by_rule = self.quarantine_rows(std.filter((F.size("_failed_rules") > 0) & ~only_patient_missing))
        warned = {
            r["rule"]: r["n"]
            for r in valid.select(F.explode("_warnings").alias("rule"))
            .groupBy("rule")
            .agg(F.count("*").alias("n"))
            .collect()
        }
        s = new_stats()
        s["rows_in"] += rows_in
        s["exact_duplicates"] += rows_in - int(counts["n"])
        s["superseded_in_batch"] += superseded
        s["valid"] += n_valid
        s["rescued_resolved"] += int(counts["resolved"] or 0)
        s["held"] += n_held
        s["quarantined"] += n_bad
        s["inserted"] += written.get("numTargetRowsInserted", 0)
        s["updated"] += written.get("numTargetRowsUpdated", 0)
        for rule, n in by_rule.items():
            s["quarantined_by_rule"][rule] = s["quarantined_by_rule"].get(rule, 0) + n
        for rule, n in warned.items():
            s["warned_by_rule"][rule] = s["warned_by_rule"].get(rule, 0) + n
        release(std)
        release(batch)
        return s

    def upsert(self, valid: DataFrame) -> tuple[int, dict]:
        """MERGE validated rows into silver; several versions of one key in a batch: the latest arrival wins."""
        keys = MERGE_KEYS[self.entity]
        quality = self.ctx.settings.quality
        w = Window.partitionBy(*keys).orderBy(*version_order(quality, self.entity))
        whole = w.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
        values = F.to_json(F.struct(*[c for c in SILVER_COLUMNS[self.entity] if c not in keys]))
        ranked = (
            valid.withColumn("_rank", F.row_number().over(w))
            .withColumn("_values", values)
            .withColumn("_differs", F.col("_values") != F.first("_values").over(w))
        )
        # Lineage: the winner's values, first sent by the earliest of the run of identical versions that ends in the
        # winner — what separate runs keep too, where an identical re-send changes nothing (a backfill that takes
        # several hours in one run must leave the same tables as running them one at a time)
        first_other = F.min(F.when(F.col("_differs"), F.col("_rank"))).over(whole)
        in_streak = F.col("_rank") < F.coalesce(first_other, F.lit(1 << 30))
        origin = F.last(F.when(in_streak, F.struct(*LINEAGE)), ignorenulls=True).over(whole)
        latest = (
            ranked.withColumn("_origin", origin)
            .filter("_rank = 1")
            .select(*SILVER_COLUMNS[self.entity], *[F.col(f"_origin.{c}").alias(c) for c in LINEAGE], *EXTRA)
            .withColumn("_processed_at", F.current_timestamp())
        )
        cond = " AND ".join(f"t.{k} <=> s.{k}" for k in keys)
        # a re-sent identical version changes nothing; a different one replaces the stored one only if it wins
        changed = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in SILVER_COLUMNS[self.entity] if c not in keys)
        self.lake.merge(
            self.silver,
            latest,
            cond,
            f"WHEN MATCHED AND ({changed}) AND ({replaces(quality, self.entity)}) THEN UPDATE SET * "
            "WHEN NOT MATCHED THEN INSERT *",
        )
        written = _last_merge_metrics(self.lake, self.silver)
        superseded = int(written.get("numSourceRows", 0))
        superseded = valid.count() - superseded if superseded else 0
        return superseded, written

    def _with_hash(self, df: DataFrame) -> DataFrame:
        return df.select(
            *Q_COLUMNS[self.entity], F.sha2(F.to_json(F.struct(*Q_IDENTITY[self.entity])), 256).alias("_row_hash")
        )

    def quarantine_rows(self, bad: DataFrame) -> dict[str, int]:
        """Append failures (idempotently, by row hash) with every rule they failed; return counts by rule."""
        rows = writable_times(self._with_hash(bad)).withColumn("_quarantined_at", F.current_timestamp())
        self.lake.merge(
            self.quarantine,
            rows,
            "t._row_hash = s._row_hash",
            # the same failure judged again by another catalog (re-validation): it now carries that catalog's version
            "WHEN MATCHED AND NOT (t._rule_version <=> s._rule_version) "
            "THEN UPDATE SET _rule_version = s._rule_version, _run_id = s._run_id "
            "WHEN NOT MATCHED THEN INSERT *",
        )
        return {
            r["rule"]: r["n"]
            for r in bad.select(F.explode("_failed_rules").alias("rule"))
            .groupBy("rule")
            .agg(F.count("*").alias("n"))
            .collect()
        }

    def hold(self, held: DataFrame) -> None:
        """Rows whose patient has not arrived yet wait in the held table; they are re-validated every run."""
        rows = self._with_hash(held).withColumn("_held_since", F.current_timestamp())
        self.lake.merge(self.held, rows, "t._row_hash = s._row_hash", "WHEN NOT MATCHED THEN INSERT *")

    def revalidate_quarantine(self) -> dict:
        """Judge the quarantined rows again by the current rule catalog, from their bronze rows (the raw values, names
        included, which quarantine does not keep): those that pass now go to silver (or wait in held), those that
        still fail stay with the current catalog's reasons and version. Rows already judged by this catalog are left."""
        key = KEYS[self.entity]
        stale = cached(
            self.lake.read(self.quarantine)
            .where(~F.col("_rule_version").eqNullSafe(F.lit(self.version)))
            .select(key, "_source_file", "_ingested_at", "_row_hash")
        )
        n = stale.count()
        if not n:
            release(stale)
            return {"revalidated": 0, "released": 0, "held": 0, "still_quarantined": 0}
        where = stale.select(
            F.col(key).alias("_q_key"), F.col("_source_file").alias("_q_file"), F.col("_ingested_at").alias("_q_at")
        ).distinct()  # own names: the same table is read again below, and a self-join must not mix the two
        bronze = self.lake.read(self.ctx.settings.table_name("bronze", self.entity))
        rows = bronze.join(
            F.broadcast(where),
            F.trim(bronze[key]).eqNullSafe(F.col("_q_key"))
            & (bronze["_source_file"] == F.col("_q_file"))
            & (bronze["_ingested_at"] == F.col("_q_at")),
            "left_semi",
        )
        rejudged = self.judge(rows)
        cond = f"t._row_hash = s._row_hash AND NOT (t._rule_version <=> {quote_string(self.version)})"
        self.lake.merge(self.quarantine, stale.select("_row_hash"), cond, "WHEN MATCHED THEN DELETE")
        # what still fails is in quarantine again, with this catalog's reasons (maybe other ones than before) and
        # version: counted from the re-judged batch, not by reading `stale` again (Delta re-caches a cached plan of a
        # table it writes, so after the writes `stale` holds only what is left of it; the delete above only needs that)
        still = rejudged["quarantined"]
        release(stale)
        # the run's row figures stay those of its new bronze rows (the monitor reconciles them with bronze); what the
        # re-validation wrote counts in inserted / updated, the rest in the summary's `revalidation`
        for k in ("inserted", "updated"):
            self.stats[k] += rejudged[k]
        return {"revalidated": n, "released": max(n - still, 0), "held": rejudged["held"], "still_quarantined": still}

    def release_held(self) -> None:
        """Re-validate held rows: those whose patient arrived go to silver, those past the grace period to quarantine."""
        held = cached(self.lake.read(self.held))
        if held.isEmpty():
            release(held)
            return
        known = (
            self.lake.read(self.ctx.settings.table_name("silver", "patients"))
            .select("patient_id")
            .distinct()
            .withColumn("_known", F.lit(True))
        )
        grace = float(self.ctx.settings.quality.get("orphan_grace_hours", 24))
        # the clock is read once: the rows counted as expired are the ones quarantined and then removed from held,
        # even when Spark computes `checked` again (no cache on Spark Connect)
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=int(grace * 3600))
        checked = cached(
            held.join(known, "patient_id", "left").withColumn(
                "_expired", F.col("_known").isNull() & (F.col("_held_since") < F.lit(cutoff))
            )
        )
        ready = checked.filter(F.col("_known").isNotNull()).withColumn("_failed_rules", F.array().cast("array<string>"))
        expired = checked.filter("_expired")
        n_ready, n_expired = ready.count(), expired.count()
        if n_ready:
            _, written = self.upsert(
                self.warnings(ready)
                .withColumn("_run_id", F.lit(self.ctx.run_id))
                .withColumn("_confidence", confidence(self.ctx.settings.quality, self.entity))
            )
            self.stats["inserted"] += written.get("numTargetRowsInserted", 0)
            self.stats["updated"] += written.get("numTargetRowsUpdated", 0)
        if n_expired:
            self.quarantine_rows(expired)
        done = checked.filter(F.col("_known").isNotNull() | F.col("_expired")).select("_row_hash")
        if n_ready or n_expired:
            self.lake.merge(self.held, done, "t._row_hash = s._row_hash", "WHEN MATCHED THEN DELETE")
        self.stats["released"] += n_ready
        self.stats["expired_to_quarantine"] += n_expired
        if n_expired:
            self.stats["quarantined_by_rule"]["patient_exists"] = (
                self.stats["quarantined_by_rule"].get("patient_exists", 0) + n_expired
            )
        release(checked)
        release(held)


def _last_merge_metrics(lake, table: str) -> dict:
    row = lake.history(table, 1).select("operation", "operationMetrics").first()
    if row is None or row["operation"] != "MERGE":
        return {}
    return {k: int(v) for k, v in (row["operationMetrics"] or {}).items() if v and v.isdigit()}


def ensure_tables(ctx: JobContext, entity: str, sample: DataFrame) -> None:
    """Create the silver, quarantine and held tables from the schema standardization produces."""
    lake = ctx.lakehouse
    std = (
        standardize(entity, sample, "x", ctx.settings.quality)
        .withColumn("_run_id", F.lit("x"))
        .withColumn("_processed_at", F.current_timestamp())
    )
    silver_schema = (
        std.withColumn("_confidence", F.lit(1.0))
        .withColumn("_warnings", F.array().cast("array<string>"))
        .withColumn("_rule_version", F.lit("v"))
        .select(*SILVER_COLUMNS[entity], *LINEAGE, *EXTRA, "_processed_at")
        .schema
    )
    lake.ensure(ctx.settings.table_name("silver", entity), silver_schema, "silver")
    q = std.withColumn("_failed_rules", F.array().cast("array<string>")).withColumn("_rule_version", F.lit("v"))
    q = q.select(*Q_COLUMNS[entity], F.lit("h").alias("_row_hash"))
    lake.ensure(
        ctx.settings.table_name("quarantine", entity),
        q.withColumn("_quarantined_at", F.current_timestamp()).schema,
        "quarantine",
    )
    if entity != "patients":
        lake.ensure(
            ctx.settings.table_name("held", entity),
            q.withColumn("_held_since", F.current_timestamp()).schema,
            "quarantine",
        )


def score(valid: int, quarantined: int) -> float | None:
    return round(valid / (valid + quarantined), 6) if valid + quarantined else None


def process(ctx: JobContext, entity: str) -> dict:
    lake = ctx.lakehouse
    bronze = ctx.settings.table_name("bronze", entity)
    stats = new_stats()
    if not lake.exists(bronze):
        stats["note"] = f"{bronze} does not exist yet"
        return stats
    if ctx.args.full_refresh == "true":  # judge the whole of bronze again: the tables keep their identity and feed
        for layer in ("silver", "quarantine", "held"):
            name = ctx.settings.table_name(layer, entity) if layer != "held" or entity != "patients" else None
            if name and lake.exists(name):
                lake.delete(name)
        lake.reset_checkpoint(f"silver_{entity}")
        stats["full_refresh"] = True
    ensure_tables(ctx, entity, lake.read(bronze).limit(0))
    batch = SilverBatch(ctx, entity, stats)
    ops.BatchFigures.ensure(lake)
    if ctx.args.revalidate_quarantine == "true":
        stats["revalidation"] = batch.revalidate_quarantine()
    if entity != "patients":
        batch.release_held()  # patients that arrived since the last run (patients are processed first)
    query = start_stream(
        lake.read_stream(bronze)
        .writeStream.foreachBatch(batch)
        .option("checkpointLocation", lake.checkpoint(f"silver_{entity}"))
        .trigger(availableNow=True)
    )
    try:
        query.awaitTermination()
    except Exception:
        fatal = batch.fatal_reason()
        if fatal:  # a fail-level rule: its one-line reason, not the stream's stack trace
            raise JobError(fatal) from None
        raise
    lake.stream_finished(f"silver_{entity}")
    add_figures(stats, batch.figures.totals(lake))  # read to the end: a later run with nothing new may skip (idle)
    # rows released from held count as valid, expired ones as quarantined (they were neither when they arrived)
    stats["quality_score"] = score(
        stats["valid"] + stats["released"], stats["quarantined"] + stats["expired_to_quarantine"]
    )
    stats["table"] = lake.display_name(ctx.settings.table_name("silver", entity))
    return stats


def record_run(ctx: JobContext, results: dict) -> str:
    """One row per run and entity in ops_silver_runs (a retry of the run replaces its own rows)."""
    runs = OpsTable.open(ctx.lakehouse, ctx.settings.raw["tables"]["ops"]["silver_runs"], ops.SILVER_RUNS)
    now = datetime.now(timezone.utc)
    target = float(ctx.settings.quality["target_score"])
    runs.replace_run(
        ctx.run_id,
        [
            (
                ctx.run_id,
                entity,
                now,
                *[int(st.get(k, 0)) for k in ops.SILVER_RUN_COUNTS],
                {k: int(v) for k, v in st.get("quarantined_by_rule", {}).items()},
                st.get("quality_score"),
                target,
            )
            for entity, st in results.items()
        ],
        within=("entity", list(results)),
    )
    return ctx.lakehouse.display_name(runs.name)


def run(ctx: JobContext) -> dict:
    hash_salt(ctx.settings)  # outside the local environment: no secret salt, no start
    # patients first: claims and events are checked against silver_patients
    results = {entity: process(ctx, entity) for entity in selected_entities(ctx.args)}
    valid = sum(r["valid"] + r["released"] for r in results.values())
    bad = sum(r["quarantined"] + r["expired_to_quarantine"] for r in results.values())
    runs_table = record_run(ctx, results)
    summary = {
        "rule_catalog_version": catalog_version(ctx.settings.quality),
        "entities": results,
        "quality_score": score(valid, bad),
        "runs_table": runs_table,
        "held_rows": {e: ctx.lakehouse.count(ctx.settings.table_name("held", e)) for e in results if e != "patients"},
        "target_score": ctx.settings.quality["target_score"],
    }
    # Soda checks on what this run wrote: every result goes to ops_soda_checks; a failed fail-level check fails
    # the job (and so the Airflow task) with a one-line reason, a warn-level one only reports
    summary["soda"] = run_scans(ctx.spark, ctx.lakehouse, ctx.settings, ctx.run_id, list(results))
    raise_for_failures(summary["soda"])
    return summary


def idle(ctx: JobContext) -> str | None:
    """Why this run has nothing to judge, told without starting Spark where the target allows it (locally, off the
    Delta logs and stream checkpoints): bronze has no tables yet, or every silver stream has read every bronze version
    and no row is held (held rows are re-judged every run: their patient may have arrived, their grace may be over).
    A full refresh or a re-validation always runs. Without its secret salt the job fails first, idle or not: a
    misconfigured environment is found on its first run, not on the first hour that brings data."""
    hash_salt(ctx.settings)
    lake, settings = ctx.lakehouse, ctx.settings
    entities = selected_entities(ctx.args)
    if ctx.args.full_refresh == "true" or ctx.args.revalidate_quarantine == "true":
        return None
    if not any(lake.exists(settings.table_name("bronze", e)) for e in entities):
        return "bronze has no tables yet; nothing to judge"
    for entity in entities:
        caught_up = lake.exists(settings.table_name("silver", entity)) and lake.stream_caught_up(
            settings.table_name("bronze", entity), f"silver_{entity}"
        )
        if not caught_up or (entity != "patients" and not lake.known_empty(settings.table_name("held", entity))):
            return None
    return "no new rows in bronze since the last run and none held"


def add_arguments(parser) -> None:
    entities_argument(parser)
    parser.add_argument(
        "--full-refresh",
        default="false",
        choices=["true", "false"],
        help="empty silver, quarantine and held and judge the whole of bronze again by the current rule catalog "
        "(then rebuild gold with its own --full-refresh)",
    )
    parser.add_argument(
        "--revalidate-quarantine",
        default="false",
        choices=["true", "false"],
        help="judge the quarantined rows again by the current rule catalog; rows that pass now go on to silver",
    )


main = entry("silver", run, add_arguments, idle)

if __name__ == "__main__":
    main()
