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


# --------------------------------------------------------------------------------------------- task failures
def task_failure_email(context: dict) -> tuple[str, str]:
    """Subject and body of the task-failure e-mail: ids, try number, the exception's type and the log link.

    The exception's message is left out on purpose (a library's error text could quote a data value); the log
    holds the job's one-line reason."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", None) or getattr(dag_run, "run_id", "?")
    exc = context.get("exception")
    kind = type(exc).__name__ if isinstance(exc, BaseException) else (str(exc)[:80] if exc else "unknown")
    subject = f"[medallion] task failed: {dag_id}.{task_id} (run {run_id})"
    log_url = getattr(ti, "log_url", None)
    rows = [("DAG", dag_id), ("task", task_id), ("run", run_id), ("try", getattr(ti, "try_number", None)),
            ("error type", kind)]
    cells = "".join(f"<tr><th align='left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    link = f"<p><a href='{html.escape(log_url)}'>Task log</a> (the job's reason is its last ERROR line).</p>" \
        if log_url else "<p>The task log holds the job's reason (its last ERROR line).</p>"
    body = (f"<p>Task <b>{html.escape(task_id)}</b> of <b>{html.escape(dag_id)}</b> failed after its retries.</p>"
            f"<table border='1' cellpadding='4'>{cells}</table>{link}")
    return subject, body


def task_failure_alert(context: dict) -> None:
    """on_failure_callback of every medallion task (default_args): e-mail the on-call list."""
    subject, body = task_failure_email(context)
    try:
        send_email(subject, body, context)
        log.warning("task-failure e-mail sent: %s", subject)
    except Exception:  # a failing alert must not hide the task's own failure
        log.exception("could not send the task-failure e-mail %r", subject)


# --------------------------------------------------------------------------------------------- data quality
KIND_TITLES = {"quality_score": "quality score below target", "stale_table": "stale table",
               "drift": "distribution drift", "reconciliation": "reconciliation mismatch",
               "volume": "volume outside its band"}


def quality_breach_email(summary: dict, dag_id: str, run_id: str) -> tuple[str, str] | None:
    """Subject and body of the data-quality e-mail, or None unless the monitoring run found a *new* breach.

    A breach stays open while its measure is out of bounds; the e-mail goes out when one appears that the previous
    monitoring run did not have, and lists every open breach (new and ongoing). Counts, scores, table, column
    and rule names only."""
    found = list(summary.get("breaches") or [])
    new = [b for b in found if b.get("new")]
    if not new:
        return None
    kinds = sorted({KIND_TITLES.get(b["kind"], b["kind"]) for b in new})
    subject = f"[medallion] data-quality breach: {', '.join(kinds)} ({len(new)} new, monitoring run {run_id})"
    cells = "".join(
        f"<tr><td>{html.escape(KIND_TITLES.get(b['kind'], b['kind']))}</td><td>{html.escape(str(b['subject']))}</td>"
        f"<td>{html.escape(str(b['detail']))}</td><td>{'new' if b.get('new') else 'ongoing'}</td></tr>" for b in found)
    score, target = summary.get("quality_score"), summary.get("target_score")
    score_text = "n/a" if score is None else f"{score:.4%}"
    target_text = "" if target is None else f" (target {target:.2%})"
    body = (f"<p>Monitoring run <code>{html.escape(run_id)}</code> of <b>{html.escape(dag_id)}</b>: overall quality "
            f"score {score_text}{target_text}.</p>"
            f"<table border='1' cellpadding='4'><tr><th>breach</th><th>where</th><th>measured</th><th></th></tr>"
            f"{cells}</table><p>Figures are in the ops_* tables; the quality dashboard is linked from the Airflow UI "
            f"(Browse &rarr; Quality dashboard).</p>")
    return subject, body


def alert_quality_breaches(xcom_value: Any, dag_id: str, run_id: str) -> list[str]:
    """Task body after the monitor job: e-mail when it found a new data-quality breach."""
    summary = job_summary(xcom_value)
    if summary is None:
        log.warning("no monitoring run summary to check")
        return []
    message = quality_breach_email(summary, dag_id, run_id)
    found = [f"{b['kind']}: {b['subject']}" for b in summary.get("breaches") or []]
    if message is None:
        log.info("no new data-quality breach (%d open)", len(found))
        return []
    log.warning("data-quality breach(es): %s; sending the e-mail", "; ".join(found))
    send_email(*message)
    return found
