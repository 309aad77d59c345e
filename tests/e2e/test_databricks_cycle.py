"""One hourly cycle through the real Airflow components with the Databricks target, against a workspace that runs
what it is sent (scripts/workspace.py: the provider's operators and triggers submit `python_wheel_task` runs; on
serverless the wheel runs in its environment on a Spark Connect server with ANSI on and reads the hash salt from the
secret scope, on a job cluster it is a library of a driver on a standalone cluster whose `spark_env_vars` carry the
salt as a secret reference). Its nine domain tables must equal those of the local target (classic local session, salt
from the environment) for the same hour and seed: the same code, two targets, one result.

Extended tier (`make test-databricks`), once per compute: measured on two cores, 676 s on serverless and 1,264 s on
job clusters (one driver at a time: they share one Derby metastore)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_backfill import _comparable, _differences

from medallion.config import ENTITIES, load_settings

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import airflow_local  # noqa: E402  (scripts/ is not a package)
import workspace as emulator  # noqa: E402

PATIENTS = 120
HOURS_BACK = 30  # as in test_cycle: away from the hours the scheduler generates on its own (header-only files)
SALT = "databricks-cycle-test-salt"
LAYERS = ("bronze", "silver", "gold")
JOBS = ("generate", "bronze", "silver", "gold")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _local_cycle(lakehouse: Path, interval_start: datetime) -> None:
    """The same hour on the local target: each job's entry point, as the local task factory runs it."""
    env = {**os.environ, "MEDALLION_LAKEHOUSE": str(lakehouse), "MEDALLION_HASH_SALT": SALT}
    for var in ("MEDALLION_TARGET", "MEDALLION_ENV", "SPARK_REMOTE"):
        env.pop(var, None)
    interval = [
        f"--interval-start={interval_start.isoformat()}",
        f"--interval-end={(interval_start + timedelta(hours=1)).isoformat()}",
        "--run-id=local",
    ]
    for job in JOBS:
        extra = [f"--patients={PATIENTS}"] if job == "generate" else []
        exe = Path(sys.executable).with_name(f"medallion-{job}")
        done = subprocess.run([str(exe), "--env=local", *interval, *extra], env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"local {job}: {done.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.extended
@pytest.mark.parametrize("compute", emulator.COMPUTES)
def test_an_hourly_cycle_on_the_databricks_target_equals_the_local_targets(tmp_path_factory, spark, compute):
    home = tmp_path_factory.mktemp("databricks-cycle")
    interval_start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS_BACK)
    workspace = emulator.start(home / "workspace", SALT, compute=compute)
    env = {
        "AIRFLOW_HOME": str(home / "airflow"),
        "MEDALLION_PATIENTS_PER_BATCH": "0",  # the scheduler's own hourly runs land header-only files
        "MEDALLION_AIRFLOW_PORT": str(_free_port()),
        **workspace.airflow_env(),
    }
    try:
        with airflow_local.environment(env):
            airflow_local.setup()
            with airflow_local.components() as (api, stack, _mailbox):
                summaries = airflow_local.run_cycle(
                    api, stack, timeout=900, interval_start=interval_start, conf={"patients_per_batch": PATIENTS}
                )
        requests = list(workspace.requests)
    finally:
        workspace.stop()

    # every job ran in the workspace, as a submitted run, and its summary came back through runs/get-output
    submitted = [r.task["python_wheel_task"]["entry_point"] for r in workspace.runs.values()]
    assert {f"medallion-{job}" for job in (*JOBS, "monitor")} <= set(submitted)
    assert all(r.result_state == "SUCCESS" for r in workspace.runs.values())
    assert summaries["generate"]["clean_rows"]["patients"] == PATIENTS
    assert summaries["silver"]["quality_score"] >= load_settings().quality["target_score"]
    if compute == "serverless":  # silver's salt: from the secret scope (a job cluster's from its spark_env_vars)
        assert "/api/2.0/secrets/get" in {r["path"] for r in requests}
    else:
        assert all(r.task["new_cluster"]["spark_env_vars"] for r in workspace.runs.values())

    _local_cycle(home / "local", interval_start)
    emulated = workspace.settings()
    local = load_settings("local", variables={"MEDALLION_LAKEHOUSE": str(home / "local")})
    problems, counts = [], {}
    for layer in LAYERS:
        for entity in ENTITIES:
            name = local.table_name(layer, entity)
            # the workspace's managed tables live in its catalog's storage (spark.sql.warehouse.dir of its compute)
            remote = spark.read.format("delta").load(str(workspace.root / "managed" / f"{emulated.schema}.db" / name))
            mine = spark.read.format("delta").load(os.path.join(local.location("warehouse"), local.schema, name))
            assert remote.columns == mine.columns
            if "_pipeline_env" in remote.columns:  # bronze's lineage names the environment: the one difference
                assert {r[0] for r in remote.select("_pipeline_env").distinct().collect()} == {emulated.env}
                assert {r[0] for r in mine.select("_pipeline_env").distinct().collect()} == {local.env}
                remote, mine = remote.drop("_pipeline_env"), mine.drop("_pipeline_env")
            remote, mine = _comparable(remote, layer), _comparable(mine, layer)
            counts[name] = (remote.count(), mine.count())
            problem = _differences(remote, mine, layer, entity)
            if problem:
                problems.append({"table": name, **problem})
    assert problems == [], problems
    assert all(n > 0 for n, _ in counts.values()), counts
