"""Hourly synthetic batch: patients, claims and medical events land as three CSV files per interval."""
from airflow.sdk import DAG, Param

from medallion_airflow.dags import HOURLY, LANDING, dag_kwargs
from medallion_airflow.jobs import job_task
from medallion_airflow.settings import pipeline_config

GENERATOR = pipeline_config()["generator"]

with DAG(
    schedule=HOURLY,
    params={
        "patients_per_batch": Param(GENERATOR["patients_per_batch"], type="integer", minimum=0,
                                    description="New patients in this hour's batch"),
        "seed": Param(GENERATOR["seed"], type="integer", description="Global seed; same seed + interval = same files"),
    },
    **dag_kwargs(
        "medallion_generate",
        tags=["generate", "landing"],
        doc_md="""
### Generate an hourly batch
Writes `patients.csv`, `claims.csv` and `medical_events.csv` for the run's data interval into the landing
folder (atomically), deterministic for a given interval and seed: a retry, a clear or a backfill reproduces
the same files. Landing new files updates the `medallion_landing` asset, which starts **medallion_bronze**.
Change *patients_per_batch* or *seed* in the trigger form; backfill a range with *Trigger → Backfill*.
""",
    ),
):
    job_task(
        "generate",
        arguments={"patients": "{{ params.patients_per_batch }}", "seed": "{{ params.seed }}"},
        outlets=[LANDING],
    )
