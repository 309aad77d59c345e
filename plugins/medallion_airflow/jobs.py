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
    params = {"env": settings.pipeline_env()}
    if target == "databricks":
        params["config"] = settings.databricks_settings(params["env"])["config_path"]
    params.update(COMMON_ARGUMENTS)
    params.update(extra or {})
    return params


def as_cli(named: dict[str, Any]) -> list[str]:
    """Named parameters as the `--key=value` flags Databricks passes to a python_wheel_task entry point."""
    return [f"--{key}={value}" for key, value in named.items() if value not in (None, "")]


def secret_reference(scope: str, key: str) -> str:
    """A Databricks secret reference (`{{secrets/scope/key}}`), kept literal through Airflow's Jinja rendering.

    Databricks resolves it when the cluster starts; the secret value never passes through Airflow.
    """
    return "{% raw %}{{secrets/" + scope + "/" + key + "}}{% endraw %}"


ENV_VARS_KEY = "medallion"
# Non-secret settings include/pipeline.yaml reads from the environment that must match on both sides.
PASSED_ENV_VARS = ("MEDALLION_USER", "MEDALLION_ANALYSTS_GROUP")


def databricks_payload(job: str, named: dict[str, str], env: str | None = None) -> dict[str, Any]:
    """A Jobs API runs/submit payload running the job's entry point from the wheel, compute per environment.

    - serverless (the default): the task names a serverless environment whose dependencies hold the wheel;
    - job_cluster: a new cluster per run (spec from config) with the wheel as a library and the hash salt as a
      secret reference in its environment.
    Non-secret settings the job reads from its environment (MEDALLION_ENV, PASSED_ENV_VARS) go in a job-level
    environment-variables entry, which serverless and classic compute both honour.
    """
    db = settings.databricks_settings(env)
    task: dict[str, Any] = {
        "task_key": f"medallion_{job}",
        "python_wheel_task": {"package_name": db["package"], "entry_point": entry_point(job),
                              "named_parameters": dict(named)},
        "environment_variables_key": ENV_VARS_KEY,
    }
    variables = {"MEDALLION_ENV": db["env"]}
    variables.update({name: os.environ[name] for name in PASSED_ENV_VARS if os.environ.get(name)})
    payload: dict[str, Any] = {
        "tasks": [task],
        "environment_variables": [{"environment_variables_key": ENV_VARS_KEY, "spec": {"variables": variables}}],
    }
    if db["compute"] == "serverless":
        env_cfg = db["serverless_environment"]
        spec = {**env_cfg["spec"], "dependencies": [db["wheel_path"]]}
        task["environment_key"] = env_cfg["environment_key"]
        payload["environments"] = [{"environment_key": env_cfg["environment_key"], "spec": spec}]
    else:
        cluster = dict(db["job_cluster"])
        salt_key = db["secret_keys"].get("hash_salt")
        if salt_key:
            cluster["spark_env_vars"] = {**cluster.get("spark_env_vars", {}),
                                         db["hash_salt_env"]: secret_reference(db["secret_scope"], salt_key)}
        task["new_cluster"] = cluster
        task["libraries"] = [{"whl": db["wheel_path"]}]
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
    db = settings.databricks_settings()
    return DatabricksSubmitRunOperator(
        task_id=task_id,
        databricks_conn_id=db["connection_id"],
        json=databricks_payload(job, named),
        run_name=f"medallion-{job} {{{{ dag.dag_id }}}} {{{{ run_id }}}}",
        timeout_seconds=timeout_s,
        polling_period_seconds=db["polling_period_seconds"],
        **kwargs,
    )


def summary_source(task: BaseOperator):
    """What a downstream task receives to find a job's run summary (see `alerts.job_summary`).

    Locally that is the summary itself (the operator's return value). `DatabricksSubmitRunOperator` returns
    nothing and pushes the run id under the `run_id` key; the summary is then read from the run's output.
    """
    from airflow.sdk import XComArg
    return task.output if isinstance(task, LocalSparkJobOperator) else XComArg(task, key="run_id")
