"""The local task: runs the entry point, streams its log, returns the run summary, fails with the job's reason."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

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


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        state = next(l for l in status.splitlines() if l.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return False
    return "Z" not in state.split()[1]  # a killed child that nobody reaped yet is a zombie: it is gone


def test_a_job_that_ignores_sigterm_is_killed_with_everything_it_started_after_the_grace_period():
    """What a Spark driver stuck in a JVM shutdown hook looks like: neither it nor its workers end on SIGTERM."""
    import subprocess

    from medallion_airflow.processes import stop_process_groups

    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    script = (
        f"import signal, subprocess, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"child = subprocess.Popen([sys.executable, '-c', {stubborn!r}])\nprint(child.pid, flush=True)\ntime.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    worker = int(proc.stdout.readline())
    time.sleep(0.3)  # both have set their SIGTERM handlers
    started = time.monotonic()
    stop_process_groups([proc], grace_s=1)
    assert proc.returncode == -9 and time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)
