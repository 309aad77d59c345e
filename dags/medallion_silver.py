"""Silver: standardize and validate new bronze rows; quarantine failures; upsert the silver tables.

Runs when bronze has new rows (and hourly as a safety net; backfillable). Standardizes each new bronze row, checks it against the rule catalog in
`include/pipeline.yaml`, tokenizes names, and MERGEs valid rows into the silver tables; failures go to the
quarantine tables with every rule they failed. The run summary (XCom) holds the quality score and the rule-catalog
version every silver and quarantine row is stamped with.
After a rule change: tick *revalidate_quarantine* to judge the quarantined rows again (rows that pass now flow on to
gold), or *full_refresh* to judge the whole of bronze again (then run gold with its *full_refresh*).
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
        ),
        "full_refresh": Param(
            False,
            type="boolean",
            description="Empty silver, quarantine and held and judge the whole of bronze again by the current rules",
        ),
        "revalidate_quarantine": Param(
            False,
            type="boolean",
            description="Judge the quarantined rows again by the current rules; rows that pass now go on to silver",
        ),
    },
    **dag_kwargs("medallion_silver", tags=["silver", "quality"], doc_md=__doc__),
):
    job_task(
        "silver",
        arguments={
            "entities": "{{ params.entities }}",
            "full-refresh": "{{ 'true' if params.full_refresh else 'false' }}",
            "revalidate-quarantine": "{{ 'true' if params.revalidate_quarantine else 'false' }}",
        },
        outlets=[SILVER],
    )
