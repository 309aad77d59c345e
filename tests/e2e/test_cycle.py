"""A whole hourly cycle through the real Airflow components (scheduler, dag-processor, triggerer, api-server)."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from medallion.config import load_settings
from medallion.lakehouse import Lakehouse

ROOT = Path(__file__).resolve().parents[2]
PATIENTS = 150


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cycle(env: dict, summary: Path) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "airflow_local.py"), "cycle", "--timeout", "600",
                          "--summary-json", str(summary)], env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    assert "One hourly cycle done" in out.stdout
    assert "Quality dashboard: " in out.stdout and "Quality score of this cycle: " in out.stdout
    return json.loads(summary.read_text())


def _start_clear_of_the_hour_boundary(minutes_needed: int = 25) -> None:
    """Both cycles must run inside one clock hour: at the hour the scheduler starts every DAG's next hourly run,
    which would mix a second hour into the figures. Too close to the boundary, wait until just past it."""
    now = datetime.now(timezone.utc)
    if now.minute >= 60 - minutes_needed:
        time.sleep((60 - now.minute) * 60 - now.second + 20)


@pytest.mark.slow
def test_hourly_cycle_through_airflow_is_consistent_and_rerunnable(tmp_path, monkeypatch, spark):
    _start_clear_of_the_hour_boundary()
    lake_root = tmp_path / "lakehouse"
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path / "airflow"), MEDALLION_LAKEHOUSE=str(lake_root),
               MEDALLION_PATIENTS_PER_BATCH=str(PATIENTS), MEDALLION_AIRFLOW_PORT=str(_free_port()))
    first = _cycle(env, tmp_path / "first.json")
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
        assert counts[settings.table_name("quarantine", entity)] == stats["quarantined"] \
            + stats["expired_to_quarantine"]
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

    # the same hour again: Airflow re-runs the interval and no row lands twice
    second = _cycle(env, tmp_path / "second.json")
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
    names = {f"{r.first_name} {r.last_name}" for r in bronze_patients} | \
        {f",{r.first_name}," for r in bronze_patients} | {f'"{r.first_name}"' for r in bronze_patients}
    ids = {r.patient_id for r in bronze_patients}
    for entity, key in (("claims", "claim_id"), ("medical_events", "event_id")):
        ids |= {r[key] for r in lake.read(settings.table_name("bronze", entity)).select(key).collect()}
    ids = {i for i in ids if i and len(i) >= 5}
    logs = "\n".join(p.read_text(errors="replace") for p in (tmp_path / "airflow" / "logs").rglob("*.log"))
    assert "medallion-gold" in logs and "medallion-silver" in logs and len(ids) > 1000
    assert [n for n in names if n in logs] == []
    id_pattern = re.compile(r"\b(" + "|".join(re.escape(i) for i in sorted(ids)) + r")\b")
    assert id_pattern.findall(logs) == []
