"""The silver DAG's trigger form: re-validation after a rule change (full refresh, quarantine re-judged) as params
that render into the job's flags (the job's side: tests/spark_jobs/test_silver.py runs them)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_silver_params_render_into_flags_the_job_accepts():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "medallion_silver.py")).dags["medallion_silver"]
    assert dag.params["full_refresh"] is False and dag.params["revalidate_quarantine"] is False
    task = dag.get_task("silver")
    env = dag.get_template_env()
    for full, reval in ((False, True), (True, False)):
        params = {"entities": "patients", "full_refresh": full, "revalidate_quarantine": reval}
        rendered = {
            k: env.from_string(str(v)).render(params=params, run_id="manual__x")
            for k, v in task.named_parameters.items()
        }
        assert (rendered["full-refresh"], rendered["revalidate-quarantine"]) == (str(full).lower(), str(reval).lower())
