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
def _load(path: str, mtime: float) -> dict[str, Any]:
    return load_raw(path)


def pipeline_config() -> dict[str, Any]:
    """include/pipeline.yaml, loaded by the jobs' own loader (the wheel is installed beside Airflow)."""
    path = config_path()
    return _load(str(path), path.stat().st_mtime)


def _env_or_var(name: str) -> str | None:
    return os.environ.get(name) or os.environ.get(f"AIRFLOW_VAR_{name}")


def target() -> str:
    value = (_env_or_var("MEDALLION_TARGET") or "local").strip().lower()
    if value not in TARGETS:
        raise ValueError(f"MEDALLION_TARGET must be one of {TARGETS}, not {value!r}")
    return value


def pipeline_env() -> str:
    value = _env_or_var("MEDALLION_ENV")
    if value:
        return value
    return "local" if target() == "local" else "dev"


def dag_config(dag_id: str) -> dict[str, Any]:
    return pipeline_config()["airflow"]["dags"][dag_id]


def databricks_settings(env: str | None = None) -> dict[str, Any]:
    """The Databricks side of one environment: compute, where the bundle put the wheel and config, its secrets.

    `databricks` in pipeline.yaml holds what all environments share; `environments.<env>` picks the compute
    (`serverless` or `job_cluster`), the secret scope and the workspace folder the bundle syncs to.
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
    files = str(env_cfg["workspace_files"]).rstrip("/")
    return {
        "env": env,
        "compute": compute,
        "connection_id": db["connection_id"],
        "package": db["wheel_package"],
        "wheel_path": db.get("wheel_path") or f"{files}/spark_jobs/dist/{db['wheel_file']}",
        "config_path": db.get("config_path") or f"{files}/include/pipeline.yaml",
        "polling_period_seconds": int(db.get("polling_period_seconds", 30)),
        "serverless_environment": db["serverless_environment"],
        "job_cluster": {**db["job_cluster"], **env_cfg.get("job_cluster", {})},
        "catalog": env_cfg["catalog"],
        "secret_scope": env_cfg["secret_scope"],
        "secret_keys": dict(env_cfg.get("secret_keys", {})),
        "hash_salt_env": env_cfg.get("hash_salt_env", "MEDALLION_HASH_SALT"),
    }


def sla_minutes(dag_id: str) -> float:
    """Minutes after a run of `dag_id` is queued by which it must be done (its Deadline Alert's interval).

    `airflow.sla_minutes_override` (env MEDALLION_SLA_MINUTES_OVERRIDE) wins for every DAG — for alert drills and
    tests; else `airflow.dags.<dag_id>.sla_minutes`, else `airflow.default_sla_minutes`."""
    af = pipeline_config()["airflow"]
    override = af.get("sla_minutes_override")
    if override not in (None, ""):
        return float(override)
    return float(af.get("dags", {}).get(dag_id, {}).get("sla_minutes") or af.get("default_sla_minutes", 60))
