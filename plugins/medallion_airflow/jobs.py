"""The task factory: (job, arguments) -> an Airflow task for the configured target.

- local: `LocalSparkJobOperator` runs the wheel's console entry point in a subprocess with a local Spark session,
  streams its output into the task log, returns the job's JSON run summary (XCom) and fails with the job's
  one-line reason on a non-zero exit.
- databricks: `DatabricksSubmitRunOperator` submitting a one-task run whose task is a `python_wheel_task` of the
  same entry point with the same named parameters.

Both receive the same templated arguments: environment, config path, data interval and run id.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import deque
from typing import Any, Sequence

from airflow.sdk import BaseOperator

from medallion_airflow import settings

JOBS = ("generate", "bronze", "silver", "gold", "monitor")

# Templated on every run; Airflow renders them for both targets.
COMMON_ARGUMENTS = {
    # asset-triggered runs have no data interval in their context: `default` keeps the template valid
    "interval-start": "{{ data_interval_start | default(none) | iso }}",
    "interval-end": "{{ data_interval_end | default(none) | iso }}",
    "run-id": "{{ run_id }}",
}


def iso(value) -> str:
    """Jinja filter: a datetime as ISO-8601, or '' when there is none (the job then treats it as unset)."""
    return value.isoformat() if value else ""


TEMPLATE_FILTERS = {"iso": iso}


def entry_point(job: str) -> str:
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}; jobs are {JOBS}")
    return f"medallion-{job}"


def job_parameters(job: str, extra: dict[str, str] | None = None, target: str | None = None) -> dict[str, str]:
    """The named parameters a job gets (rendered by Airflow's templating at run time)."""
    target = target or settings.target()
    cfg = settings.pipeline_config()
    params = {"env": settings.pipeline_env()}
    if target == "databricks":
        params["config"] = cfg["databricks"]["config_path"]
    params.update(COMMON_ARGUMENTS)
    params.update(extra or {})
    return params


def as_cli(named: dict[str, Any]) -> list[str]:
    """Named parameters as the `--key=value` flags Databricks passes to a python_wheel_task entry point."""
    return [f"--{key}={value}" for key, value in named.items() if value not in (None, "")]


def databricks_payload(job: str, named: dict[str, str]) -> dict[str, Any]:
    """A Jobs API runs/submit payload running the job's entry point from the wheel, compute from config."""
    cfg = settings.pipeline_config()["databricks"]
    wheel = cfg["wheel_path"]
    task: dict[str, Any] = {
        "task_key": f"medallion_{job}",
        "python_wheel_task": {"package_name": cfg["wheel_package"], "entry_point": entry_point(job),
                              "named_parameters": dict(named)},
    }
    payload: dict[str, Any] = {"tasks": [task]}
    if cfg.get("compute", "serverless") == "serverless":
        env_spec = dict(cfg["serverless_environment"]["spec"])
        env_spec["dependencies"] = [wheel]
        key = cfg["serverless_environment"]["environment_key"]
        task["environment_key"] = key
        payload["environments"] = [{"environment_key": key, "spec": env_spec}]
    else:
        task["new_cluster"] = dict(cfg["job_cluster"])
        task["libraries"] = [{"whl": wheel}]
    return payload


class LocalSparkJobOperator(BaseOperator):
    """Run one medallion job's console entry point locally and stream its output into the task log."""

    template_fields: Sequence[str] = ("named_parameters",)
    template_fields_renderers = {"named_parameters": "json"}
    ui_color = "#e8f4ea"

    def __init__(self, *, job: str, named_parameters: dict[str, str], **kwargs):
        super().__init__(**kwargs)
        self.job = job
        self.named_parameters = named_parameters
        self._proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        exe = os.path.join(os.path.dirname(sys.executable), entry_point(self.job))
        if not os.path.exists(exe):
            exe = shutil.which(entry_point(self.job)) or exe
        return [exe, *as_cli(self.named_parameters)]

    def execute(self, context) -> dict[str, Any]:
        cmd = self.command()
        self.log.info("Running %s", " ".join(cmd))
        env = dict(os.environ, MEDALLION_HOME=str(settings.PROJECT_ROOT), PYTHONUNBUFFERED="1")
        tail: deque[str] = deque(maxlen=50)
        summary: dict[str, Any] | None = None
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      bufsize=1, env=env, cwd=str(settings.PROJECT_ROOT), start_new_session=True)
        try:
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                self.log.info("%s", line)
                if line.startswith("{") and '"job"' in line:
                    try:
                        summary = json.loads(line)
                    except ValueError:
                        pass
            code = self._proc.wait()
        finally:
            self._terminate()
        if code != 0:
            reason = next((l[len("ERROR: "):] for l in reversed(tail) if l.startswith("ERROR: ")), None)
            raise RuntimeError(f"medallion-{self.job} failed (exit {code}): {reason or tail[-1] if tail else ''}")
        if summary is None:
            raise RuntimeError(f"medallion-{self.job} exited 0 but printed no run summary")
        return summary

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self.log.warning("Stopping medallion-%s (pid %s)", self.job, proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def on_kill(self) -> None:
        self._terminate()


def job_task(job: str, *, task_id: str | None = None, arguments: dict[str, str] | None = None,
             target: str | None = None, **kwargs) -> BaseOperator:
    """Build the task that runs `job` on the configured target (kwargs go to the operator: outlets, ...)."""
    target = target or settings.target()
    named = job_parameters(job, arguments, target)
    task_id = task_id or job
    cfg = settings.pipeline_config()
    timeout_s = int(cfg["airflow"]["job_timeout_minutes"]) * 60
    if target == "local":
        return LocalSparkJobOperator(task_id=task_id, job=job, named_parameters=named, **kwargs)
    from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
    payload = databricks_payload(job, named)
    return DatabricksSubmitRunOperator(
        task_id=task_id,
        databricks_conn_id=cfg["databricks"]["connection_id"],
        json=payload,
        run_name=f"medallion-{job} {{{{ dag.dag_id }}}} {{{{ run_id }}}}",
        timeout_seconds=timeout_s,
        **kwargs,
    )
