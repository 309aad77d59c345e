"""SLA misses: an Airflow 3 Deadline Alert on every DAG, e-mailed from the triggerer.

Every medallion DAG gets `deadline_alert(dag_id)` (through `dags.dag_kwargs`): the run must be done
`sla_minutes` (include/pipeline.yaml -> airflow.dags.<dag_id>.sla_minutes) after it was *queued* —
DAGRUN_QUEUED_AT, because manual and asset-triggered runs have no logical date. When the scheduler sees the
deadline pass it queues `sla_missed` on the triggerer (an AsyncCallback, so it must be importable there: it lives
in plugins/, which every Airflow component puts on sys.path). The triggerer calls it with a context holding only
`dag_run` (the run as the REST API shows it) and `deadline`.

What on-call receives: one "SLA missed" e-mail per run still running (or finished late) at its deadline. A run
that *failed before* its deadline is not pruned by Airflow (apache/airflow#60927) and would still trigger the
callback; `sla_missed` then sends nothing, because the failed task already sent its task-failure e-mail
(`alerts.task_failure_alert`) — one incident, one e-mail.
"""

from __future__ import annotations

import html
import logging
from datetime import datetime, timedelta
from typing import Any

from medallion_airflow import settings
from medallion_airflow.alerts import html_table, notifier

log = logging.getLogger(__name__)


def _ts(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def sla_miss_email(dag_run: dict, deadline: dict, sla_minutes: float) -> tuple[str, str] | None:
    """Subject and HTML body of the SLA-miss e-mail, or None when the run failed before its deadline."""
    dag_id, run_id = dag_run.get("dag_id"), dag_run.get("dag_run_id") or dag_run.get("run_id")
    state = dag_run.get("state")
    deadline_at, ended = _ts(deadline.get("deadline_time")), _ts(dag_run.get("end_date"))
    if state == "failed" and ended is not None and (deadline_at is None or ended <= deadline_at):
        return None
    subject = f"[medallion] SLA missed: {dag_id} run {run_id} not done {sla_minutes:g} min after it was queued"
    rows = [
        ("DAG", dag_id),
        ("run", run_id),
        ("state at the deadline", state),
        ("queued at", dag_run.get("queued_at")),
        ("deadline", deadline_at.isoformat() if deadline_at else None),
        ("SLA (minutes after queued)", sla_minutes),
        ("run type", dag_run.get("run_type")),
    ]
    body = (
        f"<p>The run <code>{html.escape(str(run_id))}</code> of <b>{html.escape(str(dag_id))}</b> was not done "
        f"by its deadline.</p>"
        + html_table(rows)
        + "<p>Open the run in the Airflow UI to see which task is slow or waiting.</p>"
    )
    return subject, body


async def sla_missed(context: dict | None = None, dag_id: str | None = None, sla_minutes: float | None = None) -> str:
    """AsyncCallback of every DAG's Deadline Alert (runs in the triggerer): e-mail the on-call list."""
    context = context or {}
    dag_run = dict(context.get("dag_run") or {})
    dag_run.setdefault("dag_id", dag_id)
    message = sla_miss_email(dag_run, dict(context.get("deadline") or {}), float(sla_minutes or 0))
    if message is None:
        log.info(
            "run %s of %s failed before its deadline; the task-failure e-mail covered it",
            dag_run.get("dag_run_id"),
            dag_run.get("dag_id"),
        )
        return "skipped: the run failed before its deadline"
    await notifier(*message).async_notify(context)
    log.warning("SLA-miss e-mail sent: %s", message[0])
    return message[0]


def deadline_alert(dag_id: str):
    """The Deadline Alert every medallion DAG carries: queued + sla_minutes, e-mail via `sla_missed`."""
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    minutes = settings.sla_minutes(dag_id)
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        callback=AsyncCallback(sla_missed, kwargs={"dag_id": dag_id, "sla_minutes": minutes}),
        name=f"{dag_id}_sla",
    )
