"""Alerts sent from Airflow: e-mails through the `smtp` connection named in include/pipeline.yaml.

Every alert e-mail (failed files, task failures, data-quality breaches, and the SLA misses of `deadlines`) is built
with `html_table` and sent by a `notifier`, so they look alike and reach the same list the same way. Alert texts
carry counts, table names, file paths and reasons only — never a row value, so no patient data leaves the platform
in an e-mail.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from medallion.cli import last_summary
from medallion_airflow import settings

log = logging.getLogger(__name__)


def alert_config() -> dict[str, Any]:
    af = settings.pipeline_config()["airflow"]
    return {"to": list(af["alert_emails"]), "from_email": af["alert_from"], "smtp_conn_id": af["smtp_conn_id"]}


def notifier(subject: str, body_html: str):
    """The provider's SmtpNotifier for one alert e-mail: connection, sender and recipients from config."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    cfg = alert_config()
    return SmtpNotifier(
        to=cfg["to"],
        from_email=cfg["from_email"],
        smtp_conn_id=cfg["smtp_conn_id"],
        subject=subject,
        html_content=body_html,
    )


def send_email(subject: str, body_html: str, context: dict | None = None) -> None:
    """Send one alert e-mail (from a task; the triggerer awaits `notifier(...).async_notify`)."""
    notifier(subject, body_html).notify(context or {})


def html_table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    """An e-mail's table, every cell escaped. With `header`: a header row, then one row per item; without: one
    `label | value` row per item, the label as the row's header."""

    def cell(tag: str, value: Any) -> str:
        return f"<{tag}>{html.escape(str(value))}</{tag}>"

    if header is None:
        body = "".join(
            f"<tr><th align='left'>{html.escape(str(label))}</th>{cell('td', value)}</tr>" for label, value in rows
        )
    else:
        body = (
            "<tr>"
            + "".join(cell("th", h) for h in header)
            + "</tr>"
            + "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>" for row in rows)
        )
    return f"<table border='1' cellpadding='4'>{body}</table>"


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
    return last_summary(hook.get_run_output(task_run_id).get("logs", ""))


def summary_to_check(xcom_value: Any, job: str) -> dict | None:
    """The run summary an alert task checks; None (and a warning in the task log) when the job left none."""
    summary = job_summary(xcom_value)
    if summary is None:
        log.warning("no %s run summary to check", job)
    return summary


def unreadable_files_email(summary: dict, dag_id: str, run_id: str) -> tuple[str, str] | None:
    """Subject and HTML body of the failed-file alert, or None when every file could be read."""
    rows = []
    for entity, table in (summary.get("tables") or {}).items():
        for f in table.get("files", []):
            if f.get("status") in ("unreadable", "partial", "rejected"):
                rows.append((table.get("table", entity), f["file"], f["status"], f.get("reason") or ""))
    if not rows:
        return None
    subject = f"[medallion] {len(rows)} landing file(s) could not be read or were rejected by bronze ({dag_id})"
    body = (
        f"<p>Bronze run <code>{html.escape(run_id)}</code> of <b>{html.escape(dag_id)}</b> ingested every "
        f"other file; these were recorded in <code>ops_bronze_files</code> and need a look:</p>"
        + html_table(rows, header=("table", "file (under landing/)", "status", "reason"))
        + "<p>Re-deliver a repaired copy under a new landing folder to ingest it.</p>"
    )
    return subject, body


def alert_unreadable_files(xcom_value: Any, dag_id: str, run_id: str) -> list[str]:
    """Task body after bronze: e-mail the failed-file alert if bronze met a file it could not read."""
    summary = summary_to_check(xcom_value, "bronze")
    files = list((summary or {}).get("unreadable_files") or [])
    sent = send_alert(
        summary,
        unreadable_files_email,
        dag_id,
        run_id,
        quiet="every landing file was readable",
        sending=f"bronze could not read {len(files)} file(s); sending the failed-file alert",
    )
    return files if sent else []


def send_alert(summary: dict | None, build, dag_id: str, run_id: str, *, quiet: str, sending: str) -> bool:
    """E-mail what `build(summary, dag_id, run_id)` makes of a run summary, if anything; the task log says which
    (`quiet` or `sending`). Whether an e-mail went out."""
    if summary is None:
        return False
    message = build(summary, dag_id, run_id)
    if message is None:
        log.info("%s", quiet)
        return False
    log.warning("%s", sending)
    send_email(*message)
    return True


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
    rows = [
        ("DAG", dag_id),
        ("task", task_id),
        ("run", run_id),
        ("try", getattr(ti, "try_number", None)),
        ("error type", kind),
    ]
    link = (
        f"<p><a href='{html.escape(log_url)}'>Task log</a> (the job's reason is its last ERROR line).</p>"
        if log_url
        else "<p>The task log holds the job's reason (its last ERROR line).</p>"
    )
    body = (
        f"<p>Task <b>{html.escape(task_id)}</b> of <b>{html.escape(dag_id)}</b> failed after its retries.</p>"
        + html_table(rows)
        + link
    )
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
KIND_TITLES = {
    "quality_score": "quality score below target",
    "stale_table": "stale table",
    "drift": "distribution drift",
    "reconciliation": "reconciliation mismatch",
    "volume": "volume outside its band",
}


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
    rows = [
        (KIND_TITLES.get(b["kind"], b["kind"]), b["subject"], b["detail"], "new" if b.get("new") else "ongoing")
        for b in found
    ]
    score, target = summary.get("quality_score"), summary.get("target_score")
    score_text = "n/a" if score is None else f"{score:.4%}"
    target_text = "" if target is None else f" (target {target:.2%})"
    body = (
        f"<p>Monitoring run <code>{html.escape(run_id)}</code> of <b>{html.escape(dag_id)}</b>: overall quality "
        f"score {score_text}{target_text}.</p>"
        + html_table(rows, header=("breach", "where", "measured", ""))
        + "<p>Figures are in the ops_* tables; the quality dashboard is linked from the Airflow UI "
        "(Browse &rarr; Quality dashboard).</p>"
    )
    return subject, body


def alert_quality_breaches(xcom_value: Any, dag_id: str, run_id: str) -> list[str]:
    """Task body after the monitor job: e-mail when it found a new data-quality breach."""
    summary = summary_to_check(xcom_value, "monitoring")
    found = [f"{b['kind']}: {b['subject']}" for b in (summary or {}).get("breaches") or []]
    sent = send_alert(
        summary,
        quality_breach_email,
        dag_id,
        run_id,
        quiet=f"no new data-quality breach ({len(found)} open)",
        sending=f"data-quality breach(es): {'; '.join(found)}; sending the e-mail",
    )
    return found if sent else []
