"""Silver through the jobs' real code on small hand-made landing files: standardization, validation, quarantine with
every failed rule, held rows, version conflicts, lineage and the run figures."""

from __future__ import annotations

from helpers import CLAIMS_HEADER, H5, PATIENTS_HEADER, header, table, write_landing

from medallion.lakehouse import Lakehouse


def test_bad_rows_are_quarantined_with_every_rule_they_fail(run_job, spark, settings):
    rows = {
        "patients": [
            "P0000001,Ann,Lee,40, female ,southwest,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00",
            "P0000002,Bob,Ray,200,X,SOUTHWEST,25.0,false,1,-5,GOLD,2025-01-01,2026-11-27 05:11:00",
            "P1,Cy,Oh,30,MALE,NORTHEAST,25.0,false,1,100,GOLD,2025-01-01,2026-11-27 05:12:00",
            "P0000001,Ann,Lee,40, female ,southwest,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00",
        ],
        "claims": [
            "C0000001,P0000001,120.5,2026-11-01,I10,99213,approved",
            "C0000002,P9999999,80.0,2026-11-02,I10,99213,PAID",
            "C0000003,P0000001,0,2026-11-03,I10,99213,PAID",
        ],
        "medical_events": ["E0000001,P0000001,2026-11-01,LAB_TEST,Valley Lab Services"],
    }
    for entity, lines in rows.items():
        write_landing(settings, "2026-11-27T0500Z", entity, header(entity) + "".join(f"{line}\n" for line in lines))
    run_job("bronze")
    s = run_job("silver")["entities"]
    assert (
        s["patients"]["rows_in"],
        s["patients"]["exact_duplicates"],
        s["patients"]["valid"],
        s["patients"]["quarantined"],
    ) == (4, 1, 1, 2)
    assert s["patients"]["quarantined_by_rule"] == {
        "valid_age": 1,
        "valid_sex": 1,
        "valid_charges": 1,
        "valid_patient_id": 1,
    }
    ok = table(spark, settings, "silver", "patients").collect()
    assert [(r.patient_id, r.sex, r.region) for r in ok] == [("P0000001", "FEMALE", "SOUTHWEST")]
    q = {r.patient_id: sorted(r._failed_rules) for r in table(spark, settings, "quarantine", "patients").collect()}
    assert q == {"P0000002": ["valid_age", "valid_charges", "valid_sex"], "P1": ["valid_patient_id"]}
    qc = {r.claim_id: list(r._failed_rules) for r in table(spark, settings, "quarantine", "claims").collect()}
    assert qc == {"C0000003": ["valid_claim_amount"]}
    # a claim whose patient has not arrived is held, not quarantined
    assert [r.claim_id for r in table(spark, settings, "held", "claims").collect()] == ["C0000002"]
    # reconciliation: every landed row is in silver, in quarantine, held, or counted as a duplicate
    for entity, stats in s.items():
        assert stats["rows_in"] == stats["valid"] + stats["quarantined"] + stats["exact_duplicates"] + stats["held"], (
            entity
        )


def test_claims_whose_patient_arrives_a_batch_later_are_held_then_released(run_job, spark, settings, monkeypatch):
    write_landing(
        settings,
        "2026-11-27T0400Z",
        "claims",
        CLAIMS_HEADER + "C0000001,P0000001,120.5,2026-11-01,I10,99213,approved\n"
        "C0000002,P0000002,80.0,2026-11-02,I10,99213,PAID\n",
    )
    run_job("bronze")
    first = run_job("silver")["entities"]["claims"]
    assert (first["held"], first["valid"], first["quarantined"]) == (2, 0, 0)
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "patients",
        PATIENTS_HEADER
        + "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n",
    )
    run_job("bronze")
    second = run_job("silver")
    assert second["entities"]["claims"]["released"] == 1 and second["held_rows"]["claims"] == 1
    assert [r.claim_id for r in table(spark, settings, "silver", "claims").collect()] == ["C0000001"]
    # past the grace period the orphan is quarantined with the referential-integrity rule
    monkeypatch.setenv("MEDALLION_ORPHAN_GRACE_HOURS", "0")
    third = run_job("silver")
    assert third["entities"]["claims"]["expired_to_quarantine"] == 1 and third["held_rows"]["claims"] == 0
    assert [(r.claim_id, list(r._failed_rules)) for r in table(spark, settings, "quarantine", "claims").collect()] == [
        ("C0000002", ["patient_exists"])
    ]


def test_quarantine_catches_every_injected_defect_and_nothing_else(run_job, spark, settings):
    from medallion.groundtruth import evaluate

    gens = [
        run_job(
            "generate", "--interval-start", f"2026-11-27T0{h}:00:00Z", "--patients", "1500", "--defect-rate", "0.01"
        )
        for h in (3, 4)
    ]
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


def test_standardization_types_lenient_booleans_and_numbers_but_never_guesses(run_job, spark, settings):
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "patients",
        PATIENTS_HEADER + "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,yes,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
        "P0000002,Bob,Ray, 41 ,male,northeast,26.5,0,2,100,GOLD,2025-01-01,2026-11-27 05:11:00\n"
        "P0000003,Cy,Oh,42,MALE,NORTHEAST,27.0,perhaps,0,100,GOLD,2025-01-01,2026-11-27 05:12:00\n"
        "P0000004,Di,Ng,43,FEMALE,SOUTHEAST,28.0,N,0,100,GOLD,2025-01-01,2026-11-27 05:13:00,EXTRA\n",
    )
    run_job("bronze")
    st = run_job("silver")["entities"]["patients"]
    assert (st["rescued_resolved"], st["valid"], st["quarantined"]) == (2, 2, 2)
    ok = {
        r.patient_id: (r.age, r.sex, r.region, r.smoker) for r in table(spark, settings, "silver", "patients").collect()
    }
    assert ok == {"P0000001": (40, "FEMALE", "SOUTHWEST", True), "P0000002": (41, "MALE", "NORTHEAST", False)}
    # `perhaps` is not a boolean, and a line with an extra field is not guessed at: both stay rescued
    q = {r.patient_id: list(r._failed_rules) for r in table(spark, settings, "quarantine", "patients").collect()}
    assert q == {"P0000003": ["no_rescued_data"], "P0000004": ["no_rescued_data"]}


def test_values_that_do_not_convert_are_quarantined_with_their_rule_also_with_ansi_mode_on(run_job, spark, settings):
    """Databricks serverless runs with ANSI mode on, where a plain cast of a bad value fails the whole query (and
    quotes the value in its error): every parse of a landed value is a `try_` one, so the run goes on and each row
    lands in quarantine with the rule its value fails."""
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "patients",
        PATIENTS_HEADER
        + "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-02-30,2026-11-27 05:10:00\n"
        "P0000002,Bob,Ray,40,MALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,soon\n"
        "P0000003,Cy,Oh,forty,MALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
        "P0000004,Di,Ng,41,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n",
    )
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "claims",
        CLAIMS_HEADER + "C0000001,P0000004,12.5x,2026-11-01,I10,99213,PAID\n"
        "C0000002,P0000004,80.0,2026-11-31,I10,99213,PAID\n"
        "C0000003,P0000004,80.0,2026-11-02,I10,99213,PAID\n",
    )
    spark.conf.set("spark.sql.ansi.enabled", "true")
    try:
        run_job("bronze")
        silver = run_job("silver")["entities"]
    finally:
        spark.conf.unset("spark.sql.ansi.enabled")
    assert [(silver[e]["valid"], silver[e]["quarantined"]) for e in ("patients", "claims")] == [(1, 3), (1, 2)]
    q = {
        e: {r[0]: sorted(r._failed_rules) for r in table(spark, settings, "quarantine", e).collect()}
        for e in ("patients", "claims")
    }
    assert q == {
        "patients": {
            "P0000001": ["valid_coverage_start_date"],  # 30 February
            "P0000002": ["valid_record_timestamp"],  # "soon"
            "P0000003": ["no_rescued_data", "valid_age"],  # "forty": the CSV reader rescued it, silver cannot type it
        },
        "claims": {"C0000001": ["no_rescued_data", "valid_claim_amount"], "C0000002": ["valid_claim_date"]},
    }


def test_ages_of_89_and_over_are_reported_as_90(run_job, spark, settings):
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "patients",
        PATIENTS_HEADER
        + "P0000001,Ann,Lee,89,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
        "P0000002,Bob,Ray,104,MALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
        "P0000003,Cy,Oh,85,MALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n",
    )
    run_job("bronze")
    run_job("silver")
    assert [r.age for r in table(spark, settings, "silver", "patients").collect()] == [85]
    q = {
        r.patient_id: (r.age, list(r._failed_rules)) for r in table(spark, settings, "quarantine", "patients").collect()
    }
    assert q == {"P0000001": (90, ["valid_age"]), "P0000002": (90, ["valid_age"])}


def test_versions_at_the_same_timestamp_keep_the_most_complete_then_the_latest(run_job, spark, settings):
    ts = "2026-11-27 05:10:00"
    # first arrival: no first name (confidence 10/11)
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "patients",
        PATIENTS_HEADER + f"P0000001,,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,{ts}\n",
    )
    run_job("bronze")
    run_job("silver")
    # a later, complete version of the same timestamp wins
    write_landing(
        settings,
        "2026-11-27T0600Z",
        "patients",
        PATIENTS_HEADER + f"P0000001,Ann,Lee,40,FEMALE,NORTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,{ts}\n",
    )
    run_job("bronze")
    run_job("silver")
    # an even later but less complete version does not
    write_landing(
        settings,
        "2026-11-27T0700Z",
        "patients",
        PATIENTS_HEADER + f"P0000001,Ann,,40,FEMALE,SOUTHEAST,25.0,false,1,9000.5,GOLD,2025-01-01,{ts}\n",
    )
    run_job("bronze")
    summary = run_job("silver")
    [row] = table(spark, settings, "silver", "patients").collect()
    assert (row.region, row._confidence) == ("NORTHWEST", 1.0)
    runs = Lakehouse(spark, settings).read(summary["runs_table"].split(".")[-1]).collect()
    assert len(runs) == 9 and {r.entity for r in runs} == {"patients", "claims", "medical_events"}
    last = [r for r in runs if r.run_id == summary["run_id"] and r.entity == "patients"][0]
    assert (last.rows_in, last.valid, last.target_score) == (1, 1, 0.995)


def test_hours_taken_in_one_run_keep_the_lineage_separate_runs_keep(run_job, spark, settings):
    """An identical re-send changes nothing in a later run, so the first arrival of the stored values stays its
    lineage; when the same hours reach silver in one run (a backfill), the winner's lineage must be the same."""
    write_landing(
        settings,
        "2026-11-27T1200Z",
        "patients",
        PATIENTS_HEADER
        + "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 12:10:00\n",
    )
    statuses = {
        "2026-11-27T1200Z": ("APPROVED", "PAID"),
        "2026-11-27T1300Z": ("PAID", "APPROVED"),
        "2026-11-27T1400Z": ("PAID", "PAID"),
    }
    for tag, (first, second) in statuses.items():
        write_landing(
            settings,
            tag,
            "claims",
            CLAIMS_HEADER + f"C0000001,P0000001,100,2026-11-20,I10,99213,{first}\n"
            f"C0000002,P0000001,50,2026-11-21,I10,99213,{second}\n",
        )
    run_job("bronze"), run_job("silver")
    got = {
        r.claim_id: (r.claim_status, r._source_file.split("/")[-2])
        for r in table(spark, settings, "silver", "claims").collect()
    }
    # C0000001: PAID first sent at 13:00 (14:00 re-sent it unchanged); C0000002: PAID again at 14:00 after APPROVED
    assert got == {"C0000001": ("PAID", "2026-11-27T1300Z"), "C0000002": ("PAID", "2026-11-27T1400Z")}


def test_contracts_quarantine_non_finite_implausible_and_unlisted_values_and_warn_on_outliers(run_job, spark, settings):
    """Hand-made rows of the classes the generator's own catalog missed: NaN / Infinity, a record stamped decades
    ahead, a plan outside the list, a negative count, an absurd amount; an outlier is kept and warned."""
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "patients",
        PATIENTS_HEADER
        + "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,NaN,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
        "P0000002,Bob,Ray,41,MALE,NORTHEAST,25.0,false,1,Inf,GOLD,2025-01-01,2026-11-27 05:10:00\n"
        "P0000003,Cy,Oh,42,MALE,NORTHEAST,25.0,false,-2,100,DIAMOND,2025-01-01,2061-01-01 00:00:00\n"
        "P0000004,Di,Ng,82,FEMALE,SOUTHEAST,25.0,false,0,9000.5,HMO,2025-01-01,2026-11-27 05:10:00\n"
        "P0000005,Zed,McTest,50,MALE,SOUTHEAST,25.0,false,0,9000.5,HMO,2025-01-01,2026-11-27 05:10:00\n",
    )
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "claims",
        CLAIMS_HEADER + "C0000001,P0000004,-Infinity,2026-11-01,I10,99213,PAID\n"
        "C0000002,P0000004,99999999,2026-11-01,I10,99213,PAID\n"
        "C0000003,P0000004,80.25,2026-11-01,E11.9,J1100,PAID\n"
        "C0000004,P0000004,80.25,2026-11-01,e119,99213,PAID\n"  # as an X12 837 sends it
        "C0000005,P0000004,80.25,2026-11-01,E11,99213,PAID\n"  # a heading, not a billable code
        "C0000006,P0000004,80.25,2026-11-01,E1,99213,PAID\n",
    )
    run_job("bronze")
    s = run_job("silver")["entities"]
    q = {r.patient_id: sorted(r._failed_rules) for r in table(spark, settings, "quarantine", "patients").collect()}
    assert q == {
        "P0000001": ["finite_bmi"],
        "P0000002": ["finite_charges"],
        "P0000003": ["valid_children", "valid_insurance_plan", "valid_record_timestamp"],
        "P0000005": ["potential_test_patient"],  # judged on the name, kept only as its token
    }
    [kept] = table(spark, settings, "silver", "patients").collect()
    assert (kept.patient_id, list(kept._warnings)) == ("P0000004", ["typical_age"])
    assert s["patients"]["warned_by_rule"] == {"typical_age": 1} and s["patients"]["valid"] == 1
    qc = {r.claim_id: sorted(r._failed_rules) for r in table(spark, settings, "quarantine", "claims").collect()}
    assert qc == {
        "C0000001": ["finite_claim_amount"],
        "C0000002": ["valid_claim_amount"],
        "C0000005": ["known_diagnosis_code"],
        "C0000006": ["valid_diagnosis_code"],
    }
    ok = {
        r.claim_id: (r.diagnosis_code, r.procedure_code) for r in table(spark, settings, "silver", "claims").collect()
    }
    assert ok == {"C0000003": ("E11.9", "J1100"), "C0000004": ("E11.9", "99213")}


def test_dates_older_than_parquet_writes_alike_are_quarantined_under_the_runtimes_default_rebase_mode(
    run_job, spark, settings
):
    """A date before 1582 or a timestamp before 1900 fails a Parquet write under Spark 3's default rebase mode
    (EXCEPTION), which a serverless job cannot change: such a row is quarantined with its rule and the run succeeds,
    the value null in quarantine and as it landed in bronze. The session keeps Spark's default, as a runtime would."""
    assert spark.conf.get("spark.sql.parquet.datetimeRebaseModeInWrite") == "EXCEPTION"
    assert spark.conf.get("spark.sql.parquet.int96RebaseModeInWrite") == "EXCEPTION"
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "patients",
        PATIENTS_HEADER
        + "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
        "P0000002,Bob,Ray,41,MALE,NORTHEAST,25.0,false,1,100.0,GOLD,1200-01-01,1850-06-01 00:00:00\n",
    )
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "claims",
        CLAIMS_HEADER + "C0000001,P0000001,80.25,1500-03-01,E11.9,99213,PAID\n"
        "C0000002,P0000001,80.25,2026-11-01,E11.9,99213,PAID\n",
    )
    run_job("bronze")
    s = run_job("silver")["entities"]
    q = {r.patient_id: r for r in table(spark, settings, "quarantine", "patients").collect()}
    assert sorted(q["P0000002"]._failed_rules) == ["valid_coverage_start_date", "valid_record_timestamp"]
    assert (q["P0000002"].coverage_start_date, q["P0000002"].record_ts) == (None, None)
    [qc] = table(spark, settings, "quarantine", "claims").collect()
    assert (qc.claim_id, list(qc._failed_rules), qc.claim_date) == ("C0000001", ["valid_claim_date"], None)
    assert [r.claim_id for r in table(spark, settings, "silver", "claims").collect()] == ["C0000002"]
    bronze = {r.claim_id: r.claim_date for r in table(spark, settings, "bronze", "claims").collect()}
    assert bronze["C0000001"] == "1500-03-01"
    assert (s["patients"]["quarantined"], s["claims"]["quarantined"], s["claims"]["valid"]) == (1, 1, 1)


def test_a_fail_level_rule_stops_the_run_before_the_batch_writes_anything(
    run_job, spark, settings, tmp_path, monkeypatch
):
    import yaml

    write_landing(
        settings,
        "2026-11-27T0500Z",
        "patients",
        PATIENTS_HEADER
        + "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
        "P0000002,Bob,Ray,200,MALE,NORTHEAST,25.0,false,1,100,GOLD,2025-01-01,2026-11-27 05:10:00\n",
    )
    run_job("bronze", "--entities", "patients")
    raw = yaml.safe_load((settings.root / "include" / "pipeline.yaml").read_text())
    raw["quality"]["rules"]["patients"]["no_ann"] = {
        "expr": "first_name_token IS NULL OR age <> 40",
        "severity": "fail",
    }
    strict = tmp_path / "pipeline.yaml"
    strict.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MEDALLION_CONFIG", str(strict))
    failed = run_job("silver", "--entities", "patients", expect_ok=False)
    assert failed["_exit_code"] == 1
    assert failed["reason"] == (
        "silver patients: 1 row(s) failed fail-level rule(s) no_ann; nothing of the batch was written"
    )
    for layer in ("silver", "quarantine"):
        assert table(spark, settings, layer, "patients").count() == 0, layer
    # the rule withdrawn, the same bronze rows are judged again (the checkpoint did not move)
    monkeypatch.delenv("MEDALLION_CONFIG")
    again = run_job("silver", "--entities", "patients")["entities"]["patients"]
    assert (again["rows_in"], again["valid"], again["quarantined"]) == (2, 1, 1)


def test_after_a_rule_change_quarantine_is_revalidated_and_a_full_refresh_rejudges_bronze(
    run_job, spark, settings, tmp_path, monkeypatch
):
    import yaml

    write_landing(
        settings,
        "2026-11-27T0500Z",
        "patients",
        PATIENTS_HEADER
        + "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-27 05:10:00\n"
        "P0000002,Bob,Ray,41,MALE,NORTHEAST,25.0,false,1,100,DIAMOND,2025-01-01,2026-11-27 05:10:00\n"
        "P0000003,Cy,Oh,200,MALE,NORTHEAST,25.0,false,1,100,DIAMOND,2025-01-01,2026-11-27 05:10:00\n",
    )
    run_job("bronze", "--entities", "patients")
    first = run_job("silver", "--entities", "patients")
    v1 = first["rule_catalog_version"]
    stamped = {r.patient_id: r._rule_version for r in table(spark, settings, "silver", "patients").collect()}
    assert stamped == {"P0000001": v1}
    q = {r.patient_id: r._rule_version for r in table(spark, settings, "quarantine", "patients").collect()}
    assert q == {"P0000002": v1, "P0000003": v1}
    # the plan list gains DIAMOND: P0000002 now passes, P0000003 still fails its age
    raw = yaml.safe_load((settings.root / "include" / "pipeline.yaml").read_text())
    raw["quality"]["vocabularies"]["insurance_plan"] = [*raw["generator"]["insurance_plans"], "DIAMOND"]
    wider = tmp_path / "pipeline.yaml"
    wider.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MEDALLION_CONFIG", str(wider))
    second = run_job("silver", "--entities", "patients", "--revalidate-quarantine", "true")
    v2 = second["rule_catalog_version"]
    assert v2 != v1
    assert second["entities"]["patients"]["revalidation"] == {
        "revalidated": 2,
        "released": 1,
        "held": 0,
        "still_quarantined": 1,
    }
    stamped = {r.patient_id: r._rule_version for r in table(spark, settings, "silver", "patients").collect()}
    assert stamped == {"P0000001": v1, "P0000002": v2}
    q = {
        r.patient_id: (r._rule_version, list(r._failed_rules))
        for r in table(spark, settings, "quarantine", "patients").collect()
    }
    assert q == {"P0000003": (v2, ["valid_age"])}
    # back to the original rules, the whole of bronze judged again
    monkeypatch.delenv("MEDALLION_CONFIG")
    third = run_job("silver", "--entities", "patients", "--full-refresh", "true")["entities"]["patients"]
    assert (third["rows_in"], third["valid"], third["quarantined"]) == (3, 1, 2)
    assert {r.patient_id: r._rule_version for r in table(spark, settings, "silver", "patients").collect()} == {
        "P0000001": v1
    }
    q = {r.patient_id: sorted(r._failed_rules) for r in table(spark, settings, "quarantine", "patients").collect()}
    assert q == {"P0000002": ["valid_insurance_plan"], "P0000003": ["valid_age", "valid_insurance_plan"]}


def test_rescued_values_resolve_alike_from_a_line_and_from_auto_loader_or_local_json(spark):
    """Bronze rescues data in two shapes: the local line reader keeps the whole line; Auto Loader (and the local
    by-name reader) keep JSON of the values that did not fit, Auto Loader with the file in `_file_path`. Silver types
    what it can the same way from each, and guesses at nothing in either."""
    from pyspark.sql.types import StringType, StructField, StructType

    from medallion.schemas import RESCUED, source_schema
    from medallion.silver import resolve_rescued

    schema = StructType([*source_schema("patients").fields, StructField(RESCUED, StringType())])
    values = ["P0000001", "Ann", "Lee", 40, "FEMALE", "SOUTHWEST", 25.0, None, 1, 9000.5, "GOLD", "2025-01-01", "t"]
    line = "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,yes,1,9000.5,GOLD,2025-01-01,line"  # (named by its timestamp)
    path = '"_file_path":"dbfs:/Volumes/dev/data_eng/landing/2026-11-27T0500Z/patients.csv"'
    rows = {
        "line": line,
        "local json": '{"smoker":"yes"}',
        "auto loader json": '{"smoker":"yes",' + path + "}",
        "auto loader, name as in the header": '{" Smoker ":"Yes",' + path + "}",
        "not a boolean": '{"smoker":"perhaps",' + path + "}",
        "an extra column": '{"smoker":"yes","loyalty":"gold",' + path + "}",
        "an unreadable record": '{"_corrupt_record":"P0000001,\\"Ann",' + path + "}",
        "a line with an extra field": line + ",EXTRA",
        "only the file": "{" + path + "}",
    }
    df = spark.createDataFrame([(*values[:-1], name, rescued) for name, rescued in rows.items()], schema)
    got = {
        r["timestamp"]: (r["smoker"], r[RESCUED] is None, r["_rescue_resolved"])
        for r in resolve_rescued("patients", df).collect()
    }
    resolved = (True, True, True)
    assert got == {
        "line": resolved,
        "local json": resolved,
        "auto loader json": resolved,
        "auto loader, name as in the header": resolved,
        "not a boolean": (None, False, False),
        "an extra column": (None, False, False),
        "an unreadable record": (None, False, False),
        "a line with an extra field": (None, False, False),
        "only the file": (None, False, False),
    }
