"""Soda checks of the silver layer (spark_jobs/medallion/soda_checks.py, include/soda/*.yml) on small silver tables."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import yaml

from medallion import soda_checks
from medallion.cli import JobError
from medallion.config import ENTITIES, ConfigError

COLUMNS = {
    "patients": "patient_id string, first_name_token string, last_name_token string, age int, sex string, "
    "region string, bmi double, smoker boolean, children int, charges double, insurance_plan string, "
    "coverage_start_date date, record_ts timestamp",
    "claims": "claim_id string, patient_id string, claim_amount double, claim_date date, diagnosis_code string, "
    "procedure_code string, claim_status string",
    "medical_events": "event_id string, patient_id string, event_date date, event_type string, medical_provider string",
}
# lineage as silver writes it, plus the `_confidence` column silver is gaining (no check may require it)
TAIL = "_source_file string, _ingested_at timestamp, _run_id string, _confidence double, _processed_at timestamp"


def now() -> datetime:
    """The current time (read when a test runs: the suite may run long after this module was collected)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def tok(name: str) -> str:
    return hashlib.sha256(f"salt|{name}".encode()).hexdigest()


def patient(
    pid, first="ANNA", last="SMITH", age=40, sex="FEMALE", region="NORTHEAST", bmi=27.5, ts=datetime(2026, 11, 27, 5, 0)
):
    return (
        pid,
        tok(first) if len(first) != 64 else first,
        tok(last) if len(last) != 64 else last,
        age,
        sex,
        region,
        bmi,
        False,
        1,
        4200.0,
        "GOLD",
        date(2025, 1, 1),
        ts,
    )


def claim(cid, pid, amount=120.5, dx="I10", cpt="99213", status="PAID"):
    return (cid, pid, amount, date(2026, 11, 20), dx, cpt, status)


def event(eid, pid, etype="OFFICE_VISIT", provider="Northside Medical Group"):
    return (eid, pid, date(2026, 11, 21), etype, provider)


CLEAN = {
    "patients": [
        patient("P-10001"),
        patient("P-10002", "BOB", "JONES", 55, "MALE", "SOUTHWEST", 31.0),
        patient("P-10001", ts=datetime(2026, 11, 27, 6, 0)),
    ],  # a second version of P-10001
    "claims": [
        claim("C-20001", "P-10001"),
        claim("C-20002", "P-10002", dx="E11.9", cpt="0001U"),
        claim("C-20003", "P-10002", status="SUBMITTED"),
    ],
    "medical_events": [
        event("E-30001", "P-10001"),
        event("E-30002", "P-10002", "LAB_TEST"),
        event("E-30003", "P-10002", "IMAGING"),
    ],
}


@pytest.fixture
def lake(spark, settings):
    from medallion.lakehouse import Lakehouse

    return Lakehouse(spark, settings)


def write_silver(spark, lake, settings, data: dict, processed_at: datetime | None = None) -> None:
    """Create the silver tables of `data` (entity -> rows) with silver's columns and append the rows."""
    processed_at = processed_at or now()
    for entity, rows in data.items():
        table = settings.table_name("silver", entity)
        lineage = (f"bronze/{entity}.csv", processed_at - timedelta(minutes=5), "scheduled__test", 1.0, processed_at)
        df = spark.createDataFrame([tuple(r) + lineage for r in rows], f"{COLUMNS[entity]}, {TAIL}")
        lake.ensure(table, df.schema, "silver")
        lake.append(df, table)


def few_rows_are_fine(settings):
    settings.raw.setdefault("soda", {})["min_rows_warn"] = 1  # the tiny test tables are not "too few rows"


def ops_rows(lake, settings):
    return [r.asDict() for r in lake.read(settings.raw["tables"]["ops"]["soda_checks"]).collect()]


# ---- the check files ------------------------------------------------------------------------------------------------


def _checks(rendered: dict) -> list:
    (header,) = rendered
    return rendered[header]


def _config_of(check) -> tuple[str, dict]:
    return next(iter(check.items())) if isinstance(check, dict) else (check, {})


def test_check_files_take_vocabularies_ranges_and_patterns_from_the_config(settings):
    quality = settings.quality
    seen_vocab, seen_range, seen_pattern = {}, {}, {}
    for entity in ENTITIES:
        path = soda_checks.check_file(settings, entity)
        assert path.parent == settings.root / "include" / "soda" and path.name == f"silver_{entity}.yml"
        template = yaml.safe_load(path.read_text())
        rendered = soda_checks.render_checks(settings, entity)
        assert list(rendered) == [f"checks for {settings.table_name('silver', entity)}"]
        for raw_check, check in zip(_checks(template), _checks(rendered)):
            (raw_line, raw_cfg), (line, cfg) = _config_of(raw_check), _config_of(check)
            column = line[line.index("(") + 1 : line.index(")")] if "(" in line else None
            for key in ("valid values", "valid min", "valid max"):
                if key in cfg:  # the file holds a placeholder, never the value itself
                    assert str(raw_cfg[key]).startswith("{{ quality."), (entity, raw_line, key)
            if "valid values" in cfg:
                seen_vocab[column] = cfg["valid values"]
            if "valid min" in cfg:
                seen_range[column] = {"min": cfg["valid min"], "max": cfg["valid max"]}
            if "valid regex" in cfg and column not in ("first_name_token", "last_name_token"):
                assert str(raw_cfg["valid regex"]).startswith("{{ quality.patterns.")
                seen_pattern[column] = cfg["valid regex"]
            if line.startswith("values in (patient_id) must exist in"):
                assert line.endswith(f"{settings.table_name('silver', 'patients')} (patient_id)")
    assert seen_vocab == quality["vocabularies"]
    assert seen_range == quality["ranges"]
    assert seen_pattern == {
        "diagnosis_code": quality["patterns"]["icd10"],
        "procedure_code": quality["patterns"]["procedure"],
    }


def test_check_levels_are_deliberate(settings):
    """Keys, duplicates, references, vocabularies and schema fail the task; freshness only warns."""
    for entity in ENTITIES:
        for check in _checks(soda_checks.render_checks(settings, entity)):
            line, cfg = _config_of(check)
            level = soda_checks._level(cfg)
            if line.startswith("freshness("):
                assert (
                    level == "warn"
                    and cfg["warn"] == f"when > {soda_checks.soda_settings(settings)['freshness_warn_hours']}h"
                )
            elif line == "row_count":  # an empty table (a new pipeline, claims before patients) only warns
                assert "fail" not in cfg and level == "warn" and cfg["warn"].startswith("when < ")
            else:
                assert level == "fail", (entity, line)


def test_schema_checks_match_the_tables_silver_creates(spark, settings):
    """The required columns and types are exactly what silver.ensure_tables creates (extra columns are allowed)."""
    from pyspark.sql.types import StructType

    from medallion import bronze, silver
    from medallion.schemas import BRONZE_SCHEMAS

    created = {}
    ctx = SimpleNamespace(
        settings=settings,
        lakehouse=SimpleNamespace(ensure=lambda table, schema, layer, *a, **k: created.setdefault(table, schema)),
    )  # no table is written
    for entity in ENTITIES:
        sample = spark.createDataFrame([], StructType(BRONZE_SCHEMAS[entity].fields + bronze.LINEAGE_FIELDS))
        silver.ensure_tables(ctx, entity, sample)
        actual = {f.name: f.dataType.simpleString() for f in created[settings.table_name("silver", entity)]}
        schema_cfg = next(
            cfg
            for line, cfg in map(_config_of, _checks(soda_checks.render_checks(settings, entity)))
            if line == "schema"
        )["fail"]
        required = schema_cfg["when required column missing"]
        assert set(silver.SILVER_COLUMNS[entity] + silver.LINEAGE + ["_processed_at"]) == set(required)
        assert schema_cfg["when wrong column type"] == {c: actual[c] for c in required}
        assert "_confidence" not in required
        forbidden = [c.rstrip("$") for c in schema_cfg.get("when forbidden column present", [])]
        assert not set(forbidden) & set(actual)
        if entity == "patients":  # the raw columns silver replaces by tokens and record_ts
            assert set(forbidden) == {"first_name", "last_name", "timestamp"}


def test_a_placeholder_missing_from_the_config_is_a_config_error(settings, tmp_path):
    (tmp_path / "silver_patients.yml").write_text(
        "checks for {{ tables.silver.patients }}:\n"
        "  - invalid_count(sex) = 0:\n"
        '      valid values: "{{ quality.vocabularies.gender }}"\n'
    )
    settings.raw["soda"] = {**settings.raw["soda"], "checks_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"silver_patients.yml: placeholder \{\{ quality.vocabularies.gender \}\}"):
        soda_checks.render_checks(settings, "patients")


# ---- scans ----------------------------------------------------------------------------------------------------------


def test_clean_tables_pass_every_check_and_each_check_lands_in_the_ops_table(spark, lake, settings, caplog):
    write_silver(spark, lake, settings, CLEAN)
    few_rows_are_fine(settings)
    caplog.set_level(logging.INFO, logger="medallion")
    summary = soda_checks.run_scans(spark, lake, settings, "run-clean", ENTITIES)
    assert summary["failed"] == summary["warned"] == summary["errors"] == 0, summary
    n_checks = sum(len(_checks(soda_checks.render_checks(settings, e))) for e in ENTITIES)
    assert summary["soda_errors"] == [] and summary["checks"] == summary["passed"] == n_checks
    assert summary["tables"] == ["silver_patients", "silver_claims", "silver_medical_events"]
    soda_checks.raise_for_failures(summary)  # nothing to raise

    rows = ops_rows(lake, settings)
    assert len(rows) == summary["checks"] and {r["outcome"] for r in rows} == {"pass"}
    assert {r["run_id"] for r in rows} == {"run-clean"} and len({r["checked_at"] for r in rows}) == 1
    by_name = {(r["table_name"], r["check_name"]): r for r in rows}
    assert by_name[("silver_patients", "duplicate_count(patient_id, record_ts) = 0")]["measured_value"] == 0
    assert by_name[("silver_patients", "row_count warn when < 1")]["measured_value"] == 3
    assert (
        by_name[("silver_claims", "values in (patient_id) must exist in silver_patients (patient_id)")]["level"]
        == "fail"
    )
    fresh = by_name[("silver_claims", "freshness(_processed_at) warn when > 6h")]
    assert fresh["level"] == "warn" and 0 <= fresh["measured_value"] < 0.5 and "freshness" in fresh["measured_text"]
    # the task log: one line per check and a total
    lines = [r.getMessage() for r in caplog.records if r.name == "medallion.soda"]
    assert sum(l.startswith("soda PASS") for l in lines) == summary["checks"]
    assert any(l.startswith(f"soda: {summary['checks']} checks on silver_patients, silver_claims") for l in lines)

    # a retry of the same run replaces its rows; another run adds its own
    soda_checks.run_scans(spark, lake, settings, "run-clean", ["claims"])
    assert len(ops_rows(lake, settings)) == summary["checks"]
    assert not spark.catalog.tableExists("silver_claims")  # the temporary views are gone


def test_a_duplicate_key_fails_the_task_with_a_one_line_reason(spark, lake, settings):
    data = {
        **CLEAN,
        "patients": CLEAN["patients"] + [CLEAN["patients"][0]],  # same patient_id and record_ts
        "claims": CLEAN["claims"] + [claim("C-20001", "P-10002")],
    }  # a claim id twice
    write_silver(spark, lake, settings, data)
    few_rows_are_fine(settings)
    with pytest.raises(JobError) as failed:  # what the silver job does last
        soda_checks.raise_for_failures(soda_checks.run_scans(spark, lake, settings, "run-dup", ENTITIES))
    reason = str(failed.value)
    assert isinstance(failed.value, soda_checks.SodaCheckFailed) and "\n" not in reason
    assert reason.startswith("Soda: 2 fail checks: ")
    assert "duplicate_count(patient_id, record_ts) = 0 on silver_patients (measured 1)" in reason
    assert "duplicate_count(claim_id) = 0 on silver_claims (measured 1)" in reason
    summary = failed.value.summary
    assert summary["failed"] == 2 and summary["errors"] == 0
    failed_rows = {(r["table_name"], r["check_name"]) for r in ops_rows(lake, settings) if r["outcome"] == "fail"}
    assert failed_rows == {
        ("silver_patients", "duplicate_count(patient_id, record_ts) = 0"),
        ("silver_claims", "duplicate_count(claim_id) = 0"),
    }


def test_stale_and_small_tables_only_warn(spark, lake, settings):
    write_silver(spark, lake, settings, CLEAN, processed_at=now() - timedelta(hours=9))
    settings.raw["soda"]["min_rows_warn"] = 100
    summary = soda_checks.run_scans(spark, lake, settings, "run-warn", ENTITIES)
    assert summary["failed"] == summary["errors"] == 0 and summary["warned"] == 6, summary
    assert (
        sorted(w.split(" on ")[0] for w in summary["warned_checks"])
        == ["freshness(_processed_at) warn when > 6h"] * 3 + ["row_count warn when < 100"] * 3
    )
    soda_checks.raise_for_failures(summary)  # warnings never fail the task
    warned = [r for r in ops_rows(lake, settings) if r["outcome"] == "warn"]
    assert len(warned) == 6 and all(8.9 < r["measured_value"] < 9.5 for r in warned if "freshness" in r["check_name"])


def test_empty_tables_only_warn(spark, lake, settings):
    """A new pipeline starts empty (and claims may come before any patient): row count and freshness only warn."""
    write_silver(spark, lake, settings, {"patients": CLEAN["patients"], "claims": [], "medical_events": []})
    few_rows_are_fine(settings)
    summary = soda_checks.run_scans(spark, lake, settings, "run-empty", ENTITIES)
    assert summary["failed"] == summary["errors"] == 0, summary
    assert sorted(w.split(" on ")[1].split(" ")[0] for w in summary["warned_checks"]) == [
        "silver_claims",
        "silver_claims",
        "silver_medical_events",
        "silver_medical_events",
    ]
    soda_checks.raise_for_failures(summary)


def test_a_claim_of_an_unknown_patient_fails_referential_integrity(spark, lake, settings):
    data = {**CLEAN, "claims": CLEAN["claims"] + [claim("C-20009", "P-40404")]}
    write_silver(spark, lake, settings, data)
    few_rows_are_fine(settings)
    summary = soda_checks.run_scans(spark, lake, settings, "run-ref", ["claims", "medical_events"])
    assert summary["failed_checks"] == [
        "values in (patient_id) must exist in silver_patients (patient_id) on silver_claims (measured 1)"
    ]
    assert summary["tables"] == ["silver_claims", "silver_medical_events"]  # patients was only the reference
    with pytest.raises(JobError, match=r"^Soda: 1 fail check: values in \(patient_id\) must exist"):
        soda_checks.raise_for_failures(summary)


def test_tables_silver_has_not_created_yet_are_skipped_and_soda_can_be_switched_off(spark, lake, settings):
    write_silver(spark, lake, settings, {"patients": CLEAN["patients"]})
    few_rows_are_fine(settings)
    summary = soda_checks.run_scans(spark, lake, settings, "run-first", ENTITIES)
    assert summary["tables"] == ["silver_patients"] and summary["failed"] == summary["errors"] == 0
    assert summary["skipped_tables"] == ["silver_claims", "silver_medical_events"]
    settings.raw["soda"]["enabled"] = False
    off = soda_checks.run_scans(spark, lake, settings, "run-off", ENTITIES)
    assert off["enabled"] is False and off["checks"] == 0
    soda_checks.raise_for_failures(off)


# ---- privacy --------------------------------------------------------------------------------------------------------

PHI = {  # distinctive values that only exist in the rows below: none may appear in any output of the scan
    "patient_id": "P-PHI-123456",
    "ghost_patient": "P-PHI-GHOST-424242",
    "claim_id": "C-PHI-778899",
    "event_id": "E-PHI-556677",
    "first_name": "ZEBEDIAH-QUUXWORTH",  # stored untokenized: fails the token check
    "last_name": "PHIBBLESTONE-NAME",
    "sex": "XENOMORPH-SEX",
    "region": "ATLANTIS-PHI-REGION",
    "diagnosis": "ZZ9-PHI-DX",
    "procedure": "PROC-PHI-99",
    "provider": "Dr Phineas Phiwright Clinic",
    "event_type": "PHI-SECRET-VISIT",
    "amount": "-98765.43",
}


def test_no_row_value_reaches_any_log_the_scan_produces(spark, lake, settings, caplog, capfd, monkeypatch):
    from soda.scan import Scan

    p = PHI
    bad_patient = patient(
        p["patient_id"], p["first_name"].ljust(64, "X"), p["last_name"].ljust(64, "Y"), 99, p["sex"], p["region"]
    )
    data = {
        "patients": CLEAN["patients"] + [bad_patient, bad_patient],  # duplicate key, invalid values
        "claims": CLEAN["claims"]
        + [
            claim(p["claim_id"], p["ghost_patient"], float(p["amount"]), p["diagnosis"], p["procedure"], "LOST"),
            claim(p["claim_id"], p["patient_id"]),
        ],  # duplicate id, unknown patient
        "medical_events": CLEAN["medical_events"]
        + [event(p["event_id"], p["ghost_patient"], p["event_type"], p["provider"])] * 2,
    }
    write_silver(spark, lake, settings, data)
    few_rows_are_fine(settings)

    scans = []
    real_execute = Scan.execute

    def execute_verbosely(self):  # Soda's most talkative mode: every query and debug line
        scans.append(self)
        self.set_verbose(True)
        return real_execute(self)

    monkeypatch.setattr(Scan, "execute", execute_verbosely)
    raw_soda = []

    class Keep(logging.Handler):
        def emit(self, record):
            raw_soda.append(self.format(record))

    keep = Keep(level=logging.DEBUG)
    soda_logger = logging.getLogger("soda")
    soda_logger.addHandler(keep)  # sees Soda's own records even while they are kept out of the job log
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="soda")
    caplog.set_level(logging.DEBUG, logger="medallion")
    try:
        summary = soda_checks.run_scans(spark, lake, settings, "run-phi", ENTITIES)
        with pytest.raises(JobError) as failed:
            soda_checks.raise_for_failures(summary)
    finally:
        soda_logger.removeHandler(keep)
    out, err = capfd.readouterr()

    # the bad rows were noticed (so the scan really looked at them) ...
    failing = {r.split(" on ")[0] for r in summary["failed_checks"]}
    assert {
        "duplicate_count(patient_id, record_ts) = 0",
        "duplicate_count(claim_id) = 0",
        "duplicate_count(event_id) = 0",
        "invalid_count(first_name_token) = 0",
        "invalid_count(sex) = 0",
        "invalid_count(age) = 0",
        "invalid_count(diagnosis_code) = 0",
        "non_positive_claim_amounts = 0",
        "values in (patient_id) must exist in silver_patients (patient_id)",
        "invalid_count(event_type) = 0",
    } <= failing
    (scan,) = scans
    assert len(raw_soda) > 50 and any("SELECT" in line for line in raw_soda)  # the verbose Soda output was captured
    assert all(q.sample_ref is None for q in scan._queries)  # no failed-rows sample was taken
    # ... and none of their values is anywhere
    outputs = {
        "caplog": caplog.text,
        "stdout": out,
        "stderr": err,
        "soda python logs": "\n".join(raw_soda),
        "soda logs text": scan.get_logs_text(),
        "soda scan results": json.dumps(scan.get_scan_results(), default=str),
        "summary": json.dumps(summary, default=str),
        "reason": str(failed.value),
        "ops table": json.dumps(ops_rows(lake, settings), default=str),
    }
    for where, text in outputs.items():
        for what, value in PHI.items():
            assert value.lower() not in (text or "").lower(), f"{what} ({value}) found in {where}"
        assert "P-10001" not in (text or ""), where  # clean rows' ids neither


def test_a_check_soda_cannot_evaluate_fails_the_task_and_no_telemetry_is_sent(spark, lake, settings, tmp_path, caplog):
    (tmp_path / "silver_patients.yml").write_text(
        "checks for {{ tables.silver.patients }}:\n  - row_count > 0\n  - missing_count(no_such_column) = 0\n"
    )
    settings.raw["soda"] = {**settings.raw["soda"], "checks_dir": str(tmp_path)}
    write_silver(spark, lake, settings, {"patients": CLEAN["patients"]})
    summary = soda_checks.run_scans(spark, lake, settings, "run-err", ENTITIES)
    assert summary["skipped_tables"] == ["silver_claims", "silver_medical_events"]  # silver has not made them yet
    assert summary["passed"] == 0 and summary["errors"] == 2 and summary["soda_errors"], summary
    assert summary["error_checks"] == [
        "row_count > 0 on silver_patients",
        "missing_count(no_such_column) = 0 on silver_patients",
    ]
    with pytest.raises(JobError, match=r"^Soda: 2 check error\(s\): row_count > 0 on silver_patients; missing_count"):
        soda_checks.raise_for_failures(summary)
    # Soda's error reached the log as one line each, quoted literals masked, no stack trace
    soda_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("soda error:")]
    assert soda_lines and all("\n" not in l and len(l) < 400 for l in soda_lines)
    assert {r["outcome"] for r in ops_rows(lake, settings)} == {"error"}
    # Soda's usage telemetry is off (and ~/.soda/config.yml is not consulted)
    from soda.common.config_helper import ConfigHelper
    from soda.telemetry.soda_telemetry import SodaTelemetry

    assert ConfigHelper.get_instance().send_anonymous_usage_stats is False
    assert SodaTelemetry.get_instance()._SodaTelemetry__send is False
