"""Gold: SCD2 history (new and out-of-order versions), point-in-time fact keys, the change data feed trail, and the
metric views, against independently computed truth."""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest
from helpers import CLAIMS_HEADER, PATIENTS_HEADER, table, write_landing
from pyspark.sql import functions as F

from medallion import views
from medallion.lakehouse import Lakehouse

# the attributes whose change makes a new dim version (names compared in clear here, tokens in gold)
TRACKED = [
    "first_name",
    "last_name",
    "age",
    "sex",
    "region",
    "bmi",
    "smoker",
    "children",
    "charges",
    "insurance_plan",
    "coverage_start_date",
]


def _patient(ts: str, bmi: float) -> str:
    return f"P0000007,Ann,Lee,40,FEMALE,SOUTHWEST,{bmi},false,1,9000.5,GOLD,2025-01-01,{ts}\n"


def _cycle(run_job):
    run_job("bronze"), run_job("silver"), run_job("gold")


def test_scd2_new_version_splits_history_and_facts_follow_the_date(run_job, spark, settings):
    write_landing(
        settings,
        "2026-11-20T0500Z",
        "patients",
        PATIENTS_HEADER
        + "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,25.0,false,1,9000.5,GOLD,2025-01-01,2026-11-20 05:10:00\n",
    )
    write_landing(
        settings, "2026-11-20T0500Z", "claims", CLAIMS_HEADER + "C0000001,P0000001,100,2026-11-21,I10,99213,SUBMITTED\n"
    )
    run_job("bronze"), run_job("silver"), run_job("gold")
    # a week later: a new version (bmi changed), a claim after it, and the first claim's status update
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "patients",
        PATIENTS_HEADER
        + "P0000001,Ann,Lee,40,FEMALE,SOUTHWEST,31.0,false,1,9900.0,GOLD,2025-01-01,2026-11-27 05:10:00\n",
    )
    write_landing(
        settings,
        "2026-11-27T0500Z",
        "claims",
        CLAIMS_HEADER + "C0000001,P0000001,100,2026-11-21,I10,99213,PAID\n"
        "C0000002,P0000001,50,2026-11-27,I10,99213,SUBMITTED\n",
    )
    run_job("bronze"), run_job("silver"), run_job("gold")
    dim = sorted(table(spark, settings, "gold", "patients").collect(), key=lambda r: r.effective_from)
    assert [(r.bmi, r.is_current) for r in dim] == [(25.0, False), (31.0, True)]
    assert dim[0].effective_to == dim[1].effective_from and dim[1].effective_to is None
    facts = {r.claim_id: r for r in table(spark, settings, "gold", "claims").collect()}
    assert facts["C0000001"].patient_key == dim[0].patient_key and facts["C0000001"].claim_status == "PAID"
    assert facts["C0000002"].patient_key == dim[1].patient_key
    # the claim keeps its latest status; the earlier one stays traceable in silver's and gold's change data feed
    lake = Lakehouse(spark, settings)
    for name in (settings.table_name("silver", "claims"), settings.table_name("gold", "claims")):
        trail = (
            lake.read_changes(name, 0, lake.version(name))
            .filter("claim_id = 'C0000001'")
            .filter(F.col("_change_type").isin("insert", "update_postimage"))
            .orderBy("_commit_version")
            .select("claim_status")
            .collect()
        )
        assert [r.claim_status for r in trail] == ["SUBMITTED", "PAID"], name
    # re-running gold changes nothing
    before = sorted(map(tuple, table(spark, settings, "gold", "claims").drop("_updated_at").collect()))
    run_job("gold")
    assert sorted(map(tuple, table(spark, settings, "gold", "claims").drop("_updated_at").collect())) == before


def test_a_gold_run_with_no_new_silver_rows_skips_without_starting_spark(run_job, spark, settings, monkeypatch):
    """The hourly safety-net run after the asset-triggered one: nothing new in silver, so no Spark, no commit."""
    from medallion import gold, session
    from medallion.cli import JobContext, build_parser

    write_landing(settings, "2026-11-20T0500Z", "patients", PATIENTS_HEADER + _patient("2026-11-20 05:00:00", 25.0))
    _cycle(run_job)
    lake = Lakehouse(spark, settings)
    versions = {e: lake.version(settings.table_name("gold", e)) for e in ("patients", "claims", "medical_events")}
    assert run_job("gold")["skipped"] == "no new rows in silver since the last run"
    assert {e: lake.version(settings.table_name("gold", e)) for e in versions} == versions

    def no_spark(*_a, **_k):
        raise AssertionError("Spark was started")

    with monkeypatch.context() as patched:
        patched.setattr(session, "get_spark", no_spark)
        args = build_parser("gold", gold.add_arguments).parse_args([])
        ctx = JobContext(job="gold", settings=settings, args=args, run_id="r", interval_start=None, interval_end=None)
        assert gold.idle(ctx) == "no new rows in silver since the last run"
        full = build_parser("gold", gold.add_arguments).parse_args(["--full-refresh", "true"])
        assert gold.idle(JobContext("gold", settings, full, "r", None, None)) is None  # a full refresh always runs

    # new silver rows: the next run builds them
    write_landing(settings, "2026-11-21T0500Z", "patients", PATIENTS_HEADER + _patient("2026-11-21 05:00:00", 27.0))
    run_job("bronze"), run_job("silver")
    summary = run_job("gold")
    assert "skipped" not in summary and summary["dim_versions"][1] > summary["dim_versions"][0]


def test_an_out_of_order_version_is_cut_into_its_place_and_facts_follow(run_job, spark, settings):
    write_landing(
        settings,
        "2026-11-20T0500Z",
        "patients",
        PATIENTS_HEADER + _patient("2026-11-01 05:00:00", 25.0) + _patient("2026-11-20 05:00:00", 31.0),
    )
    write_landing(
        settings,
        "2026-11-20T0500Z",
        "claims",
        CLAIMS_HEADER
        + "C0000001,P0000007,100,2026-11-05,I10,99213,PAID\n"
        + "C0000002,P0000007,80,2026-11-12,I10,99213,DENIED\n"
        + "C0000003,P0000007,60,2026-11-21,I10,99213,PAID\n"
        + "C0000004,P0000007,40,2026-10-01,I10,99213,PAID\n"  # dated before every version: gets the first
        + "C0000005,P0000007,20,2026-11-27,I10,99213,PAID\n",
    )
    _cycle(run_job)
    # a week later, a version stamped 2026-11-10 arrives — between the two known ones —, one stamped 2026-10-15 —
    # before all of them: no known interval changes, yet the claim of 10-01 now belongs to it — and an identical re-send
    write_landing(settings, "2026-11-27T0500Z", "patients", PATIENTS_HEADER + _patient("2026-11-10 05:00:00", 28.0))
    write_landing(settings, "2026-11-27T0530Z", "patients", PATIENTS_HEADER + _patient("2026-10-15 05:00:00", 22.0))
    write_landing(settings, "2026-11-27T0600Z", "patients", PATIENTS_HEADER + _patient("2026-11-20 05:00:00", 31.0))
    _cycle(run_job)

    dim = sorted(table(spark, settings, "gold", "patients").collect(), key=lambda r: r.effective_from)
    assert [(r.bmi, str(r.effective_from), str(r.effective_to), r.is_current) for r in dim] == [
        (22.0, "2026-10-15 05:00:00", "2026-11-01 05:00:00", False),
        (25.0, "2026-11-01 05:00:00", "2026-11-10 05:00:00", False),
        (28.0, "2026-11-10 05:00:00", "2026-11-20 05:00:00", False),
        (31.0, "2026-11-20 05:00:00", "None", True),
    ]
    keys = {r.bmi: r.patient_key for r in dim}
    facts = {r.claim_id: r.patient_key for r in table(spark, settings, "gold", "claims").collect()}
    # the claim of 11-12 was on the first version; after the re-cut it belongs to the late one
    assert facts == {
        "C0000001": keys[25.0],
        "C0000002": keys[28.0],
        "C0000003": keys[31.0],
        "C0000004": keys[22.0],
        "C0000005": keys[31.0],
    }
    # the dim's change feed shows the re-cut: the first interval closed earlier, one version inserted
    lake = Lakehouse(spark, settings)
    dim_name = settings.table_name("gold", "patients")
    changes = lake.read_changes(dim_name, 0, lake.version(dim_name))
    assert changes.filter("_change_type = 'update_postimage' AND bmi = 25.0").count() == 1

    # an in-order version stamped 11-27 06:00: only the claim dated that day moves to it
    write_landing(settings, "2026-11-27T0700Z", "patients", PATIENTS_HEADER + _patient("2026-11-27 06:00:00", 33.0))
    _cycle(run_job)
    keys = {r.bmi: r.patient_key for r in table(spark, settings, "gold", "patients").collect()}
    facts = {r.claim_id: r.patient_key for r in table(spark, settings, "gold", "claims").collect()}
    assert facts == {
        "C0000001": keys[25.0],
        "C0000002": keys[28.0],
        "C0000003": keys[31.0],
        "C0000004": keys[22.0],
        "C0000005": keys[33.0],
    }


def _read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _expected_history(landing: Path) -> dict[str, list[dict]]:
    """SCD2 intervals per patient from the landing files alone: versions by timestamp, consecutive identical
    versions collapsed, each interval ending where the next begins."""
    versions = defaultdict(dict)
    for path in sorted(landing.glob("*/patients.csv")):  # folders sort by interval: later arrivals overwrite
        for row in _read_csv(path):
            versions[row["patient_id"]][row["timestamp"]] = row
    history = {}
    for pid, by_ts in versions.items():
        rows = [by_ts[ts] for ts in sorted(by_ts)]
        kept = [r for i, r in enumerate(rows) if i == 0 or [r[c] for c in TRACKED] != [rows[i - 1][c] for c in TRACKED]]
        history[pid] = [
            {
                "from": r["timestamp"],
                "to": nxt["timestamp"] if nxt else None,
                "bmi": float(r["bmi"]),
                "region": r["region"],
                "smoker": r["smoker"] == "true",
                "insurance_plan": r["insurance_plan"],
                "children": int(r["children"]),
            }
            for r, nxt in zip(kept, kept[1:] + [None])
        ]
    return history


def _late_arrivals(landing: Path) -> int:
    newest, late = {}, 0
    for path in sorted(landing.glob("*/patients.csv")):
        rows = _read_csv(path)
        late += sum(1 for r in rows if r["timestamp"] < newest.get(r["patient_id"], ""))
        for r in rows:
            newest[r["patient_id"]] = max(newest.get(r["patient_id"], ""), r["timestamp"])
    return late


def _valid_at(intervals: list[dict], day: str) -> str:
    """The version valid at the end of `day` (the first version for a day before it)."""
    day_end = (date.fromisoformat(day) + timedelta(days=1)).isoformat() + " 00:00:00"
    valid = [iv for iv in intervals if iv["from"] < day_end]
    return (valid[-1] if valid else intervals[0])["from"]


@pytest.mark.slow
def test_gold_matches_the_generators_ground_truth_over_several_hours(run_job, spark, settings):
    hours = ["2026-11-27T01:00:00Z", "2026-11-27T02:00:00Z", "2026-11-27T03:00:00Z"]
    for start in hours:
        run_job(
            "generate", "--interval-start", start, "--patients", "150", "--defect-rate", "0", "--update-share", "0.25"
        )
        _cycle(run_job)
    landing = Path(settings.location("landing"))
    truth = _expected_history(landing)

    dim = table(spark, settings, "gold", "patients").collect()
    got = defaultdict(list)
    for r in sorted(dim, key=lambda r: (r.patient_id, r.effective_from)):
        got[r.patient_id].append(
            {
                "from": str(r.effective_from),
                "to": str(r.effective_to) if r.effective_to else None,
                "bmi": r.bmi,
                "region": r.region,
                "smoker": r.smoker,
                "insurance_plan": r.insurance_plan,
                "children": r.children,
            }
        )
    assert sum(len(v) > 1 for v in truth.values()) > 50  # real history: many patients have several versions
    assert _late_arrivals(landing) > 0  # some versions arrived after a newer one of the same patient
    assert dict(got) == truth
    assert all(sum(r.is_current for r in dim if r.patient_id == pid) == 1 for pid in truth)

    # every fact carries the key of the version valid at its date; a claim has the status it was last sent with
    key_of = {r.patient_key: (r.patient_id, str(r.effective_from)) for r in dim}
    claims = {}
    for path in sorted(landing.glob("*/claims.csv")):
        for row in _read_csv(path):
            claims[row["claim_id"]] = {**row, "claim_status": row["claim_status"].strip().upper()}  # case-folded
    facts = table(spark, settings, "gold", "claims").collect()
    assert len(facts) == len(claims) > 1000
    for f in facts:
        c = claims[f.claim_id]
        assert key_of[f.patient_key] == (c["patient_id"], _valid_at(truth[c["patient_id"]], c["claim_date"])), (
            f.claim_id
        )
        assert f.claim_status == c["claim_status"] and f.is_denied == (c["claim_status"] == "DENIED")
    events = {}
    for path in sorted(landing.glob("*/medical_events.csv")):
        for row in _read_csv(path):
            events[row["event_id"]] = row
    event_facts = table(spark, settings, "gold", "medical_events").collect()
    assert len(event_facts) == len(events)
    for f in event_facts:
        e = events[f.event_id]
        assert key_of[f.patient_key] == (e["patient_id"], _valid_at(truth[e["patient_id"]], e["event_date"]))

    # the metric views agree with the landing files
    lake = Lakehouse(spark, settings)
    views.register(lake)
    monthly = {r.claim_month: r for r in spark.table(lake.view_ref("gold_claims_monthly")).collect()}
    by_month = defaultdict(list)
    for c in claims.values():
        by_month[c["claim_date"][:7]].append(c)
    assert set(monthly) == set(by_month)
    for month, rows in by_month.items():
        m = monthly[month]
        assert m.claims == len(rows)
        assert m.claimed_amount == pytest.approx(sum(float(c["claim_amount"]) for c in rows), abs=0.011)
        assert m.denial_rate == round(sum(c["claim_status"] == "DENIED" for c in rows) / len(rows), 4)
        assert m.approval_rate == round(sum(c["claim_status"] in ("APPROVED", "PAID") for c in rows) / len(rows), 4)
    per_patient = {r.patient_id: r for r in spark.table(lake.view_ref("gold_patient_metrics")).collect()}
    assert set(per_patient) == set(truth)
    n_claims = defaultdict(int)
    for c in claims.values():
        n_claims[c["patient_id"]] += 1
    assert all(per_patient[pid].claims == n_claims.get(pid, 0) for pid in truth)
    plan = spark.table(lake.view_ref("gold_claims_by_plan_month"))
    assert plan.agg(F.sum("claims")).first()[0] == len(claims)

    # what the incremental runs built equals a rebuild of gold from the whole of silver
    def gold_rows() -> dict[str, list]:
        return {
            e: sorted((tuple(r) for r in table(spark, settings, "gold", e).drop("_updated_at").collect()), key=str)
            for e in ("patients", "claims", "medical_events")
        }

    incremental = gold_rows()
    assert run_job("gold", "--full-refresh", "true")["full_refresh"] is True
    assert gold_rows() == incremental
