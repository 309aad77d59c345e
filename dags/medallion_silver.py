"""Silver: standardize and validate new bronze rows; quarantine failures; upsert the silver tables.

Runs when bronze has new rows (and hourly as a safety net; backfillable). Standardizes each new bronze row, checks it against the rule catalog in
`include/pipeline.yaml`, tokenizes names, and MERGEs valid rows into the silver tables; failures go to the
quarantine tables with every rule they failed. The run summary (XCom) holds the quality score.
"""

from airflow.sdk import DAG, Param

from medallion_airflow.dags import BRONZE, SILVER, after, dag_kwargs
from medallion_airflow.jobs import job_task

with DAG(
    schedule=after(BRONZE),
    params={
        "entities": Param(
            "patients,claims,medical_events",
            type="string",
            description="Comma-separated entities to process (patients first)",
        )
    },
    **dag_kwargs("medallion_silver", tags=["silver", "quality"], doc_md=__doc__),
):
    job_task("silver", arguments={"entities": "{{ params.entities }}"}, outlets=[SILVER])
