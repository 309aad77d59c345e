"""The task factory: (job, arguments) -> an Airflow task for the configured target.

- local: `LocalSparkJobOperator` runs the wheel's console entry point in a subprocess with a local Spark session,
  streams its output into the task log, returns the job's JSON run summary (XCom) and fails with the job's
  one-line reason on a non-zero exit.
- databricks: `DatabricksJobOperator` (the provider's `DatabricksSubmitRunOperator`) submitting a one-task run whose
  task is a `python_wheel_task` of the same entry point with the same named parameters. Deferrable (the wait is the
  triggerer's), reconnecting on a retry to a run that is still going (the provider's task-state reconnect, kept in
  deferrable mode too), and idempotent per try: the submit carries a token made of the task instance and its try
  number, so an HTTP retry of one submit cannot start a second run while a new try after a failed run does start a
  new one (a token without the try number hands the retry the failed run: apache/airflow#64828).

Both receive the same templated arguments: environment, config path, data interval and run id. Everything a job
needs to find its catalog, environment and config travels in those named parameters (never in job-level
environment variables, which only serverless honours).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from medallion.cli import CONFIG_VARIABLE_FLAGS, parse_summary
from medallion_airflow import settings
from medallion_airflow.processes import stop_process_groups

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
        # the values pipeline.yaml fills from Airflow's environment (catalog {env}_{user}, analysts group): the run
        # fills them from these flags, so both sides resolve the same names whatever compute runs the job
        params.update({flag: os.environ[var] for flag, var in CONFIG_VARIABLE_FLAGS.items() if os.environ.get(var)})
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


def run_as(identity: str) -> dict[str, str]:
    """The Jobs API `run_as` of an identity: a user name (an e-mail) or a service principal's application id."""
    return {"user_name": identity} if "@" in identity else {"service_principal_name": identity}


def databricks_payload(job: str, named: dict[str, str], env: str | None = None) -> dict[str, Any]:
    """A Jobs API runs/submit payload running the job's entry point from the wheel, compute per environment.

    - serverless (the default): the task names a serverless environment whose dependencies hold the wheel, in
      performance-optimized mode (the latency budget counts on its start);
    - job_cluster: a new cluster per run from the platform's instance pool under its policy, dedicated to the run
      identity, with the wheel as a library and the hash salt as a secret reference in its environment.
    The run runs as the environment's `run_as`. No job-level environment variables: the job learns its catalog,
    environment and config from its named parameters alone.
    """
    db = settings.databricks_settings(env)
    task: dict[str, Any] = {
        "task_key": f"medallion_{job}",
        "python_wheel_task": {
            "package_name": db["package"],
            "entry_point": entry_point(job),
            "named_parameters": dict(named),
        },
    }
    payload: dict[str, Any] = {"tasks": [task], "run_as": run_as(db["run_as"])}
    if db["compute"] == "serverless":
        env_cfg = db["serverless_environment"]
        spec = {**env_cfg["spec"], "dependencies": [db["wheel_path"]]}
        task["environment_key"] = env_cfg["environment_key"]
        payload["environments"] = [{"environment_key": env_cfg["environment_key"], "spec": spec}]
        if db["performance_target"]:
            payload["performance_target"] = db["performance_target"]
    else:
        cluster = dict(db["job_cluster"])
        salt_key = db["secret_keys"].get("hash_salt")
        if salt_key:
            cluster["spark_env_vars"] = {
                **cluster.get("spark_env_vars", {}),
                db["hash_salt_env"]: secret_reference(db["secret_scope"], salt_key),
            }
        task["new_cluster"] = cluster
        task["libraries"] = [{"whl": db["wheel_path"]}]
    return payload


def idempotency_token(context) -> str:
    """The runs/submit idempotency token of one try of one task instance (at most 64 characters).

    Same try -> same token: a submit the hook retries after a lost response finds the run it already started.
    Next try -> new token: a retry after a failed run starts a new run instead of being handed the failed one.
    """
    ti = context["ti"]
    key = "|".join(
        str(part) for part in (ti.dag_id, ti.task_id, context["run_id"], getattr(ti, "map_index", -1), ti.try_number)
    )
    return "medallion-" + hashlib.sha256(key.encode()).hexdigest()[:40]


@functools.cache
def _submit_run_operator():
    """The Databricks operator class, built on first use so the local target never imports the provider; published
    as `medallion_airflow.jobs.DatabricksJobOperator` (one class object, importable by its qualified name)."""
    from airflow.providers.databricks.operators.databricks import (
        DatabricksSubmitRunOperator,
        _handle_deferrable_databricks_operator_execution,
    )

    class DatabricksJobOperator(DatabricksSubmitRunOperator):
        """`DatabricksSubmitRunOperator` that reconnects before it defers, with a per-try idempotency token.

        The provider's deferrable path submits straight away, skipping its task-state reconnect; here every try
        goes through `execute_resumable` (a stored run still going is reconnected to, a stored run that succeeded
        is taken as done, else a new run is submitted and stored), and only the wait is handed to the triggerer.
        """

        def execute(self, context):
            return self.execute_resumable(context)

        def submit_job(self, context) -> int:
            self.idempotency_token = idempotency_token(context)
            return super().submit_job(context)

        def poll_until_complete(self, external_id, context) -> None:
            if not self.deferrable:
                return super().poll_until_complete(external_id, context)
            self.run_id = external_id
            _handle_deferrable_databricks_operator_execution(self, self._hook, self.log, context)

    DatabricksJobOperator.__module__ = __name__
    globals()["DatabricksJobOperator"] = DatabricksJobOperator
    return DatabricksJobOperator


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
        self._proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
            cwd=str(settings.PROJECT_ROOT),
            start_new_session=True,
        )
        try:
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                self.log.info("%s", line)
                summary = parse_summary(line) or summary
            code = self._proc.wait()
        finally:
            self._terminate()
        if code != 0:
            reason = next((l[len("ERROR: ") :] for l in reversed(tail) if l.startswith("ERROR: ")), None)
            raise RuntimeError(f"medallion-{self.job} failed (exit {code}): {reason or tail[-1] if tail else ''}")
        if summary is None:
            raise RuntimeError(f"medallion-{self.job} exited 0 but printed no run summary")
        return summary

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self.log.warning("Stopping medallion-%s (pid %s)", self.job, proc.pid)
        stop_process_groups([proc], grace_s=20)

    def on_kill(self) -> None:
        self._terminate()


def job_task(
    job: str,
    *,
    task_id: str | None = None,
    arguments: dict[str, str] | None = None,
    target: str | None = None,
    **kwargs,
) -> BaseOperator:
    """Build the task that runs `job` on the configured target (kwargs go to the operator: outlets, ...)."""
    target = target or settings.target()
    named = job_parameters(job, arguments, target)
    task_id = task_id or job
    cfg = settings.pipeline_config()
    timeout_s = int(cfg["airflow"]["job_timeout_minutes"]) * 60
    if target == "local":
        # a local job is a Spark JVM in this container: the pool caps how many run at once
        return LocalSparkJobOperator(
            task_id=task_id, job=job, named_parameters=named, pool=settings.spark_pool(), **kwargs
        )
    db = settings.databricks_settings()
    return _submit_run_operator()(
        task_id=task_id,
        databricks_conn_id=db["connection_id"],
        json=databricks_payload(job, named),
        run_name=f"medallion-{job} {{{{ dag.dag_id }}}} {{{{ run_id }}}}",
        timeout_seconds=timeout_s,  # Databricks ends the run itself after this, deferred or not
        polling_period_seconds=db["polling_period_seconds"],
        deferrable=db["deferrable"],
        openlineage_inject_parent_job_info=db["openlineage_inject_parent_job_info"],
        **kwargs,
    )


def summary_source(task: BaseOperator):
    """What a downstream task receives to find a job's run summary (see `alerts.job_summary`).

    Locally that is the summary itself (the operator's return value). `DatabricksSubmitRunOperator` returns
    nothing and pushes the run id under the `run_id` key; the summary is then read from the run's output.
    """
    from airflow.sdk import XComArg

    return task.output if isinstance(task, LocalSparkJobOperator) else XComArg(task, key="run_id")
