"""Alerts sent from Airflow: e-mails through the `smtp` connection named in include/pipeline.yaml.

Alert texts carry counts, table names, file paths and reasons only — never a row value, so no patient data
leaves the platform in an e-mail.
"""
from __future__ import annotations

import html
import json
import logging
from typing import Any

from medallion_airflow import settings

log = logging.getLogger(__name__)


def alert_config() -> dict[str, Any]:
    af = settings.pipeline_config()["airflow"]
    return {"to": list(af["alert_emails"]), "from_email": af["alert_from"], "smtp_conn_id": af["smtp_conn_id"]}


def send_email(subject: str, body_html: str, context: dict | None = None) -> None:
    """Send one alert e-mail with the provider's SmtpNotifier (connection from config, recipients from config)."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier
    cfg = alert_config()
    SmtpNotifier(to=cfg["to"], from_email=cfg["from_email"], smtp_conn_id=cfg["smtp_conn_id"],
                 subject=subject, html_content=body_html).notify(context or {})


def summary_from_logs(logs: str) -> dict | None:
    """A job's run summary is the last JSON line it printed (the job contract)."""
    for line in reversed((logs or "").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def job_summary(xcom_value: Any, conn_id: str | None = None) -> dict | None:
    """The run summary of a job task, whatever the target.

    Local tasks return the summary itself. Databricks tasks return the run id (`DatabricksSubmitRunOperator`
    pushes it); the summary is then the last JSON line of the task run's stdout, from the Jobs API's
    runs/get-output.
    """
    if isinstance(xcom_value, dict) and "job" in xcom_value:
        return xcom_value
    if xcom_value in (None, ""):
        return None
    from airflow.providers.databricks.hooks.databricks import DatabricksHook
    hook = DatabricksHook(conn_id or settings.pipeline_config()["databricks"]["connection_id"])
    run = hook.get_run(int(xcom_value))
    task_run_id = (run.get("tasks") or [{}])[0].get("run_id", int(xcom_value))
    return summary_from_logs(hook.get_run_output(task_run_id).get("logs", ""))


def unreadable_files_email(summary: dict, dag_id: str, run_id: str) -> tuple[str, str] | None:
    """Subject and HTML body of the failed-file alert, or None when every file could be read."""
    rows = []
    for entity, table in (summary.get("tables") or {}).items():
        for f in table.get("files", []):
            if f.get("status") in ("unreadable", "partial"):
                rows.append((table.get("table", entity), f["file"], f["status"], f.get("reason") or ""))
    if not rows:
        return None
    subject = f"[medallion] {len(rows)} landing file(s) could not be read by bronze ({dag_id})"
    cells = "".join(f"<tr><td>{html.escape(t)}</td><td>{html.escape(p)}</td><td>{html.escape(s)}</td>"
                    f"<td>{html.escape(r)}</td></tr>" for t, p, s, r in rows)
    body = (f"<p>Bronze run <code>{html.escape(run_id)}</code> of <b>{html.escape(dag_id)}</b> ingested every "
            f"other file; these were recorded in <code>ops_bronze_files</code> and need a look:</p>"
            f"<table border='1' cellpadding='4'><tr><th>table</th><th>file (under landing/)</th><th>status</th>"
            f"<th>reason</th></tr>{cells}</table>"
            "<p>Re-deliver a repaired copy under a new landing folder to ingest it.</p>")
    return subject, body


def alert_unreadable_files(xcom_value: Any, dag_id: str, run_id: str) -> list[str]:
    """Task body after bronze: e-mail the failed-file alert if bronze met a file it could not read."""
    summary = job_summary(xcom_value)
    if summary is None:
        log.warning("no bronze run summary to check")
        return []
    message = unreadable_files_email(summary, dag_id, run_id)
    if message is None:
        log.info("every landing file was readable")
        return []
    files = list(summary.get("unreadable_files") or [])
    log.warning("bronze could not read %d file(s); sending the failed-file alert", len(files))
    send_email(*message)
    return files
