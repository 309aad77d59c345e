"""What the Airflow side reads from include/pipeline.yaml, and which target and environment it runs against.

Only the process environment is read at DAG-parse time (no database access at import):
- MEDALLION_TARGET (or the Airflow Variable given as AIRFLOW_VAR_MEDALLION_TARGET): `local` (default) or
  `databricks`;
- MEDALLION_ENV (or AIRFLOW_VAR_MEDALLION_ENV): the pipeline environment passed to every job
  (default: `local` for the local target, `dev` for Databricks).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from medallion.config import load_raw

PROJECT_ROOT = Path(os.environ.get("MEDALLION_HOME") or Path(__file__).resolve().parents[2])
TARGETS = ("local", "databricks")


def config_path() -> Path:
    return Path(os.environ.get("MEDALLION_CONFIG") or PROJECT_ROOT / "include" / "pipeline.yaml")


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float, variables: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    return load_raw(path)


def pipeline_config() -> dict[str, Any]:
    """include/pipeline.yaml, loaded by the jobs' own loader (the wheel is installed beside Airflow). Cached per file
    version and per MEDALLION_* environment, which its ${VAR} placeholders read."""
    path = config_path()
    variables = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("MEDALLION_")))
    return _load(str(path), path.stat().st_mtime, variables)


def _env_or_var(name: str) -> str | None:
    return os.environ.get(name) or os.environ.get(f"AIRFLOW_VAR_{name}")


def target() -> str:
    value = (_env_or_var("MEDALLION_TARGET") or "local").strip().lower()
    if value not in TARGETS:
        raise ValueError(f"MEDALLION_TARGET must be one of {TARGETS}, not {value!r}")
    return value


def spark_pool() -> str:
    """The Airflow pool of the tasks that start a local Spark session (one slot each): MEDALLION_SPARK_POOL, set where
    the deployment declares the pool and its slots (the Astro image: `medallion_spark` from airflow_settings.yaml;
    docker-compose.yaml); a bare Airflow without that pool (make run, the e2e tests) uses `default_pool`."""
    return (_env_or_var("MEDALLION_SPARK_POOL") or "default_pool").strip()


def pipeline_env() -> str:
    value = _env_or_var("MEDALLION_ENV")
    if value:
        return value
    return "local" if target() == "local" else "dev"


def wheel_file() -> str:
    """The file name of the job wheel Airflow submits: the version of the sources beside Airflow (the build computes
    the same; spark_jobs/medallion/version.py), or of the installed wheel where the sources are not shipped."""
    from medallion.version import PACKAGE, wheel_name

    sources = PROJECT_ROOT / "spark_jobs"
    if (sources / "medallion").is_dir():
        return wheel_name(sources)
    from importlib.metadata import version

    return f"{PACKAGE}-{version(PACKAGE)}-py3-none-any.whl"


def databricks_settings(env: str | None = None) -> dict[str, Any]:
    """The Databricks side of one environment: compute, identity, where the bundle put the wheel and config, secrets.

    `databricks` in pipeline.yaml holds what all environments share; `environments.<env>` picks the compute
    (`serverless` or `job_cluster`), the identity runs run as (`run_as`), the secret scope and the workspace folder
    the bundle syncs to. Raises ValueError for an environment that could not run (no identity; a job cluster
    without its pool or policy), so a misconfigured deployment fails when the DAGs are parsed, not at 3 a.m.
    """
    cfg = pipeline_config()
    env = env or pipeline_env()
    envs = cfg["environments"]
    if env not in envs:
        raise ValueError(f"unknown environment {env!r}; configured: {', '.join(sorted(envs))}")
    env_cfg = envs[env]
    if env_cfg.get("target") != "databricks":
        raise ValueError(f"environment {env!r} does not run on Databricks (target {env_cfg.get('target')!r})")
    db = cfg["databricks"]
    compute = env_cfg.get("compute", "serverless")
    if compute not in ("serverless", "job_cluster"):
        raise ValueError(f"environment {env!r}: compute must be serverless or job_cluster, not {compute!r}")
    run_as = str(env_cfg.get("run_as") or "").strip()
    if not run_as:
        raise ValueError(
            f"environment {env!r} has no run identity: set MEDALLION_DATABRICKS_USER (the service "
            f"principal's application id that deploys the bundle and runs the jobs)"
        )
    job_cluster = {
        k: v for k, v in {**db["job_cluster"], **env_cfg.get("job_cluster", {})}.items() if v not in (None, "")
    }
    if compute == "job_cluster":
        missing = [k for k in ("instance_pool_id", "policy_id") if k not in job_cluster]
        if missing:
            raise ValueError(
                f"environment {env!r} runs on a job cluster but has no {' / '.join(missing)} "
                f"(MEDALLION_DATABRICKS_INSTANCE_POOL_ID, MEDALLION_DATABRICKS_CLUSTER_POLICY_ID)"
            )
        if job_cluster.get("data_security_mode") == "SINGLE_USER":
            job_cluster["single_user_name"] = run_as
    files = str(env_cfg["workspace_files"]).rstrip("/")
    serverless = dict(db["serverless_environment"])
    return {
        "env": env,
        "compute": compute,
        "run_as": run_as,
        "connection_id": db["connection_id"],
        "package": db["wheel_package"],
        "wheel_path": db.get("wheel_path") or f"{files}/spark_jobs/dist/{wheel_file()}",
        "config_path": db.get("config_path") or f"{files}/include/pipeline.yaml",
        "polling_period_seconds": int(db.get("polling_period_seconds", 30)),
        "deferrable": bool(db.get("deferrable", True)),
        "openlineage_inject_parent_job_info": bool(db.get("openlineage_inject_parent_job_info", False)),
        "serverless_environment": {"environment_key": serverless["environment_key"], "spec": serverless["spec"]},
        "performance_target": serverless.get("performance_target"),
        "job_cluster": job_cluster,
        "catalog": env_cfg["catalog"],
        "secret_scope": env_cfg["secret_scope"],
        "secret_keys": dict(env_cfg.get("secret_keys", {})),
        "hash_salt_env": env_cfg.get("hash_salt_env", "MEDALLION_HASH_SALT"),
    }


COMPUTE_CHOICES = ("serverless", "serverless_standard", "job_cluster_pool", "job_cluster")


def latency_budget(cfg: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Landing -> gold in seconds for every compute choice, one run per hop (`per_task`, what the DAGs submit) and one
    multi-task job per cycle (`per_cycle`, e.g. DatabricksWorkflowTaskGroup), from `databricks.latency_budget`.

    per_task  = sum over hops of (Airflow hand-off + start + work + one poll period)
    per_cycle = one hand-off + one start + all the work + task hand-offs between hops + one poll period
    """
    cfg = cfg or pipeline_config()
    db = cfg["databricks"]
    budget = db["latency_budget"]
    hops = list(budget["hops"])
    poll = float(db.get("polling_period_seconds", 30))
    handoff = float(budget["airflow_handoff_seconds"])
    work = sum(float(budget["run_seconds"][hop]) for hop in hops)
    out = {}
    for choice in COMPUTE_CHOICES:
        start = float(budget["start_seconds"][choice])
        out[choice] = {
            "per_task": len(hops) * (handoff + start + poll) + work,
            "per_cycle": handoff + start + work + (len(hops) - 1) * float(budget["task_handoff_seconds"]) + poll,
        }
    return out


def compute_choice(env: str) -> str:
    """The latency-budget row an environment's compute falls in."""
    db = databricks_settings(env)
    if db["compute"] == "serverless":
        return "serverless" if db["performance_target"] != "STANDARD" else "serverless_standard"
    return "job_cluster_pool" if db["job_cluster"].get("instance_pool_id") else "job_cluster"


def sla_minutes(dag_id: str) -> float:
    """Minutes after a run of `dag_id` is queued by which it must be done (its Deadline Alert's interval).

    `airflow.sla_minutes_override` (env MEDALLION_SLA_MINUTES_OVERRIDE) wins for every DAG — for alert drills and
    tests; else `airflow.dags.<dag_id>.sla_minutes`, else `airflow.default_sla_minutes`."""
    af = pipeline_config()["airflow"]
    override = af.get("sla_minutes_override")
    if override not in (None, ""):
        return float(override)
    return float(af.get("dags", {}).get(dag_id, {}).get("sla_minutes") or af.get("default_sla_minutes", 60))
