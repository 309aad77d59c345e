"""Gold: SCD Type 2 dim_patients and point-in-time fact tables from the silver changes.

Runs when silver has changed (and hourly as a safety net; backfillable). Re-cuts the SCD2 history of every touched patient in `dim_patients` and upserts
`fact_claims` / `fact_medical_events` with the surrogate key of the patient version valid at each date.
Tick *full_refresh* to rebuild gold from silver.
"""

from airflow.sdk import DAG, Param

from medallion_airflow.dags import GOLD, SILVER, after, dag_kwargs
from medallion_airflow.jobs import job_task

with DAG(
    schedule=after(SILVER),
    params={
        "full_refresh": Param(
            False, type="boolean", description="Rebuild the gold tables from silver instead of applying changes"
        )
    },
    **dag_kwargs("medallion_gold", tags=["gold", "star-schema"], doc_md=__doc__),
):
    job_task("gold", arguments={"full-refresh": "{{ 'true' if params.full_refresh else 'false' }}"}, outlets=[GOLD])
