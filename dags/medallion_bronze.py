"""Bronze: ingest new landing files exactly once into the append-only bronze tables."""
from airflow.sdk import DAG, Param

from medallion_airflow.dags import BRONZE, LANDING, after, dag_kwargs
from medallion_airflow.jobs import job_task

with DAG(
    schedule=after(LANDING),
    params={"entities": Param("patients,claims,medical_events", type="string",
                              description="Comma-separated entities to ingest")},
    **dag_kwargs(
        "medallion_bronze",
        tags=["bronze"],
        doc_md="""
### Bronze ingestion
Runs when new files land (`medallion_landing` asset), and hourly as a safety net — so it can also be
backfilled over a date range. Streams every landing file not yet ingested into
`bronze_patients`, `bronze_claims` and `bronze_medical_events` (file-stream source locally, Auto Loader on
Databricks; one checkpoint per table, so a re-run ingests nothing twice). Updates `medallion_bronze`.
""",
    ),
):
    job_task("bronze", arguments={"entities": "{{ params.entities }}"}, outlets=[BRONZE])
