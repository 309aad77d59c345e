"""Bronze: ingest new landing files exactly once into the append-only bronze tables.

Runs when new files land (`medallion_landing` asset), and hourly as a safety net — so it can also be
backfilled over a date range. Streams every landing file not yet ingested into
`bronze_patients`, `bronze_claims` and `bronze_medical_events` (file-stream source locally, Auto Loader on
Databricks; one checkpoint per table, so a re-run ingests nothing twice). Updates `medallion_bronze`.

Every file is recorded in `ops_bronze_files` (rows, rows with rescued data, status). A file that cannot be
read does not stop the others; `alert_unreadable_files` e-mails the on-call list about it.
"""

from airflow.sdk import DAG, Param, task

from medallion_airflow.dags import BRONZE, LANDING, after, dag_kwargs
from medallion_airflow.jobs import job_task, summary_source

with DAG(
    schedule=after(LANDING),
    params={
        "entities": Param(
            "patients,claims,medical_events", type="string", description="Comma-separated entities to ingest"
        )
    },
    **dag_kwargs("medallion_bronze", tags=["bronze"], doc_md=__doc__),
):
    bronze = job_task("bronze", arguments={"entities": "{{ params.entities }}"}, outlets=[BRONZE])

    @task
    def alert_unreadable_files(summary, dag_run=None) -> list[str]:
        """E-mail the failed-file alert when bronze met a landing file it could not read."""
        from medallion_airflow.alerts import alert_unreadable_files as alert

        return alert(summary, dag_run.dag_id, dag_run.run_id)

    alert_unreadable_files(summary_source(bronze))
