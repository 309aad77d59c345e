"""E-mails end to end: a real SMTP server (aiosmtpd) and the real Airflow components (scheduler, dag-processor,
triggerer, api-server) on SQLite receive one SLA miss (Deadline Alert), one task failure and one data-quality
breach; the api-server serves the dashboard through the plugin."""

from __future__ import annotations

import json
import re
import socket
import sys
import urllib.request
from datetime import datetime, timezone
from email import message_from_bytes
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[2]
SLA_SECONDS = 12


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [m["Subject"].replace("\n", "").replace("\r", "") for m in self.messages]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _low_score_silver_runs(spark, settings) -> None:
    """Silver's run figures with a score below target, so the monitoring run finds a quality breach."""
    from medallion import ops
    from medallion.lakehouse import Lakehouse

    runs = ops.OpsTable.open(Lakehouse(spark, settings), settings.raw["tables"]["ops"]["silver_runs"], ops.SILVER_RUNS)
    counts = dict.fromkeys(ops.SILVER_RUN_COUNTS, 0) | {"rows_in": 100, "valid": 90, "quarantined": 10}
    runs.append(
        [
            {
                "run_id": "s1",
                "entity": "claims",
                "processed_at": datetime.now(timezone.utc),
                **counts,
                "quarantined_by_rule": {"valid_claim_amount": 10},
                "quality_score": 0.9,
                "target_score": 0.995,
            }
        ]
    )


@pytest.mark.slow
def test_sla_miss_task_failure_and_quality_breach_emails_through_real_airflow(tmp_path, monkeypatch, spark):
    inbox, smtp_port = _Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "medallion_monitor.py").symlink_to(ROOT / "dags" / "medallion_monitor.py")
    (dags / "medallion_alert_drill.py").symlink_to(ROOT / "tests" / "e2e" / "alert_dags" / "medallion_alert_drill.py")
    lake = tmp_path / "lakehouse"
    for key, value in {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "MEDALLION_AIRFLOW_PORT": str(_free_port()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "MEDALLION_LAKEHOUSE": str(lake),
        "MEDALLION_SLA_MINUTES_OVERRIDE": str(SLA_SECONDS / 60),
        "MEDALLION_DRILL_SECONDS": str(SLA_SECONDS * 3),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_port,
                "extra": {"disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 1},
            }
        ),
    }.items():
        monkeypatch.setenv(key, value)
    from medallion.config import load_settings

    _low_score_silver_runs(spark, load_settings())

    sys.path.insert(0, str(ROOT / "scripts"))
    import airflow_local

    airflow_local.setup()
    stack = airflow_local.Stack()
    stack.start()
    try:
        api = airflow_local.Api()
        api.wait_healthy(stack)
        api.wait_dags(stack, ["medallion_alert_drill", "medallion_monitor"])
        runs = {}
        for dag_id in ("medallion_alert_drill", "medallion_monitor"):
            api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
            runs[dag_id] = api.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"]
        drill = runs["medallion_alert_drill"]
        expected = {
            "sla": f"[medallion] SLA missed: medallion_alert_drill run {drill} not done",
            "failure": f"[medallion] task failed: medallion_alert_drill.fail (run {drill})",
            "quality": "[medallion] data-quality breach: ",
        }

        def arrived():
            subjects = inbox.subjects()
            found = {k: [s for s in subjects if s.startswith(prefix)] for k, prefix in expected.items()}
            return found if all(found.values()) else None

        found = airflow_local.wait_for(f"the three e-mails (have: {inbox.subjects()})", arrived, stack, 420, poll=2)
        assert len(found["sla"]) == 1 and len(found["failure"]) == 1
        (quality,) = found["quality"]
        # unpausing also created the scheduled monitoring run: whichever of the two runs measured first sends it
        assert "quality score below target" in quality
        assert re.search(r"monitoring run (manual|scheduled)__\S+\)$", quality), quality
        message = next(m for m in inbox.messages if m["Subject"].startswith(expected["quality"]))
        part = message.get_payload()[0] if message.is_multipart() else message
        text = part.get_payload(decode=True).decode()
        assert "claims" in text and "90.0000%" in text  # names and scores only
        for message in inbox.messages:
            assert message["To"] == "oncall@example.com"

        # the dashboard the monitoring run wrote, through the plugin on the real api-server (Airflow's sign-in check;
        # locally every caller is an admin — AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS — so a token is enough)
        req = urllib.request.Request(api.base + "/medallion/dashboard")
        req.add_header("Authorization", f"Bearer {api.token()}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            page = resp.read().decode()
        assert "Quality score over time" in page and 'data-chart="quality"' in page
        plugins = api.get("/api/v2/plugins")["plugins"]
        (plugin,) = [p for p in plugins if p["name"] == "medallion_dashboard"]
        assert plugin["external_views"][0]["href"] == "/medallion/dashboard"
    finally:
        stack.stop()
        controller.stop()
