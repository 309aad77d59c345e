"""DAG integrity: every DAG imports fast and cleanly, carries its metadata, and renders for both targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
DAG_IDS = {"medallion_generate", "medallion_bronze", "medallion_silver", "medallion_gold", "medallion_monitor"}
PARSE_BUDGET_S = 5.0

_PROBE = """
import json, sys, time
sys.path.insert(0, {plugins!r})
t = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t_bag = time.perf_counter()
bag = DagBag(dag_folder={dags!r})
elapsed = time.perf_counter() - t_bag
print(json.dumps({{"errors": {{k: str(v) for k, v in bag.import_errors.items()}}, "dags": sorted(bag.dags),
                  "parse_s": elapsed, "heavy": sorted(m for m in ("pyspark", "delta", "py4j") if m in sys.modules),
                  "stats": [[s.file, s.duration.total_seconds() if hasattr(s.duration, "total_seconds") else s.duration]
                            for s in bag.dagbag_stats]}}))
"""


def _parse_in_fresh_process(target: str) -> dict:
    env = dict(os.environ, MEDALLION_TARGET=target, AIRFLOW__CORE__LOAD_EXAMPLES="False")
    code = _PROBE.format(plugins=str(ROOT / "plugins"), dags=str(ROOT / "dags"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("target", ["local", "databricks"])
def test_dags_import_cleanly_fast_and_without_spark(target):
    result = _parse_in_fresh_process(target)
    assert result["errors"] == {}
    assert set(result["dags"]) == DAG_IDS
    assert result["parse_s"] < PARSE_BUDGET_S * len(DAG_IDS), result["stats"]
    for file, seconds in result["stats"]:
        assert seconds < PARSE_BUDGET_S, (file, seconds)
    assert result["heavy"] == [], "DAG files must not import Spark at parse time"


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def _wheel_entry_points() -> set[str]:
    with (ROOT / "spark_jobs" / "pyproject.toml").open("rb") as fh:
        return set(tomllib.load(fh)["project"]["scripts"])


def test_every_dag_has_owner_tags_retries_docs_and_limits(dagbag):
    assert set(dagbag.dags) == DAG_IDS
    for dag in dagbag.dags.values():
        assert dag.doc_md and len(dag.doc_md) > 80, dag.dag_id
        assert "medallion" in dag.tags and len(dag.tags) >= 3, dag.dag_id
        assert dag.max_active_runs == 1
        assert dag.catchup is False
        for task in dag.tasks:
            assert task.owner == "data-platform"
            assert task.retries >= 2
            assert task.execution_timeout is not None


def test_every_task_runs_an_entry_point_of_the_wheel(dagbag):
    scripts = _wheel_entry_points()
    jobs = set()
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            if task.task_id.startswith("alert_"):  # Airflow-side tasks: e-mail checks after a job
                continue
            assert f"medallion-{task.job}" in scripts, (dag.dag_id, task.task_id)
            assert os.path.exists(task.command()[0]), "entry point not installed beside Airflow"
            jobs.add(task.job)
    assert jobs == {"generate", "bronze", "silver", "gold", "monitor"}


def test_data_flows_through_assets(dagbag):
    def outlets(dag_id):
        return {a.name for t in dagbag.dags[dag_id].tasks for a in t.outlets}

    def triggers(dag_id):
        return {a.name for a in dagbag.dags[dag_id].timetable.asset_condition.objects}

    assert triggers("medallion_bronze") == outlets("medallion_generate") == {"medallion_landing"}
    assert triggers("medallion_silver") == outlets("medallion_bronze") == {"medallion_bronze"}
    assert triggers("medallion_gold") == outlets("medallion_silver") == {"medallion_silver"}
    for dag_id in ("medallion_generate", "medallion_monitor"):  # hourly on the clock, with real intervals
        timetable = dagbag.dags[dag_id].timetable
        assert type(timetable).__name__ == "CronDataIntervalTimetable" and timetable.expression == "0 * * * *"
    for dag_id in ("medallion_bronze", "medallion_silver", "medallion_gold"):  # on data, or hourly: backfillable
        timetable = dagbag.dags[dag_id].timetable
        assert type(timetable).__name__ == "AssetOrTimeSchedule"
        assert timetable.timetable.expression == "0 * * * *"


def test_generate_params_can_be_changed_at_trigger_time(dagbag):
    params = dagbag.dags["medallion_generate"].params
    assert params["patients_per_batch"] == 1000 and isinstance(params["seed"], int)
    assert dagbag.dags["medallion_gold"].params["full_refresh"] is False


def _context(dag, task):
    start = datetime(2026, 11, 27, 5, tzinfo=timezone.utc)
    return {
        "data_interval_start": start,
        "data_interval_end": start.replace(hour=6),
        "run_id": "scheduled__x",
        "params": dag.params.resolve() if hasattr(dag.params, "resolve") else dict(dag.params),
        "dag": dag,
        "task": task,
    }


def test_local_target_renders_the_interval_and_run_id(dagbag):
    dag = dagbag.dags["medallion_generate"]
    task = dag.get_task("generate")
    env = dag.get_template_env()
    rendered = {k: env.from_string(v).render(**_context(dag, task)) for k, v in task.named_parameters.items()}
    assert rendered["interval-start"] == "2026-11-27T05:00:00+00:00"
    assert rendered["interval-end"] == "2026-11-27T06:00:00+00:00"
    assert rendered["run-id"] == "scheduled__x" and rendered["patients"] == "1000"
    # asset-triggered runs have no interval in their context: the argument renders empty instead of failing
    bronze = dagbag.dags["medallion_bronze"]
    job = bronze.get_task("bronze")
    ctx = {k: v for k, v in _context(bronze, job).items() if not k.startswith("data_interval")}
    assert bronze.get_template_env().from_string(job.named_parameters["interval-start"]).render(**ctx) == ""


def test_databricks_target_renders_python_wheel_tasks(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

    monkeypatch.setenv("MEDALLION_TARGET", "databricks")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    scripts = _wheel_entry_points()
    for dag in bag.dags.values():
        for task in dag.tasks:
            if task.task_id.startswith("alert_"):
                continue
            assert isinstance(task, DatabricksSubmitRunOperator), (dag.dag_id, task.task_id)
            assert task.timeout_seconds == 30 * 60
            (db_task,) = task.json["tasks"]
            wheel = db_task["python_wheel_task"]
            assert wheel["package_name"] == "medallion_jobs" and wheel["entry_point"] in scripts
            named = wheel["named_parameters"]
            assert named["env"] == "dev" and named["config"].endswith("include/pipeline.yaml")
            env = dag.get_template_env()
            ctx = _context(dag, task)
            rendered = json.loads(env.from_string(json.dumps(task.json)).render(**ctx))
            r_named = rendered["tasks"][0]["python_wheel_task"]["named_parameters"]
            assert r_named["interval-start"] == "2026-11-27T05:00:00+00:00"
            assert r_named["run-id"] == "scheduled__x"
            assert rendered["environments"][0]["spec"]["dependencies"][0].endswith(".whl")
            assert db_task["environment_key"] == rendered["environments"][0]["environment_key"]
