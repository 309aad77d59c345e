"""The monitoring job's measures on small hand-made tables: each test would fail if its measure broke."""

from __future__ import annotations

import numpy as np
import pytest

from medallion import metrics
from medallion.ops import MONITORING

from .conftest import SILVER_PATIENTS, ago


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift():
    base = [0.1] * 10
    assert metrics.psi(base, base) == 0
    small = metrics.psi(base, [0.09, 0.11] * 5)
    large = metrics.psi(base, [0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.2, 0.3, 0.3])
    assert 0 < small < 0.1 < 0.25 < large


def test_volume_band_needs_history_and_widens_with_spread():
    cfg = {"min_history": 3, "band_mads": 4, "min_band_fraction": 0.5}
    assert metrics.volume_band([100, 100], cfg) == (None, None)
    assert metrics.volume_band([100, 100, 100], cfg) == (50.0, 150.0)  # no spread: +-50 % of the median
    low, high = metrics.volume_band([100, 200, 300, 200, 100], cfg)
    assert low == 0.0 and high > 500


def test_quality_scores_and_rule_counts_come_from_silver_run_figures_of_this_window(run_job, tables, settings):
    # earlier silver runs (before the previous monitoring run) only count all-time
    tables.silver_run("s1", "patients", ago(120), 1000, 990, 10, by_rule={"valid_age": 6, "valid_bmi": 4})
    tables.silver_run("s1", "claims", ago(120), 1000, 1000, 0)
    tables.write(
        settings.raw["monitoring"]["tables"]["quality"],
        MONITORING["quality"],
        [("m0", ago(60), "overall", 0, 0, None, 0, 0, None, 0.995, False, "silver_runs")],
    )
    # this window: patients clean; claims with 4 quarantined + 1 expired, 5 released from held
    tables.silver_run("s2", "patients", ago(10), 500, 500, 0)
    tables.silver_run(
        "s2",
        "claims",
        ago(10),
        404,
        400,
        4,
        released=5,
        expired=1,
        by_rule={"valid_claim_amount": 3, "valid_claim_status": 2, "patient_exists": 1},
    )
    tables.quarantine(
        "claims",
        [
            ["valid_claim_amount"],
            ["valid_claim_amount", "valid_claim_status"],
            ["valid_claim_amount"],
            ["valid_claim_status"],
            ["patient_exists"],
        ],
        ago(10),
    )
    tables.quarantine("patients", [["valid_age"]] * 6 + [["valid_bmi"]] * 4, ago(120))

    summary = run_job("monitor", "--run-id", "m1")
    q = summary["quality"]
    assert summary["previous_monitoring_run"] == "m0" and summary["quality_source"] == "silver_runs"
    assert q["patients"] == {"score": 1.0, "total_score": round(1490 / 1500, 6), "valid": 500, "quarantined": 0}
    assert q["claims"]["score"] == round(405 / 410, 6) and (q["claims"]["valid"], q["claims"]["quarantined"]) == (
        405,
        5,
    )
    assert q["overall"]["score"] == round(905 / 910, 6) == summary["quality_score"]
    kinds = {(b["kind"], b["subject"]) for b in summary["breaches"]}
    assert ("quality_score", "claims") in kinds and ("quality_score", "overall") in kinds
    assert ("quality_score", "patients") not in kinds
    assert all(b["new"] for b in summary["breaches"])

    lake = tables.lake
    rules = {
        (r["entity"], r["rule"]): (r["window_rows"], r["total_rows"])
        for r in lake.read(settings.raw["monitoring"]["tables"]["quarantine_rules"]).where("run_id = 'm1'").collect()
    }
    assert rules[("claims", "valid_claim_amount")] == (3, 3)
    assert rules[("claims", "patient_exists")] == (1, 1)
    assert rules[("patients", "valid_age")] == (0, 6)  # quarantined before this window
    stored = lake.read(settings.raw["monitoring"]["tables"]["quality"]).where("run_id = 'm1'")
    assert stored.where("entity = 'claims' AND breach").count() == 1

    # a retry of the same monitoring run replaces its rows; the next run sees these breaches as ongoing
    assert run_job("monitor", "--run-id", "m1")["previous_monitoring_run"] == "m0"
    assert stored.count() == 4
    again = run_job("monitor", "--run-id", "m2")
    assert again["previous_monitoring_run"] == "m1"
    assert again["quality"]["claims"]["score"] is None  # no silver run since m1
    assert not any(b["kind"] == "quality_score" for b in again["breaches"])
    # silver claims rows that never landed in bronze (no bronze tables here): unbalanced in m1 and again in m2
    assert {(b["kind"], b["subject"], b["new"]) for b in again["breaches"] if b["kind"] == "reconciliation"} == {
        ("reconciliation", "patients", True),
        ("reconciliation", "claims", True),
    }
    assert again["reconciliation"] == {"patients": False, "claims": False, "medical_events": None}


def test_quality_falls_back_to_counting_tables_without_silver_run_figures(tables, settings):
    tables.write(
        settings.table_name("silver", "patients"),
        SILVER_PATIENTS,
        [(f"P{i:05d}", 40, 25.0, 9000.0, ago(5), "s1") for i in range(99)],
    )
    tables.quarantine("patients", [["valid_age"]], ago(5))
    rows, source = metrics.quality(tables.measure())
    assert source == "tables"
    patients = next(r for r in rows if r["entity"] == "patients")
    assert (patients["valid"], patients["quarantined"], patients["score"]) == (99, 1, 0.99) and patients["breach"]


def test_freshness_compares_the_newest_data_with_the_sla_of_its_layer(tables, settings):
    tables.bronze("patients", {"2026-11-27T0500Z": 3}, ago(30))
    tables.bronze("claims", {"2026-11-27T0500Z": 3}, ago(200))
    tables.quarantine("claims", [["valid_claim_amount"]], ago(5000))
    rows = {r["table_name"]: r for r in metrics.freshness(tables.measure())}
    assert len(rows) == 14  # every bronze, silver, gold, quarantine and held table
    fresh, old = rows["bronze_patients"], rows["bronze_claims"]
    assert 29 <= fresh["age_minutes"] <= 32 and not fresh["stale"] and fresh["sla_minutes"] == 120
    assert 199 <= old["age_minutes"] <= 202 and old["stale"]
    assert rows["silver_patients"]["stale"] and not rows["silver_patients"]["exists"]  # missing = stale
    assert not rows["quarantine_claims"]["stale"] and rows["quarantine_claims"]["sla_minutes"] is None
    breaches = metrics.breaches([], list(rows.values()), [], [], [], settings.raw["monitoring"])
    stale = {b["subject"] for b in breaches if b["kind"] == "stale_table"}
    assert "bronze_claims" in stale and "bronze_patients" not in stale and "quarantine_claims" not in stale


def test_a_batch_outside_the_band_of_the_batches_before_it_is_an_anomaly(tables, settings):
    batches = {f"2026-11-27T{h:02d}00Z": n for h, n in enumerate([100, 104, 98, 101, 99, 30])}
    tables.bronze("patients", batches, ago(5))
    rows = [r for r in metrics.volumes(tables.measure()) if r["table_name"] == "bronze_patients"]
    assert [r["rows"] for r in rows] == [100, 104, 98, 101, 99, 30]
    assert [r["anomaly"] for r in rows] == [False] * 5 + [True]
    assert rows[0]["band_low"] is None and rows[-1]["history_batches"] == 5 and rows[-1]["latest"]
    found = metrics.breaches([], [], rows, [], [], settings.raw["monitoring"])
    assert [(b["kind"], b["key"]) for b in found] == [("volume", "volume:bronze_patients:2026-11-27T0500Z")]


def test_drift_captures_a_baseline_then_flags_a_shifted_distribution(tables, settings):
    rng = np.random.default_rng(7)
    table = settings.table_name("silver", "patients")

    def patients(n, age_mu, when, tag):
        return [
            (
                f"{tag}{i:05d}",
                int(np.clip(rng.normal(age_mu, 15), 18, 85)),
                float(rng.normal(28, 6)),
                float(rng.lognormal(9, 0.5)),
                when,
                tag,
            )
            for i in range(n)
        ]

    tables.write(table, SILVER_PATIENTS, patients(400, 45, ago(3 * 24 * 60), "old"))
    rows, captured = metrics.drift(tables.measure(), {})
    by_col = {r["column_name"]: r for r in rows}
    assert {c["column_name"] for c in captured} == {"age", "bmi", "charges"}
    assert by_col["age"]["status"] == "insufficient_data"  # nothing processed in the last 24 h
    assert by_col["claim_amount"]["status"] == "no_data"  # no silver_claims yet
    age_base = next(c for c in captured if c["column_name"] == "age")
    assert len(age_base["proportions"]) == len(age_base["edges"]) + 1 and abs(sum(age_base["proportions"]) - 1) < 1e-9

    tables.write(table, SILVER_PATIENTS, patients(400, 65, ago(10), "new"))  # older patients this window
    baselines = {c["column_name"]: c for c in captured}
    rows, captured = metrics.drift(tables.measure(), baselines)
    by_col = {r["column_name"]: r for r in rows}
    assert captured == []
    assert by_col["age"]["psi"] >= 0.25 and by_col["age"]["status"] == "drift" and by_col["age"]["breach"]
    assert by_col["bmi"]["psi"] < 0.1 and by_col["bmi"]["status"] == "ok"
    assert by_col["age"]["rows_current"] == 400 and by_col["age"]["rows_baseline"] == 400
    found = metrics.breaches([], [], [], rows, [], settings.raw["monitoring"])
    assert [b["subject"] for b in found] == ["silver_patients.age"]


def test_reconciliation_balances_landed_rows_and_flags_a_persisting_mismatch(tables, settings):
    tables.bronze("patients", {"2026-11-27T0500Z": 100}, ago(30))
    tables.bronze("patients", {"2026-11-27T0600Z": 7}, ago(1), run_id="bronze_2")  # after silver ran: backlog
    tables.silver_run("s1", "patients", ago(20), 100, 90, 5, dups=3, held=2)
    tables.bronze("claims", {"2026-11-27T0500Z": 50}, ago(30))
    tables.silver_run("s1", "claims", ago(20), 48, 45, 1, dups=1, held=1)  # two landed rows unaccounted for

    rows = {r["entity"]: r for r in metrics.reconciliation(tables.measure(), {})}
    p, c = rows["patients"], rows["claims"]
    assert (p["landed"], p["valid"], p["quarantined"], p["duplicates"], p["held"]) == (100, 90, 5, 3, 2)
    assert p["balanced"] and p["backlog"] == 7 and p["difference"] == 0 and not p["breach"]
    assert c["balanced"] is False and c["difference"] == 2 and not c["breach"]  # first sighting: may be a race
    rows = {r["entity"]: r for r in metrics.reconciliation(tables.measure(), {"claims": False})}
    assert rows["claims"]["breach"]
    found = metrics.breaches([], [], [], [], list(rows.values()), settings.raw["monitoring"])
    assert [(b["kind"], b["subject"]) for b in found] == [("reconciliation", "claims")]
    assert "landed 50" in found[0]["detail"] and "valid 45" in found[0]["detail"]


def test_audit_counts_change_data_feed_writes_per_table_and_writer_run(tables, settings):
    tables.bronze("patients", {"2026-11-27T0500Z": 3}, ago(30), run_id="bronze_a")
    tables.bronze("patients", {"2026-11-27T0600Z": 2}, ago(20), run_id="bronze_b")
    rows = [r for r in metrics.audit(tables.measure(), {}) if r["table_name"] == "bronze_patients"]
    assert {r["writer_run_id"]: r["inserts"] for r in rows} == {"bronze_a": 3, "bronze_b": 2}
    assert all(r["commits"] == 3 and r["from_version"] == 0 and r["to_version"] == 2 for r in rows)
    assert rows[0]["operations"]["WRITE"] == 2
    tables.lake.delete("bronze_patients", "row_key = '2026-11-27T0500Z-0'")
    rows = [r for r in metrics.audit(tables.measure(), {"bronze_patients": 2}) if r["table_name"] == "bronze_patients"]
    assert [(r["from_version"], r["to_version"], r["commits"], r["deletes"], r["inserts"]) for r in rows] == [
        (3, 3, 1, 1, 0)
    ]
    rows = [r for r in metrics.audit(tables.measure(), {"bronze_patients": 3}) if r["table_name"] == "bronze_patients"]
    assert [(r["commits"], r["inserts"]) for r in rows] == [(0, 0)]  # nothing written since


@pytest.mark.parametrize("layer", ["bronze", "silver", "gold"])
def test_every_domain_layer_has_a_freshness_sla_in_config(settings, layer):
    cfg = settings.raw["monitoring"]["freshness"]
    assert cfg["sla_minutes"][layer] > 0 and cfg["timestamp_columns"][layer].startswith("_")
