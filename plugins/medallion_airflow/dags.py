"""DAG-level defaults, assets and schedules shared by the five DAG files (which only wire tasks)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import Asset, AssetOrTimeSchedule, CronDataIntervalTimetable

from medallion_airflow import settings
from medallion_airflow.alerts import task_failure_alert
from medallion_airflow.deadlines import deadline_alert
from medallion_airflow.jobs import TEMPLATE_FILTERS

START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOURLY = CronDataIntervalTimetable("0 * * * *", timezone="UTC")

# Data-aware scheduling: each layer's DAG runs when the layer before it has new data.
LANDING = Asset(name="medallion_landing", uri="medallion://data_eng/landing", group="medallion")
BRONZE = Asset(name="medallion_bronze", uri="medallion://data_eng/bronze", group="medallion")
SILVER = Asset(name="medallion_silver", uri="medallion://data_eng/silver", group="medallion")
GOLD = Asset(name="medallion_gold", uri="medallion://data_eng/gold", group="medallion")


def after(asset: Asset) -> AssetOrTimeSchedule:
    """Run when `asset` is updated, and hourly as a safety net (which also makes the DAG backfillable by interval)."""
    return AssetOrTimeSchedule(timetable=HOURLY, assets=[asset])


def shared_default_args() -> dict[str, Any]:
    af = settings.pipeline_config()["airflow"]
    return {
        "owner": af["owner"],
        "retries": int(af["retries"]),
        "retry_delay": timedelta(seconds=int(af["retry_delay_seconds"])),
        "execution_timeout": timedelta(minutes=int(af["job_timeout_minutes"])),
        "on_failure_callback": task_failure_alert,  # e-mail to airflow.alert_emails once the retries are spent
    }


def dag_kwargs(
    dag_id: str, *, doc_md: str, tags: list[str], default_args: dict | None = None, **overrides
) -> dict[str, Any]:
    """Keyword arguments every medallion DAG shares: owner, retries, failure e-mails, the SLA deadline, tags,
    start date and limits from config. `default_args` entries are merged over the shared ones."""
    cfg = settings.pipeline_config()["airflow"].get("dags", {}).get(dag_id, {})
    kwargs: dict[str, Any] = {
        "dag_id": dag_id,
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": int(cfg.get("max_active_runs", 1)),
        "default_args": {**shared_default_args(), **(default_args or {})},
        "deadline": deadline_alert(dag_id),  # SLA miss -> e-mail (Deadline Alert, airflow.dags.<id>.sla_minutes)
        "tags": ["medallion", f"target:{settings.target()}", *tags],
        "doc_md": doc_md,
        "user_defined_filters": TEMPLATE_FILTERS,
    }
    kwargs.update(overrides)
    return kwargs
