"""The failed-file alert: an e-mail through the smtp connection when bronze met an unreadable landing file."""

from __future__ import annotations

from medallion.cli import last_summary
from medallion_airflow import alerts


def _summary(*files):
    return {
        "job": "bronze",
        "status": "success",
        "unreadable_files": [f"patients: {f['file']}" for f in files if f["status"] == "unreadable"],
        "tables": {"patients": {"table": "data_eng.bronze_patients", "files": list(files)}},
    }


def _body(message) -> str:
    part = message.get_payload()[0] if message.is_multipart() else message
    return part.get_payload(decode=True).decode()


def test_an_unreadable_file_sends_one_email_naming_the_file_and_the_reason(inbox):
    summary = _summary(
        {"file": "2026-11-27T0500Z/patients.csv", "status": "ingested", "rows": 3, "rescued_rows": 0},
        {
            "file": "2026-11-27T0600Z/patients.csv.gz",
            "status": "unreadable",
            "rows": 0,
            "rescued_rows": 0,
            "reason": "EOFError: Compressed file ended early",
        },
    )
    sent = alerts.alert_unreadable_files(summary, "medallion_bronze", "scheduled__2026-11-27T06:00:00+00:00")
    assert sent == ["patients: 2026-11-27T0600Z/patients.csv.gz"]
    [(rcpt, message)] = inbox.messages
    assert rcpt == ["oncall@example.com"] and message["From"] == "medallion-alerts@example.com"
    assert (
        message["Subject"]
        == "[medallion] 1 landing file(s) could not be read or were rejected by bronze (medallion_bronze)"
    )
    body = _body(message)
    assert "2026-11-27T0600Z/patients.csv.gz" in body and "EOFError" in body
    assert "2026-11-27T0500Z" not in body  # only the problem files are listed


def test_no_email_when_every_file_was_read(inbox):
    summary = _summary(
        {"file": "a/patients.csv", "status": "ingested", "rows": 3, "rescued_rows": 1},
        {"file": "b/patients.csv", "status": "empty", "rows": 0, "rescued_rows": 0},
    )
    assert alerts.alert_unreadable_files(summary, "medallion_bronze", "manual__1") == []
    assert inbox.messages == []


def test_the_summary_of_a_databricks_run_is_the_last_json_line_of_its_output():
    logs = 'starting\n{"not": "it"}\nINFO done\n{"job": "bronze", "status": "success"}\n'
    assert last_summary(logs) == {"job": "bronze", "status": "success"}
    assert last_summary("no summary here") is None
    assert alerts.job_summary({"job": "bronze", "tables": {}}) == {"job": "bronze", "tables": {}}
