"""Monitoring: hourly on the clock (not on data), so it also notices when nothing arrived.

Hourly on a time schedule. Measures the pipeline and stores the figures per run (include/pipeline.yaml →
`monitoring`): row counts (`ops_table_counts`), the quality score per entity and overall against the 99.5 % target
(`ops_quality_scores`), quarantined rows by rule, freshness of every table against its SLA, rows per landing batch
against the band of recent batches, distribution drift (PSI) of age, bmi, charges and claim_amount, reconciliation
(landed = silver + quarantined + duplicates + held) and the change-data-feed audit of every table
(`ops_table_writes`). It rewrites the **quality dashboard** (Browse → Quality dashboard).

`alert_quality_breaches` e-mails the on-call list when the run found a new breach: score below target, a stale
table, drift, a reconciliation mismatch or a volume outside its band (counts and names only, no patient data).
"""

from airflow.sdk import DAG, task

from medallion_airflow.dags import HOURLY, dag_kwargs
from medallion_airflow.jobs import job_task, summary_source

with DAG(
    schedule=HOURLY,
    **dag_kwargs("medallion_monitor", tags=["monitoring", "ops"], doc_md=__doc__),
):
    monitor = job_task("monitor")

    @task
    def alert_quality_breaches(summary, dag_run=None) -> list[str]:
        """E-mail the data-quality breach alert when the monitoring run found something new."""
        from medallion_airflow.alerts import alert_quality_breaches as alert

        return alert(summary, dag_run.dag_id, dag_run.run_id)

    alert_quality_breaches(summary_source(monitor))
