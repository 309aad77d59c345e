"""Hourly synthetic batch: patients, claims and medical events land as three CSV files per interval.

Writes `patients.csv`, `claims.csv` and `medical_events.csv` for the run's data interval into the landing
folder (atomically), deterministic for a given interval and seed: a retry, a clear or a backfill reproduces
the same files. Landing new files updates the `medallion_landing` asset, which starts **medallion_bronze**.
Each batch also re-sends some earlier patients with new (or late, out-of-order) versions, new claims and
events for earlier patients and status updates of earlier claims, plus a small share of defective rows whose
ground truth goes to a manifest outside the landing folder. Change *patients_per_batch*, *seed*, *defect_rate*
or *update_share* in the trigger form; backfill a range with *Trigger → Backfill*.
"""

from airflow.sdk import DAG, Param

from medallion_airflow.dags import HOURLY, LANDING, dag_kwargs
from medallion_airflow.jobs import job_task
from medallion_airflow.settings import pipeline_config

GENERATOR = pipeline_config()["generator"]

with DAG(
    schedule=HOURLY,
    params={
        "patients_per_batch": Param(
            GENERATOR["patients_per_batch"], type="integer", minimum=0, description="New patients in this hour's batch"
        ),
        "seed": Param(GENERATOR["seed"], type="integer", description="Global seed; same seed + interval = same files"),
        "defect_rate": Param(
            GENERATOR["defects"]["rate"],
            type="number",
            minimum=0,
            maximum=0.49,
            description="Defective rows added per clean row (listed in the ground-truth manifest)",
        ),
        "update_share": Param(
            GENERATOR["changes"]["patient_update_share"],
            type="number",
            minimum=0,
            maximum=1,
            description="New versions of earlier patients, as a share of the new patients",
        ),
    },
    **dag_kwargs("medallion_generate", tags=["generate", "landing"], doc_md=__doc__),
):
    job_task(
        "generate",
        arguments={
            "patients": "{{ params.patients_per_batch }}",
            "seed": "{{ params.seed }}",
            "defect-rate": "{{ params.defect_rate }}",
            "update-share": "{{ params.update_share }}",
        },
        outlets=[LANDING],
    )
