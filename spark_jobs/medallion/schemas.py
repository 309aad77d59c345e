"""The product request's bronze schemas (binding), the landing-file column order derived from them, and the one way
landed text is typed (`try_cast`)."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DoubleType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

_META = [StructField("_ingested_at", TimestampType(), True), StructField("_pipeline_env", StringType(), True)]

PATIENT_SCHEMA = StructType(
    [
        StructField("patient_id", StringType(), False),
        StructField("first_name", StringType(), True),
        StructField("last_name", StringType(), True),
        StructField("age", IntegerType(), True),
        StructField("sex", StringType(), True),
        StructField("region", StringType(), True),
        StructField("bmi", DoubleType(), True),
        StructField("smoker", BooleanType(), True),
        StructField("children", IntegerType(), True),
        StructField("charges", DoubleType(), True),
        StructField("insurance_plan", StringType(), True),
        StructField("coverage_start_date", StringType(), True),
        StructField("timestamp", StringType(), True),
        *_META,
    ]
)

CLAIMS_SCHEMA = StructType(
    [
        StructField("claim_id", StringType(), False),
        StructField("patient_id", StringType(), False),
        StructField("claim_amount", DoubleType(), True),
        StructField("claim_date", StringType(), True),
        StructField("diagnosis_code", StringType(), True),
        StructField("procedure_code", StringType(), True),
        StructField("claim_status", StringType(), True),
        *_META,
    ]
)

MEDICAL_EVENTS_SCHEMA = StructType(
    [
        StructField("event_id", StringType(), False),
        StructField("patient_id", StringType(), False),
        StructField("event_date", StringType(), True),
        StructField("event_type", StringType(), True),
        StructField("medical_provider", StringType(), True),
        *_META,
    ]
)

BRONZE_SCHEMAS = {"patients": PATIENT_SCHEMA, "claims": CLAIMS_SCHEMA, "medical_events": MEDICAL_EVENTS_SCHEMA}
KEYS = {"patients": "patient_id", "claims": "claim_id", "medical_events": "event_id"}
RESCUED = "_rescued_data"


def source_schema(entity: str) -> StructType:
    """The columns of a landing file (the bronze schema without pipeline metadata), all nullable."""
    return StructType(
        [StructField(f.name, f.dataType, True) for f in BRONZE_SCHEMAS[entity].fields if not f.name.startswith("_")]
    )


def landing_columns(entity: str) -> list[str]:
    return [f.name for f in source_schema(entity).fields]


def try_cast(sql: str, data_type: DataType) -> Column:
    """`sql` (an expression over column names) cast to `data_type`, NULL where a value does not convert. A plain
    cast gives NULL too, but only with ANSI mode off: with it on (Databricks serverless, Spark 4's default) a bad
    landing value fails the whole query, quoting the value in the error. PySpark 3.5 has no `Column.try_cast`."""
    return F.expr(f"try_cast({sql} AS {data_type.simpleString()})")
