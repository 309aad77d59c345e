"""Monitoring: hourly on the clock (not on data), so it also notices when nothing arrived."""
from airflow.sdk import DAG

from medallion_airflow.dags import HOURLY, dag_kwargs
from medallion_airflow.jobs import job_task

with DAG(
    schedule=HOURLY,
    **dag_kwargs(
        "medallion_monitor",
        tags=["monitoring", "ops"],
        doc_md="""
### Monitoring
Hourly on a time schedule. Records the row count of every pipeline table (bronze, silver, gold, quarantine)
in `ops_table_counts`, one row per table per run.
""",
    ),
):
    job_task("monitor")
