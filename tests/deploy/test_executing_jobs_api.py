"""The Databricks target against a workspace that really runs what it is sent (scripts/workspace.py): the provider's
real operator and trigger submit a `python_wheel_task`; the workspace installs the wheel `make wheel` builds into a
fresh virtualenv from the lock and runs its entry point on a Spark Connect server (the engine of serverless, ANSI
on); Airflow reads the run's state, its output and its failure reason through the Jobs API, and cancels it.

The fake Jobs API of test_databricks_contract.py checks what is sent; this checks that what is sent runs. The whole
hourly cycle through Airflow on this workspace is tests/e2e/test_databricks_cycle.py (extended tier)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from conftest import RUN_ID, load_dags
from test_databricks_contract import run_task

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import workspace as emulator  # noqa: E402  (scripts/ is not a package)

pytestmark = pytest.mark.slow
SALT = "executing-jobs-api-test-salt"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = emulator.start(tmp_path_factory.mktemp("workspace"), SALT)
    yield ws
    ws.stop()


@pytest.fixture
def emulated(monkeypatch, workspace):
    for key, value in workspace.airflow_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MEDALLION_PATIENTS_PER_BATCH", "40")  # the trigger form's default, on the Airflow side
    workspace.requests.clear()
    return workspace


def _dag(monkeypatch, dag_id: str):
    return load_dags(monkeypatch, env="emulated").dags[dag_id]


def test_a_submitted_job_runs_in_the_workspace_and_airflow_reads_its_summary_from_the_run_output(monkeypatch, emulated):
    from medallion_airflow import alerts

    dag = _dag(monkeypatch, "medallion_generate")
    ctx = run_task(dag, dag.get_task("generate"))
    run = emulated.runs[ctx["ti"].xcom["run_id"]]
    assert run.state() == {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS", "state_message": ""}
    # what the run printed comes back through runs/get-output, as on Databricks: the job's own run summary
    summary = alerts.job_summary(ctx["ti"].xcom["run_id"])
    assert summary["job"] == "generate" and summary["status"] == "success" and summary["env"] == "emulated"
    assert summary["run_id"] == RUN_ID and summary["clean_rows"]["patients"] == 40
    # the files landed in the environment's volume, for the interval Airflow rendered
    landing = Path(summary["landing_dir"])
    assert landing.parent == Path(emulated.settings().location("landing"))
    assert sorted(p.name for p in landing.iterdir()) == ["claims.csv", "medical_events.csv", "patients.csv"]
    # the run ran the deployed wheel in its own environment, not this checkout's package
    python = Path(emulated.environment([run.payload["environments"][0]["spec"]["dependencies"][0]]))
    assert python.parent.parent.parent == emulated.root / "environments"
    assert list(python.parent.parent.glob("lib/python3*/site-packages/medallion_jobs-*.dist-info"))
    paths = [r["path"] for r in emulated.requests]
    assert paths[0] == "/api/2.2/jobs/runs/submit" and "/api/2.2/jobs/runs/get-output" in paths


def test_a_failing_job_fails_the_task_with_its_one_line_reason_and_no_secret(monkeypatch, emulated):
    """Without the hash salt in the environment's secret scope silver refuses to start; the task fails with the job's
    own reason, read from the run's output."""
    from airflow.providers.common.compat.sdk import AirflowException

    monkeypatch.delitem(emulated.secrets, ("medallion-emulated", "hash-salt"))
    dag = _dag(monkeypatch, "medallion_silver")
    with pytest.raises(AirflowException) as failure:
        run_task(dag, dag.get_task("silver"))
    message = str(failure.value)
    assert "FAILED" in message and "needs a hash salt" in message and "refusing to start" in message
    assert SALT not in message
    (run,) = [r for r in emulated.runs.values() if r.task["task_key"] == "medallion_silver"]
    assert run.result_state == "FAILED" and run.process.returncode != 0
    # the job asked the secret scope (the SDK's dbutils, with the run's credentials) before giving up
    assert "/api/2.0/secrets/get" in [r["path"] for r in emulated.requests]


def test_a_killed_task_cancels_its_run_and_the_job_process_ends(monkeypatch, emulated):
    from airflow.sdk.exceptions import TaskDeferred

    dag = _dag(monkeypatch, "medallion_monitor")
    with pytest.raises(TaskDeferred) as deferred:
        run_task(dag, dag.get_task("monitor"), defer=False)
    (run,) = [r for r in emulated.runs.values() if r.task["task_key"] == "medallion_monitor"]
    deadline = time.monotonic() + 120
    while run.life_cycle_state != "RUNNING":
        assert time.monotonic() < deadline, run.state()
        time.sleep(0.2)
    asyncio.run(deferred.value.trigger.on_kill())  # what Airflow does to a deferred task marked failed / timed out
    deadline = time.monotonic() + 30
    while run.process.poll() is None:
        assert time.monotonic() < deadline, "the job's process is still running"
        time.sleep(0.2)
    assert run.state()["result_state"] == "CANCELED" and run.process.returncode != 0
