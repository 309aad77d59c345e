"""Test-only DAG for the e-mail drill: built with the production factories (dag_kwargs: deadline from config,
failure e-mails), it overruns its deadline (MEDALLION_SLA_MINUTES_OVERRIDE makes it short) and has a task that
fails without retries."""

import os
import time

from airflow.sdk import DAG, task

from medallion_airflow.dags import dag_kwargs

with DAG(
    schedule=None,
    **dag_kwargs(
        "medallion_alert_drill",
        tags=["drill", "test"],
        default_args={"retries": 0},
        doc_md="E-mail drill: one SLA miss and one task failure, nothing else.",
    ),
):

    @task
    def overrun() -> None:
        time.sleep(float(os.environ.get("MEDALLION_DRILL_SECONDS", "45")))

    @task
    def fail() -> None:
        raise RuntimeError("drill: this task fails on purpose")

    overrun()
    fail()
