"""SLA deadlines on every DAG, task-failure and data-quality e-mails, and the dashboard plugin (in-process parts).

The same paths through the real scheduler, triggerer and api-server: tests/e2e/test_alert_emails.py.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from medallion_airflow import alerts, deadlines, settings

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _body(message) -> str:
    part = message.get_payload()[0] if message.is_multipart() else message
    return part.get_payload(decode=True).decode()


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


# --------------------------------------------------------------------------------------------- deadlines
def test_every_dag_has_a_queued_at_deadline_from_config_that_emails_from_the_triggerer(dagbag):
    from airflow.sdk import AsyncCallback
    from airflow.sdk.definitions.deadline import DagRunQueuedAtDeadline

    configured = settings.pipeline_config()["airflow"]["dags"]
    assert set(dagbag.dags) == set(configured)
    for dag_id, dag in dagbag.dags.items():
        (alert,) = dag.deadline
        assert isinstance(alert.reference, DagRunQueuedAtDeadline), dag_id  # manual runs have no logical date
        assert alert.interval == timedelta(minutes=configured[dag_id]["sla_minutes"]), dag_id
        assert isinstance(alert.callback, AsyncCallback)
        assert alert.callback.path == "medallion_airflow.deadlines.sla_missed"
        assert alert.callback.kwargs == {"dag_id": dag_id, "sla_minutes": float(configured[dag_id]["sla_minutes"])}
    # the path resolves from plugins/ (what the triggerer imports) to a coroutine function
    from airflow.sdk._shared.module_loading import import_string

    assert inspect.iscoroutinefunction(import_string("medallion_airflow.deadlines.sla_missed"))


def test_the_sla_override_applies_to_every_dag_and_unlisted_dags_get_the_default(monkeypatch):
    assert settings.sla_minutes("medallion_silver") == 20
    assert settings.sla_minutes("some_new_dag") == settings.pipeline_config()["airflow"]["default_sla_minutes"]
    monkeypatch.setenv("MEDALLION_SLA_MINUTES_OVERRIDE", "0.25")
    settings._load.cache_clear()
    try:
        assert settings.sla_minutes("medallion_silver") == 0.25
        assert deadlines.deadline_alert("medallion_gold").interval == timedelta(seconds=15)
    finally:
        monkeypatch.delenv("MEDALLION_SLA_MINUTES_OVERRIDE")
        settings._load.cache_clear()


def test_every_task_emails_on_failure_and_the_monitor_dag_alerts_on_breaches(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.on_failure_callback in (alerts.task_failure_alert, [alerts.task_failure_alert]), task
    monitor = dagbag.dags["medallion_monitor"]
    assert monitor.get_task("alert_quality_breaches").upstream_task_ids == {"monitor"}


def _context(state: str, end_date: datetime | None, deadline: datetime) -> dict:
    return {
        "dag_run": {
            "dag_id": "medallion_silver",
            "dag_run_id": "manual__2026-11-27T06:00:00+00:00",
            "state": state,
            "run_type": "manual",
            "queued_at": (deadline - timedelta(minutes=20)).isoformat(),
            "end_date": end_date.isoformat() if end_date else None,
        },
        "deadline": {"id": "d1", "deadline_time": deadline},
    }


def test_a_missed_deadline_emails_the_dag_and_run_from_the_async_callback(inbox):
    deadline = datetime(2026, 11, 27, 6, 20, tzinfo=timezone.utc)
    sent = asyncio.run(
        deadlines.sla_missed(_context("running", None, deadline), dag_id="medallion_silver", sla_minutes=20.0)
    )
    [(rcpt, message)] = inbox.messages
    assert rcpt == ["oncall@example.com"] and message["From"] == "medallion-alerts@example.com"
    assert (
        message["Subject"]
        == sent
        == (
            "[medallion] SLA missed: medallion_silver run "
            "manual__2026-11-27T06:00:00+00:00 not done 20 min after it was queued"
        )
    )
    assert "running" in _body(message) and "2026-11-27T06:20:00+00:00" in _body(message)


def test_a_run_that_failed_before_its_deadline_sends_no_sla_email(inbox):
    """apache/airflow#60927: the deadline still fires for a run that already failed; the failure e-mail covered it."""
    deadline = datetime(2026, 11, 27, 6, 20, tzinfo=timezone.utc)
    failed_early = _context("failed", deadline - timedelta(minutes=5), deadline)
    assert asyncio.run(deadlines.sla_missed(failed_early, dag_id="medallion_silver", sla_minutes=20)).startswith(
        "skipped"
    )
    assert inbox.messages == []
    # a run that finished late (after its deadline) is an SLA miss, whatever its state
    late = _context("success", deadline + timedelta(minutes=5), deadline)
    late["deadline"]["deadline_time"] = deadline.isoformat()  # the context may carry it as text
    assert deadlines.sla_miss_email(late["dag_run"], late["deadline"], 20) is not None


# --------------------------------------------------------------------------------------------- task failure
class _TI:
    dag_id, task_id, run_id, try_number = "medallion_gold", "gold", "scheduled__2026-11-27T06:00:00+00:00", 3
    log_url = "http://127.0.0.1:8080/dags/medallion_gold/runs/x/tasks/gold"


def test_a_failed_task_sends_one_email_without_the_error_text(inbox):
    secret = "value Jane Doe could not be cast"  # stands for an error text quoting a data value
    alerts.task_failure_alert({"ti": _TI(), "exception": RuntimeError(secret)})
    [(rcpt, message)] = inbox.messages
    assert (
        message["Subject"] == "[medallion] task failed: medallion_gold.gold (run scheduled__2026-11-27T06:00:00+00:00)"
    )
    body = _body(message)
    assert "RuntimeError" in body and _TI.log_url in body and "Jane" not in body


def test_an_unreachable_smtp_server_does_not_raise_from_the_failure_callback(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": _free_port(),
                "extra": {"disable_tls": True, "disable_ssl": True, "timeout": 2, "retry_limit": 0},
            }
        ),
    )
    alerts.task_failure_alert({"ti": _TI(), "exception": ValueError("x")})  # logged, not raised


# --------------------------------------------------------------------------------------------- data quality
SUMMARY = {
    "job": "monitor",
    "quality_score": 0.9871,
    "target_score": 0.995,
    "breaches": [
        {
            "kind": "quality_score",
            "subject": "claims",
            "detail": "quality score 98.7100% below target 99.50%",
            "new": True,
        },
        {
            "kind": "stale_table",
            "subject": "fact_claims",
            "detail": "newest data 200 min old, SLA 150 min",
            "new": False,
        },
    ],
}


def test_a_new_breach_emails_every_open_breach(inbox):
    sent = alerts.alert_quality_breaches(SUMMARY, "medallion_monitor", "scheduled__2026-11-27T07:00:00+00:00")
    assert sent == ["quality_score: claims", "stale_table: fact_claims"]
    [(_, message)] = inbox.messages
    assert message["Subject"] == (
        "[medallion] data-quality breach: quality score below target "
        "(1 new, monitoring run scheduled__2026-11-27T07:00:00+00:00)"
    )
    body = _body(message)
    assert "98.7100%" in body and "fact_claims" in body and "ongoing" in body and "target 99.50%" in body


def test_only_ongoing_breaches_send_nothing(inbox):
    ongoing = {**SUMMARY, "breaches": [dict(b, new=False) for b in SUMMARY["breaches"]]}
    assert alerts.alert_quality_breaches(ongoing, "medallion_monitor", "r") == []
    assert alerts.alert_quality_breaches({"job": "monitor", "breaches": []}, "medallion_monitor", "r") == []
    assert inbox.messages == []


# --------------------------------------------------------------------------------------------- dashboard plugin
def test_the_plugin_mounts_the_dashboard_app_and_links_it_in_the_navigation():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "medallion_dashboard_plugin", ROOT / "plugins" / "medallion_dashboard_plugin.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plugin = module.MedallionDashboardPlugin
    (app,) = plugin.fastapi_apps
    (view,) = plugin.external_views
    assert app["url_prefix"] == "/medallion" and view["href"] == "/medallion/dashboard"
    assert view["destination"] == "nav" and view["url_route"]
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES

    assert not any(app["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)


def test_the_dashboard_route_serves_the_page_the_monitor_wrote(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from medallion.config import load_settings
    from medallion.dashboard import dashboard_path
    from medallion_airflow import dashboard_app

    monkeypatch.setenv("MEDALLION_LAKEHOUSE", str(tmp_path / "lake"))
    client = TestClient(dashboard_app.app)
    assert client.get("/dashboard").status_code == 401  # Airflow's own sign-in check
    dashboard_app.app.dependency_overrides[dashboard_app.SIGNED_IN] = lambda: None
    try:
        missing = client.get("/dashboard")
        assert missing.status_code == 404 and "No dashboard yet" in missing.text
        path = Path(dashboard_path(load_settings()))
        assert path == tmp_path / "lake" / "dashboard" / "index.html"
        path.parent.mkdir(parents=True)
        path.write_text("<html><body>quality 99.9%</body></html>")
        page = client.get("/dashboard")
        assert page.status_code == 200 and "quality 99.9%" in page.text
        assert page.headers["cache-control"] == "no-store"
    finally:
        dashboard_app.app.dependency_overrides.clear()
