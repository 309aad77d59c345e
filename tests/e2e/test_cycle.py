"""A whole hourly cycle through the real Airflow components (scheduler, dag-processor, triggerer, api-server)."""

from __future__ import annotations

import io
import json
import re
import socket
import sys
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from medallion.config import load_settings
from medallion.lakehouse import Lakehouse

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import airflow_local  # noqa: E402  (scripts/ is not a package)

PATIENTS = 150
# The cycle's hour: well before the latest complete hour and beyond the generator's 24-hour look-back from it, so the
# scheduler's own hourly generation runs (on unpausing, and at every hour boundary the test may cross) neither share
# its landing folder nor draw on its batch. They land header-only files here (the default batch size is 0 below):
# no wall-clock wait, wherever in the hour the test starts.
HOURS_BACK = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """The four Airflow components, started once for the module's cycles."""
    home = tmp_path_factory.mktemp("cycle")
    env = {
        "AIRFLOW_HOME": str(home / "airflow"),
        "MEDALLION_LAKEHOUSE": str(home / "lakehouse"),
        "MEDALLION_PATIENTS_PER_BATCH": "0",
        "MEDALLION_AIRFLOW_PORT": str(_free_port()),
    }
    with airflow_local.environment(env):
        airflow_local.setup()
        with airflow_local.components() as (api, stack, _mailbox):
            yield {"api": api, "stack": stack, "home": home}


def _cycle(airflow: dict, interval_start: datetime, summary: Path) -> dict:
    summaries = airflow_local.run_cycle(
        airflow["api"],
        airflow["stack"],
        timeout=600,
        interval_start=interval_start,
        conf={"patients_per_batch": PATIENTS},
    )
    report = io.StringIO()
    with redirect_stdout(report):
        airflow_local.print_report(summaries)
    assert "One hourly cycle done" in report.getvalue()
    assert "Quality dashboard: " in report.getvalue() and "Quality score of this cycle: " in report.getvalue()
    summary.write_text(json.dumps(summaries, indent=2, default=str))  # kept with the test's files for a reader
    return summaries


@pytest.mark.slow
def test_hourly_cycle_through_airflow_is_consistent_and_rerunnable(airflow, tmp_path, monkeypatch, spark):
    interval_start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS_BACK)
    lake_root = airflow["home"] / "lakehouse"
    first = _cycle(airflow, interval_start, tmp_path / "first.json")
    assert first["interval_start"] == interval_start.isoformat()
    landed = first["generate"]["rows"]  # clean rows + the injected defects (default rate)
    assert first["generate"]["clean_rows"]["patients"] == PATIENTS
    counts = first["monitor"]["counts"]
    monkeypatch.setenv("MEDALLION_LAKEHOUSE", str(lake_root))
    settings = load_settings()
    for entity, n in landed.items():
        stats = first["silver"]["entities"][entity]
        assert counts[settings.table_name("bronze", entity)] == n == stats["rows_in"]
        # nothing lost: every landed row is in silver, in quarantine, held for its patient, or a duplicate
        assert n == stats["valid"] + stats["quarantined"] + stats["exact_duplicates"] + stats["held"]
        assert (
            counts[settings.table_name("quarantine", entity)] == stats["quarantined"] + stats["expired_to_quarantine"]
        )
        assert counts[settings.table_name("silver", entity)] == stats["inserted"]
        if entity != "patients":  # every patient of the hour arrived: only the injected orphans stay held
            kind = {"claims": "claim_orphan_patient", "medical_events": "event_orphan_patient"}[entity]
            orphans = first["generate"]["defects_by_kind"].get(kind, 0)
            assert counts[settings.table_name("held", entity)] == orphans
    for entity in ("claims", "medical_events"):
        assert counts[settings.table_name("gold", entity)] == counts[settings.table_name("silver", entity)]
    assert first["silver"]["quality_score"] >= settings.quality["target_score"]
    monitor = first["monitor"]  # the monitoring run after the cycle: figures stored, dashboard rewritten
    assert Path(monitor["dashboard"]).is_file() and "Quality score over time" in Path(monitor["dashboard"]).read_text()
    assert monitor["quality"]["overall"]["total_score"] >= settings.quality["target_score"]
    assert monitor["stale_tables"] == [] and monitor["reconciliation"]["patients"] is not False

    # every Spark job took a slot of the pool airflow_settings.yaml declares (what `astro dev start` creates)
    (pool,) = [p for p in airflow_local.declared_pools() if p["pool_name"] == "medallion_spark"]
    assert airflow["api"].get("/api/v2/pools/medallion_spark")["slots"] == pool["pool_slot"]
    instances = airflow["api"].get("/api/v2/dags/~/dagRuns/~/taskInstances?limit=500")["task_instances"]
    spark_tasks = [ti for ti in instances if ti["operator"] == "LocalSparkJobOperator"]
    assert {ti["dag_id"] for ti in spark_tasks} >= {
        f"medallion_{job}" for job in ("generate", "bronze", "silver", "gold", "monitor")
    }
    assert {ti["pool"] for ti in spark_tasks} == {"medallion_spark"}

    # the same hour again: Airflow re-runs the interval and no row lands twice
    second = _cycle(airflow, interval_start, tmp_path / "second.json")
    assert second["interval_start"] == first["interval_start"]
    assert second["bronze"]["rows_ingested"] == 0
    assert second["monitor"]["counts"] == counts

    lake = Lakehouse(spark, settings)
    patients = lake.read(settings.table_name("silver", "patients"))
    dim = lake.read(settings.table_name("gold", "patients"))
    for entity in ("claims", "medical_events"):
        assert lake.read(settings.table_name("silver", entity)).join(patients, "patient_id", "left_anti").count() == 0
        fact = lake.read(settings.table_name("gold", entity))
        assert fact.join(dim, "patient_key", "left_anti").count() == 0
    # every task log of the run exists, and no patient name or identifier from the landing files reached any of
    # them (the jobs' own output, Spark's, Soda's and Airflow's: everything the task logs hold)
    bronze_patients = lake.read(settings.table_name("bronze", "patients")).collect()
    names = (
        {f"{r.first_name} {r.last_name}" for r in bronze_patients}
        | {f",{r.first_name}," for r in bronze_patients}
        | {f'"{r.first_name}"' for r in bronze_patients}
    )
    ids = {r.patient_id for r in bronze_patients}
    for entity, key in (("claims", "claim_id"), ("medical_events", "event_id")):
        ids |= {r[key] for r in lake.read(settings.table_name("bronze", entity)).select(key).collect()}
    ids = {i for i in ids if i and len(i) >= 5}
    logs = "\n".join(p.read_text(errors="replace") for p in (airflow["home"] / "airflow" / "logs").rglob("*.log"))
    assert "medallion-gold" in logs and "medallion-silver" in logs and len(ids) > 1000
    assert [n for n in names if n in logs] == []
    id_pattern = re.compile(r"\b(" + "|".join(re.escape(i) for i in sorted(ids)) + r")\b")
    assert id_pattern.findall(logs) == []
