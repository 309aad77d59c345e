"""Column contracts: every silver column has one, its type is the table's, and the rules derived from them judge
hand-made values the way a careful data engineer would (expected outcomes written by hand, not computed)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

import pytest

from medallion.config import load_raw
from medallion.rules import SEVERITIES, catalog, failing
from medallion.schemas import landing_columns
from medallion.silver import SILVER_COLUMNS, standardize

QUALITY = load_raw()["quality"]
ENTITIES = ("patients", "claims", "medical_events")
SPARK_TYPES = {"int": "int", "double": "double", "string": "string", "boolean": "boolean", "date": "date"}


def _silver_schema(spark, entity):
    """The schema silver writes for an entity: standardization of an empty bronze frame, silver's columns."""
    from medallion.bronze import bronze_table_schema

    empty = spark.createDataFrame([], bronze_table_schema(entity))
    return standardize(entity, empty, "salt", QUALITY).select(*SILVER_COLUMNS[entity]).schema


@pytest.mark.parametrize("entity", ENTITIES)
def test_every_silver_column_has_a_contract_of_its_type(spark, entity):
    contracts = QUALITY["contracts"][entity]
    schema = _silver_schema(spark, entity)
    missing = [f.name for f in schema.fields if f.name not in contracts]
    assert not missing, f"silver {entity} columns without a contract: {missing}"
    assert set(contracts) == set(schema.fieldNames()), "a contract names a column silver does not have"
    for f in schema.fields:
        want = contracts[f.name]["type"]
        assert f.dataType.simpleString() == SPARK_TYPES.get(want, want), (entity, f.name)
        assert isinstance(contracts[f.name].get("required"), bool), (entity, f.name, "nullability not stated")


def test_every_number_is_finite_ranged_and_banded_and_every_categorical_has_a_vocabulary():
    for entity in ENTITIES:
        rules = {r.name: r for r in catalog(QUALITY, entity, "local")}
        for col, c in QUALITY["contracts"][entity].items():
            if c["type"] in ("int", "double"):
                assert "range" in c and "typical" in c, (entity, col)
                assert rules[f"typical_{col}"].severity == "warn"
            if c["type"] == "double":
                assert rules[f"finite_{col}"].severity == "quarantine"
            if c["type"] in ("date", "timestamp"):
                assert "window" in c, (entity, col)
            if c["type"] == "string":
                assert {"vocabulary", "pattern"} & set(c), (entity, col)
        assert {r.severity for r in rules.values()} <= set(SEVERITIES)
    assert "vocabulary" in QUALITY["contracts"]["patients"]["insurance_plan"]


def _judge(spark, entity, rows: list[dict]) -> list[tuple[list, list]]:
    """(quarantine rules failed, warnings) per hand-made silver row."""
    fields = _silver_schema(spark, entity).fields
    # what the rules see besides silver's columns: the rescued data, the environment, the raw names (patients)
    # and the code-set membership flag silver's join sets (the join itself: test_codesets.py)
    extra = {"_rescued_data": None, "_pipeline_env": "local", "first_name": "Ann", "last_name": "Lee"}
    extra["_known_diagnosis_code"] = True
    names = [f.name for f in fields] + list(extra)
    ddl = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in fields) + ", "
    ddl += ", ".join(f"{n} {'boolean' if n.startswith('_known') else 'string'}" for n in extra)
    full = [{**{f.name: None for f in fields}, **extra, **r} for r in rows]
    df = spark.createDataFrame([tuple(r[k] for k in names) for r in full], ddl)
    rules = catalog(QUALITY, entity, "local")
    out = df.select(
        failing([r for r in rules if r.severity == "quarantine"]).alias("q"),
        failing([r for r in rules if r.severity == "warn"]).alias("w"),
    ).collect()
    return [(sorted(r.q), sorted(r.w)) for r in out]


NOW = datetime.now()
PATIENT = {
    "patient_id": "P0000001",
    "age": 40,
    "sex": "FEMALE",
    "region": "SOUTHWEST",
    "bmi": 25.0,
    "smoker": False,
    "children": 1,
    "charges": 9000.5,
    "insurance_plan": "GOLD",
    "coverage_start_date": date(2025, 1, 1),
    "record_ts": datetime(2026, 11, 27, 5, 10),
}


def test_patient_contracts_on_hand_made_values(spark):
    cases = [
        ({}, [], []),
        ({"bmi": math.nan}, ["finite_bmi"], ["typical_bmi"]),
        ({"charges": math.inf}, ["finite_charges"], ["typical_charges"]),
        ({"charges": -math.inf}, ["finite_charges"], ["typical_charges"]),
        ({"charges": -0.0}, ["valid_charges"], ["typical_charges"]),
        ({"charges": 1e300}, ["valid_charges"], ["typical_charges"]),
        ({"charges": 200000.0}, [], ["typical_charges"]),  # an outlier, kept and warned
        ({"children": -1}, ["valid_children"], ["typical_children"]),
        ({"children": None, "smoker": None, "insurance_plan": None}, [], []),  # optional attributes
        ({"insurance_plan": "DIAMOND"}, ["valid_insurance_plan"], []),
        ({"record_ts": NOW + timedelta(days=365 * 30)}, ["valid_record_timestamp"], []),
        ({"record_ts": NOW + timedelta(minutes=5)}, [], []),  # within the clock skew
        ({"record_ts": datetime(1970, 1, 1)}, ["valid_coverage_start", "valid_record_timestamp"], []),
        ({"coverage_start_date": date(1900, 1, 1)}, ["valid_coverage_start_date"], []),
        ({"age": 82}, [], ["typical_age"]),
        ({"patient_id": "P 000001"}, ["valid_patient_id"], []),
        ({"sex": None}, ["valid_sex"], []),
        # the product request's potential_test_patient: TEST anywhere in a first or last name, any case
        ({"first_name": "TEST"}, ["potential_test_patient"], []),
        ({"last_name": "Smith-test"}, ["potential_test_patient"], []),
        ({"first_name": "Tess", "last_name": "Celeste"}, [], []),
        ({"first_name": None, "last_name": None}, [], []),
    ]
    got = _judge(spark, "patients", [{**PATIENT, **change} for change, _, _ in cases])
    assert got == [(q, w) for _, q, w in cases]


def test_claim_and_event_contracts_on_hand_made_values(spark):
    claim = {
        "claim_id": "C0000001",
        "patient_id": "P0000001",
        "claim_amount": 120.5,
        "claim_date": date(2026, 11, 1),
        "diagnosis_code": "E11.9",
        "procedure_code": "99213",
        "claim_status": "PAID",
    }
    cases = [
        ({}, [], []),
        ({"claim_amount": math.nan}, ["finite_claim_amount"], ["typical_claim_amount"]),
        ({"claim_amount": 5e7}, ["valid_claim_amount"], ["typical_claim_amount"]),
        ({"claim_date": date(2001, 5, 1)}, ["valid_claim_date"], []),  # before ICD-10-CM existed
        ({"claim_date": date.today() + timedelta(days=2)}, ["valid_claim_date"], []),
        ({"procedure_code": "J1100"}, [], []),  # HCPCS Level II
        ({"procedure_code": "0001U"}, [], []),  # PLA
        ({"procedure_code": "1234F"}, [], []),  # CPT category II
        ({"procedure_code": "0042T"}, [], []),  # CPT category III
        ({"procedure_code": "W1234"}, ["valid_procedure_code"], []),
        ({"claim_status": "PENDING"}, ["valid_claim_status"], []),
    ]
    got = _judge(spark, "claims", [{**claim, **change} for change, _, _ in cases])
    assert got == [(q, w) for _, q, w in cases]
    event = {
        "event_id": "E0000001",
        "patient_id": "P0000001",
        "event_date": date(2026, 11, 1),
        "event_type": "LAB_TEST",
        "medical_provider": "Valley Lab Services",
    }
    cases = [
        ({}, [], []),
        ({"medical_provider": None}, [], []),
        ({"medical_provider": "Lab\x07"}, ["valid_medical_provider"], []),
        ({"event_date": date(1900, 1, 1)}, ["valid_event_date"], []),
        ({"event_type": "SURGERY_X"}, ["valid_event_type"], []),
    ]
    got = _judge(spark, "medical_events", [{**event, **change} for change, _, _ in cases])
    assert got == [(q, w) for _, q, w in cases]


def test_landing_columns_are_silver_columns_or_tokenized():
    """The contracts cover silver; the raw names and the raw timestamp never reach it."""
    for entity in ENTITIES:
        raw = set(landing_columns(entity)) - {"first_name", "last_name", "timestamp"}
        assert raw <= set(QUALITY["contracts"][entity]), entity


def test_every_date_floor_is_one_parquet_writes_alike_under_any_rebase_mode():
    """Silver keeps nothing older than a floor; quarantine nulls what is older than WRITABLE_FROM. A floor moved
    before it would let silver write a value that fails the write on a runtime with Spark's default rebase mode."""
    from medallion.silver import WRITABLE_FROM

    floors = QUALITY["floors"]
    assert floors and all(str(floor) >= WRITABLE_FROM for floor in floors.values()), floors
