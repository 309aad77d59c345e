"""The local task: runs the entry point, streams its log, returns the run summary, fails with the job's reason."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from medallion_airflow.jobs import LocalSparkJobOperator, as_cli, job_parameters


def test_named_parameters_become_the_flags_databricks_would_pass():
    assert as_cli({"env": "local", "interval-start": "", "run-id": "r1"}) == ["--env=local", "--run-id=r1"]
    params = job_parameters("generate", {"patients": "5"}, target="local")
    assert params["env"] == "local" and params["patients"] == "5" and "run-id" in params


def test_a_failing_job_fails_the_task_with_its_one_line_reason():
    op = LocalSparkJobOperator(
        task_id="t", job="generate", named_parameters={"env": "local", "interval-start": "yesterday"}
    )
    with pytest.raises(RuntimeError, match=r"medallion-generate failed \(exit 1\): not an ISO-8601 timestamp"):
        op.execute({})


def test_the_summary_line_is_returned(monkeypatch):
    op = LocalSparkJobOperator(task_id="t", job="monitor", named_parameters={})
    script = "import json; print('working'); print(json.dumps({'job': 'monitor', 'status': 'success', 'n': 3}))"
    monkeypatch.setattr(op, "command", lambda: [sys.executable, "-c", script])
    assert op.execute({}) == {"job": "monitor", "status": "success", "n": 3}


def test_killing_the_task_stops_the_job_process(monkeypatch, tmp_path):
    marker = tmp_path / "still-running"
    script = (
        f"import time, pathlib\nprint('started', flush=True)\ntime.sleep(60)\npathlib.Path({str(marker)!r}).touch()"
    )
    op = LocalSparkJobOperator(task_id="t", job="silver", named_parameters={})
    monkeypatch.setattr(op, "command", lambda: [sys.executable, "-c", script])
    errors = []
    runner = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, op.execute, {})))
    runner.start()
    deadline = time.time() + 20
    while op._proc is None and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    op.on_kill()  # what Airflow calls on a timeout or when the task is marked failed
    runner.join(timeout=30)
    assert not runner.is_alive() and errors
    assert op._proc.poll() is not None and not marker.exists()
