"""Bronze -> silver -> gold on small data through the jobs' real code, in the shared Spark session."""
from __future__ import annotations

from pathlib import Path

from pyspark.sql import functions as F

from medallion.lakehouse import Lakehouse

H5 = ["--interval-start", "2026-11-27T05:00:00Z", "--interval-end", "2026-11-27T06:00:00Z"]


def _table(spark, settings, layer, entity):
    return Lakehouse(spark, settings).read(settings.table_name(layer, entity))


def _write_landing(settings, tag: str, entity: str, text: str) -> None:
    folder = Path(settings.location("landing")) / tag
    folder.mkdir(parents=True, exist_ok=True)
    (folder / settings.landing_file(entity)).write_text(text, encoding="utf-8")


def test_cycle_is_consistent_and_rerunning_lands_nothing_twice(run_job, spark, settings):
    gen = run_job("generate", *H5, "--patients", "120", "--defect-rate", "0")
    first = run_job("bronze", *H5)
    assert first["tables"]["patients"]["rows_ingested"] == gen["rows"]["patients"] == 120
    assert first["rows_ingested"] == sum(gen["rows"].values())
    silver = run_job("silver")
    assert silver["quality_score"] == 1.0
    run_job("gold")

    # re-run every layer for the same interval: nothing new lands anywhere
    run_job("generate", *H5, "--patients", "120", "--defect-rate", "0")
    assert run_job("bronze", *H5)["rows_ingested"] == 0
    assert run_job("silver")["entities"]["patients"]["rows_in"] == 0
    run_job("gold")
    counts = run_job("monitor")["counts"]
    for entity, n in gen["rows"].items():
        for layer in ("bronze", "silver", "gold"):
            assert counts[settings.table_name(layer, entity)] == n, (layer, entity)

    patients = _table(spark, settings, "silver", "patients")
    for entity in ("claims", "medical_events"):
        orphans = _table(spark, settings, "silver", entity).join(patients, "patient_id", "left_anti").count()
        assert orphans == 0
    dim = _table(spark, settings, "gold", "patients")
    lake = Lakehouse(spark, settings)
    for entity, keys in settings.raw["clustering"]["gold"].items():  # clustering keys from config
        detail = lake.delta(settings.table_name("gold", entity)).detail().first()
        assert list(detail["clusteringColumns"]) == keys and detail["properties"]["quality"] == "gold"
    for entity in ("claims", "medical_events"):
        fact = _table(spark, settings, "gold", entity)
        assert fact.filter("patient_key IS NULL").count() == 0
        assert fact.join(dim, "patient_key", "left_anti").count() == 0
    assert dim.filter("is_current").count() == 120
    # no clear names beyond bronze
    assert "first_name" not in patients.columns and "last_name" not in dim.columns


def test_bad_rows_are_quarantined_with_every_rule_they_fail(run_job, spark, settings):
    header = "patient_id,first_name,last_name,age,sex,region,bmi,smoker,children,charges,insurance_plan," \
             "coverage_start_date,timestamp\n"
    _write_landing(settings, "2026-11-27T0500Z", "patients", header +
                   "P0000001,Ann,Lee,40, female ,southwest,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
                   "P0000002,Bob,Ray,200,X,SOUTHWEST,25.0,false,1,-5,GOLD,2025-01-01,2026-11-27 05:11:00\n"
                   "P1,Cy,Oh,30,MALE,NORTHEAST,25.0,false,1,100,GOLD,2025-01-01,2026-11-27 05:12:00\n"
                   "P0000001,Ann,Lee,40, female ,southwest,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n")
    _write_landing(settings, "2026-11-27T0500Z", "claims",
                   "claim_id,patient_id,claim_amount,claim_date,diagnosis_code,procedure_code,claim_status\n"
                   "C0000001,P0000001,120.5,2026-11-01,I10,99213,approved\n"
                   "C0000002,P9999999,80.0,2026-11-02,I10,99213,PAID\n"
                   "C0000003,P0000001,0,2026-11-03,I10,99213,PAID\n")
    _write_landing(settings, "2026-11-27T0500Z", "medical_events",
                   "event_id,patient_id,event_date,event_type,medical_provider\n"
                   "E0000001,P0000001,2026-11-01,LAB_TEST,Valley Lab Services\n")
    run_job("bronze")
    s = run_job("silver")["entities"]
    assert (s["patients"]["rows_in"], s["patients"]["exact_duplicates"], s["patients"]["valid"],
            s["patients"]["quarantined"]) == (4, 1, 1, 2)
    assert s["patients"]["quarantined_by_rule"] == {"valid_age": 1, "valid_sex": 1, "valid_charges": 1,
                                                    "valid_patient_id": 1}
    ok = _table(spark, settings, "silver", "patients").collect()
    assert [(r.patient_id, r.sex, r.region) for r in ok] == [("P0000001", "FEMALE", "SOUTHWEST")]
    q = {r.patient_id: sorted(r._failed_rules)
         for r in _table(spark, settings, "quarantine", "patients").collect()}
    assert q == {"P0000002": ["valid_age", "valid_charges", "valid_sex"], "P1": ["valid_patient_id"]}
    qc = {r.claim_id: list(r._failed_rules) for r in _table(spark, settings, "quarantine", "claims").collect()}
    assert qc == {"C0000003": ["valid_claim_amount"]}
    # a claim whose patient has not arrived is held, not quarantined
    assert [r.claim_id for r in _table(spark, settings, "held", "claims").collect()] == ["C0000002"]
    # reconciliation: every landed row is in silver, in quarantine, held, or counted as a duplicate
    for entity, stats in s.items():
        assert stats["rows_in"] == stats["valid"] + stats["quarantined"] + stats["exact_duplicates"] \
            + stats["held"], entity


def test_claims_whose_patient_arrives_a_batch_later_are_held_then_released(run_job, spark, settings, monkeypatch):
    claims_header = "claim_id,patient_id,claim_amount,claim_date,diagnosis_code,procedure_code,claim_status\n"
    header = "patient_id,first_name,last_name,age,sex,region,bmi,smoker,children,charges,insurance_plan," \
             "coverage_start_date,timestamp\n"
    _write_landing(settings, "2026-11-27T0400Z", "claims", claims_header +
                   "C0000001,P0000001,120.5,2026-11-01,I10,99213,approved\n"
                   "C0000002,P0000002,80.0,2026-11-02,I10,99213,PAID\n")
    run_job("bronze")
    first = run_job("silver")["entities"]["claims"]
    assert (first["held"], first["valid"], first["quarantined"]) == (2, 0, 0)
    _write_landing(settings, "2026-11-27T0500Z", "patients", header +
                   "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n")
    run_job("bronze")
    second = run_job("silver")
    assert second["entities"]["claims"]["released"] == 1 and second["held_rows"]["claims"] == 1
    assert [r.claim_id for r in _table(spark, settings, "silver", "claims").collect()] == ["C0000001"]
    # past the grace period the orphan is quarantined with the referential-integrity rule
    monkeypatch.setenv("MEDALLION_ORPHAN_GRACE_HOURS", "0")
    third = run_job("silver")
    assert third["entities"]["claims"]["expired_to_quarantine"] == 1 and third["held_rows"]["claims"] == 0
    assert [(r.claim_id, list(r._failed_rules)) for r in _table(spark, settings, "quarantine", "claims").collect()] \
        == [("C0000002", ["patient_exists"])]


def test_scd2_new_version_splits_history_and_facts_follow_the_date(run_job, spark, settings):
    header = "patient_id,first_name,last_name,age,sex,region,bmi,smoker,children,charges,insurance_plan," \
             "coverage_start_date,timestamp\n"
    claims_header = "claim_id,patient_id,claim_amount,claim_date,diagnosis_code,procedure_code,claim_status\n"
    _write_landing(settings, "2026-11-20T0500Z", "patients", header +
                   "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-20 05:10:00\n")
    _write_landing(settings, "2026-11-20T0500Z", "claims", claims_header +
                   "C0000001,P0000001,100,2026-11-21,I10,99213,SUBMITTED\n")
    run_job("bronze"), run_job("silver"), run_job("gold")
    # a week later: a new version (bmi changed), a claim after it, and the first claim's status update
    _write_landing(settings, "2026-11-27T0500Z", "patients", header +
                   "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,31.0,false,1,9900.0,GOLD,2025-01-01,2026-11-27 05:10:00\n")
    _write_landing(settings, "2026-11-27T0500Z", "claims", claims_header +
                   "C0000001,P0000001,100,2026-11-21,I10,99213,PAID\n"
                   "C0000002,P0000001,50,2026-11-27,I10,99213,SUBMITTED\n")
    run_job("bronze"), run_job("silver"), run_job("gold")
    dim = sorted(_table(spark, settings, "gold", "patients").collect(), key=lambda r: r.effective_from)
    assert [(r.bmi, r.is_current) for r in dim] == [(25.0, False), (31.0, True)]
    assert dim[0].effective_to == dim[1].effective_from and dim[1].effective_to is None
    facts = {r.claim_id: r for r in _table(spark, settings, "gold", "claims").collect()}
    assert facts["C0000001"].patient_key == dim[0].patient_key and facts["C0000001"].claim_status == "PAID"
    assert facts["C0000002"].patient_key == dim[1].patient_key
    # the claim keeps its latest status; the earlier one stays traceable in silver's and gold's change data feed
    lake = Lakehouse(spark, settings)
    for table in (settings.table_name("silver", "claims"), settings.table_name("gold", "claims")):
        trail = (lake.read_changes(table, 0, lake.version(table)).filter("claim_id = 'C0000001'")
                 .filter(F.col("_change_type").isin("insert", "update_postimage"))
                 .orderBy("_commit_version").select("claim_status").collect())
        assert [r.claim_status for r in trail] == ["SUBMITTED", "PAID"], table
    # re-running gold changes nothing
    before = sorted(map(tuple, _table(spark, settings, "gold", "claims").drop("_updated_at").collect()))
    run_job("gold")
    assert sorted(map(tuple, _table(spark, settings, "gold", "claims").drop("_updated_at").collect())) == before


def test_quarantine_catches_every_injected_defect_and_nothing_else(run_job, spark, settings):
    from medallion.groundtruth import evaluate
    gens = [run_job("generate", "--interval-start", f"2026-11-27T0{h}:00:00Z", "--patients", "1500",
                    "--defect-rate", "0.01") for h in (3, 4)]
    assert gens[1]["changed_rows"]["patients"] > 0 and sum(g["defects"] for g in gens) > 200
    run_job("bronze")
    silver = run_job("silver")
    truth = evaluate(spark, settings)
    assert (truth["recall"], truth["precision"]) == (1.0, 1.0), truth
    assert truth["missed"] == truth["false_positives"] == 0
    assert sum(s["exact_duplicates"] for s in silver["entities"].values()) == truth["duplicates_injected"]


def test_default_defect_rate_keeps_the_quality_score_above_target(run_job, settings):
    run_job("generate", *H5, "--patients", "3000")
    run_job("bronze")
    silver = run_job("silver")
    assert silver["quality_score"] >= settings.quality["target_score"]
    for entity, stats in silver["entities"].items():
        assert stats["quarantined"] > 0, entity  # defects are injected by default ...
        assert stats["quality_score"] >= settings.quality["target_score"], entity  # ... and stay below 0.5 %


def test_a_failing_job_exits_non_zero_with_a_one_line_reason(run_job, capsys):
    summary = run_job("generate", "--interval-start", "yesterday", expect_ok=False)
    assert summary["_exit_code"] == 1 and summary["status"] == "failed"
    assert summary["reason"] == "not an ISO-8601 timestamp: 'yesterday'"
    assert "ERROR: not an ISO-8601 timestamp: 'yesterday'" in capsys.readouterr().err


PATIENTS_HEADER = ("patient_id,first_name,last_name,age,sex,region,bmi,smoker,children,charges,insurance_plan,"
                   "coverage_start_date,timestamp\n")


def test_standardization_types_lenient_booleans_and_numbers_but_never_guesses(run_job, spark, settings):
    _write_landing(settings, "2026-11-27T0500Z", "patients", PATIENTS_HEADER +
                   "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,yes,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
                   "P0000002,Bob,Ray, 41 ,male,northeast,26.5,0,2,100,GOLD,2025-01-01,2026-11-27 05:11:00\n"
                   "P0000003,Cy,Oh,42,MALE,NORTHEAST,27.0,perhaps,0,100,GOLD,2025-01-01,2026-11-27 05:12:00\n"
                   "P0000004,Di,Ng,43,FEMALE,SOUTHEAST,28.0,N,0,100,GOLD,2025-01-01,2026-11-27 05:13:00,EXTRA\n")
    run_job("bronze")
    st = run_job("silver")["entities"]["patients"]
    assert (st["rescued_resolved"], st["valid"], st["quarantined"]) == (2, 2, 2)
    ok = {r.patient_id: (r.age, r.sex, r.region, r.smoker) for r in _table(spark, settings, "silver", "patients").collect()}
    assert ok == {"P0000001": (40, "FEMALE", "SOUTHWEST", True), "P0000002": (41, "MALE", "NORTHEAST", False)}
    # `perhaps` is not a boolean, and a line with an extra field is not guessed at: both stay rescued
    q = {r.patient_id: list(r._failed_rules) for r in _table(spark, settings, "quarantine", "patients").collect()}
    assert q == {"P0000003": ["no_rescued_data"], "P0000004": ["no_rescued_data"]}


def test_ages_of_89_and_over_are_reported_as_90(run_job, spark, settings):
    _write_landing(settings, "2026-11-27T0500Z", "patients", PATIENTS_HEADER +
                   "P0000001,Ann,Lee,89,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
                   "P0000002,Bob,Ray,104,MALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
                   "P0000003,Cy,Oh,85,MALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n")
    run_job("bronze")
    run_job("silver")
    assert [r.age for r in _table(spark, settings, "silver", "patients").collect()] == [85]
    q = {r.patient_id: (r.age, list(r._failed_rules)) for r in _table(spark, settings, "quarantine", "patients").collect()}
    assert q == {"P0000001": (90, ["valid_age"]), "P0000002": (90, ["valid_age"])}


def test_versions_at_the_same_timestamp_keep_the_most_complete_then_the_latest(run_job, spark, settings):
    ts = "2026-11-27 05:10:00"
    # first arrival: no first name (confidence 10/11)
    _write_landing(settings, "2026-11-27T0500Z", "patients", PATIENTS_HEADER +
                   f"P0000001,,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,{ts}\n")
    run_job("bronze")
    run_job("silver")
    # a later, complete version of the same timestamp wins
    _write_landing(settings, "2026-11-27T0600Z", "patients", PATIENTS_HEADER +
                   f"P0000001,Ann,Lee,40,FEMALE,NORTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,{ts}\n")
    run_job("bronze")
    run_job("silver")
    # an even later but less complete version does not
    _write_landing(settings, "2026-11-27T0700Z", "patients", PATIENTS_HEADER +
                   f"P0000001,Ann,,40,FEMALE,SOUTHEAST,25.0,false,1,9000.5,GOLD,2025-01-01,{ts}\n")
    run_job("bronze")
    summary = run_job("silver")
    [row] = _table(spark, settings, "silver", "patients").collect()
    assert (row.region, row._confidence) == ("NORTHWEST", 1.0)
    runs = Lakehouse(spark, settings).read(summary["runs_table"].split(".")[-1]).collect()
    assert len(runs) == 9 and {r.entity for r in runs} == {"patients", "claims", "medical_events"}
    last = [r for r in runs if r.run_id == summary["run_id"] and r.entity == "patients"][0]
    assert (last.rows_in, last.valid, last.target_score) == (1, 1, 0.995)


def test_hours_taken_in_one_run_keep_the_lineage_separate_runs_keep(run_job, spark, settings):
    """An identical re-send changes nothing in a later run, so the first arrival of the stored values stays its
    lineage; when the same hours reach silver in one run (a backfill), the winner's lineage must be the same."""
    header = "patient_id,first_name,last_name,age,sex,region,bmi,smoker,children,charges,insurance_plan," \
             "coverage_start_date,timestamp\n"
    claims_header = "claim_id,patient_id,claim_amount,claim_date,diagnosis_code,procedure_code,claim_status\n"
    _write_landing(settings, "2026-11-27T1200Z", "patients", header +
                   "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 12:10:00\n")
    statuses = {"2026-11-27T1200Z": ("APPROVED", "PAID"), "2026-11-27T1300Z": ("PAID", "APPROVED"),
                "2026-11-27T1400Z": ("PAID", "PAID")}
    for tag, (first, second) in statuses.items():
        _write_landing(settings, tag, "claims", claims_header + f"C0000001,P0000001,100,2026-11-20,I10,99213,{first}\n"
                       f"C0000002,P0000001,50,2026-11-21,I10,99213,{second}\n")
    run_job("bronze"), run_job("silver")
    got = {r.claim_id: (r.claim_status, r._source_file.split("/")[-2])
           for r in _table(spark, settings, "silver", "claims").collect()}
    # C0000001: PAID first sent at 13:00 (14:00 re-sent it unchanged); C0000002: PAID again at 14:00 after APPROVED
    assert got == {"C0000001": ("PAID", "2026-11-27T1300Z"), "C0000002": ("PAID", "2026-11-27T1400Z")}
