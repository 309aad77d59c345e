"""Databricks target: every DAG task renders to a Jobs API runs/submit payload that the SDK's data classes accept
whole, with the wheel task and everything the job needs to find its catalog in its named parameters, the compute of
its environment (serverless, or a job cluster from the platform's pool under its policy, dedicated to the run
identity), the identity it runs as, a timeout and a run name; and every environment's default compute meets the
5-minute landing -> gold latency budget."""

from __future__ import annotations

import json

import pytest
import tomllib
import yaml
from conftest import ROOT, RUN_ID, SERVICE_PRINCIPAL, load_dags, rendered_payload, submit_round_trip

from medallion_airflow import jobs, settings

DAG_JOBS = {
    "medallion_generate": "generate",
    "medallion_bronze": "bronze",
    "medallion_silver": "silver",
    "medallion_gold": "gold",
    "medallion_monitor": "monitor",
}


def _pyproject() -> dict:
    with (ROOT / "spark_jobs" / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]


def _pipeline() -> dict:
    return yaml.safe_load((ROOT / "include" / "pipeline.yaml").read_text())


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_every_task_renders_a_complete_runs_submit_payload(monkeypatch, env):
    monkeypatch.setenv("MEDALLION_HASH_SALT", "salt-value-that-must-never-leave-the-scope")
    monkeypatch.setenv("MEDALLION_USER", "juan")
    monkeypatch.delenv("MEDALLION_WHEEL_PATH", raising=False)
    bag = load_dags(monkeypatch, env=env)
    project, cfg = _pyproject(), settings.pipeline_config()
    env_cfg = cfg["environments"][env]
    files = env_cfg["workspace_files"]
    from medallion.version import wheel_name

    wheel = f"{files}/spark_jobs/dist/{wheel_name(ROOT / 'spark_jobs')}"
    identity = "user@example.com" if env == "dev" else SERVICE_PRINCIPAL
    assert set(bag.dags) == set(DAG_JOBS)
    for dag_id, job in DAG_JOBS.items():
        dag = bag.dags[dag_id]
        task = dag.get_task(job)  # the job's task (a DAG may hold Airflow-side tasks beside it)
        payload = rendered_payload(dag, task)
        # nothing lost or misplaced: the SDK's Jobs classes hold every field
        assert submit_round_trip(payload) == payload, dag_id
        assert payload["run_name"] == f"medallion-{job} {dag_id} {RUN_ID}"
        assert payload["timeout_seconds"] == cfg["airflow"]["job_timeout_minutes"] * 60
        (db_task,) = payload["tasks"]
        wheel_task = db_task["python_wheel_task"]
        assert wheel_task["package_name"] == project["name"]
        assert wheel_task["entry_point"] == f"medallion-{job}" and wheel_task["entry_point"] in project["scripts"]
        named = wheel_task["named_parameters"]
        assert named["env"] == env and named["config"] == f"{files}/include/pipeline.yaml"
        assert named["interval-start"] == "2026-11-27T05:00:00+00:00"
        assert named["interval-end"] == "2026-11-27T06:00:00+00:00"
        assert named["run-id"] == RUN_ID
        assert named["user"] == "juan"  # the catalog {env}_{user} travels as a parameter ...
        assert "{{" not in json.dumps(named), "every parameter is rendered"
        # ... and nothing in job-level environment variables (serverless-only): the job finds its catalog alone
        assert "environment_variables" not in payload and "environment_variables_key" not in db_task
        assert payload["run_as"] == ({"user_name": identity} if env == "dev" else {"service_principal_name": identity})
        # the default compute of every environment: serverless, performance-optimized (the latency budget)
        assert env_cfg["compute"] == "serverless"
        (environment,) = payload["environments"]
        assert db_task["environment_key"] == environment["environment_key"]
        assert environment["spec"]["dependencies"] == [wheel]
        assert environment["spec"]["environment_version"] == "5"
        assert payload["performance_target"] == "PERFORMANCE_OPTIMIZED"
        assert "new_cluster" not in db_task and "libraries" not in db_task
        assert "salt-value-that-must-never-leave-the-scope" not in json.dumps(payload)
        assert task.deferrable and task.openlineage_inject_parent_job_info


def test_every_environment_default_meets_the_five_minute_budget(monkeypatch, fresh_settings_cache):
    """Landing -> gold in seconds per compute choice, from Databricks' documented start times and the bench's work
    figures (include/pipeline.yaml databricks.latency_budget). One run per hop (what the DAGs submit) on serverless
    performance-optimized compute meets 300 s; a job cluster per hop does not, from a pool or not; one multi-task
    job per cycle meets it on serverless and on a pool."""
    monkeypatch.setenv("MEDALLION_DATABRICKS_USER", SERVICE_PRINCIPAL)
    budget = settings.latency_budget()
    target = settings.pipeline_config()["databricks"]["latency_budget"]["target_seconds"]
    assert target == 300
    assert budget == {
        "serverless": {"per_task": 290.0, "per_cycle": 150.0},
        "serverless_standard": {"per_task": 1190.0, "per_cycle": 450.0},
        "job_cluster_pool": {"per_task": 470.0, "per_cycle": 210.0},
        "job_cluster": {"per_task": 1370.0, "per_cycle": 510.0},
    }
    for env in ("dev", "staging", "prod"):
        choice = settings.compute_choice(env)
        assert choice == "serverless" and budget[choice]["per_task"] <= target, (env, choice)
    assert budget["job_cluster_pool"]["per_task"] > target and budget["job_cluster_pool"]["per_cycle"] <= target


def test_a_job_cluster_comes_from_the_pool_under_the_policy_dedicated_to_the_run_identity(
    tmp_path, monkeypatch, fresh_settings_cache
):
    raw = _pipeline()
    raw["environments"]["prod"]["compute"] = "job_cluster"
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MEDALLION_CONFIG", str(path))
    monkeypatch.setenv("MEDALLION_DATABRICKS_USER", SERVICE_PRINCIPAL)
    monkeypatch.setenv("MEDALLION_USER", "claims")
    # no pool or policy: the deployment is refused when the DAGs are parsed
    with pytest.raises(ValueError, match="instance_pool_id / policy_id"):
        jobs.databricks_payload("gold", {"env": "prod"}, env="prod")
    monkeypatch.setenv("MEDALLION_DATABRICKS_INSTANCE_POOL_ID", "pool-0000-stand-in")
    monkeypatch.setenv("MEDALLION_DATABRICKS_CLUSTER_POLICY_ID", "policy-0000-stand-in")
    bag = load_dags(monkeypatch, env="prod")
    dag = bag.dags["medallion_gold"]
    task = dag.get_task("gold")
    payload = rendered_payload(dag, task)
    assert submit_round_trip(payload) == payload
    (db_task,) = payload["tasks"]
    cluster = db_task["new_cluster"]
    assert cluster["data_security_mode"] == "SINGLE_USER" and cluster["single_user_name"] == SERVICE_PRINCIPAL
    assert cluster["instance_pool_id"] == cluster["driver_instance_pool_id"] == "pool-0000-stand-in"
    assert cluster["policy_id"] == "policy-0000-stand-in" and cluster["apply_policy_default_values"] is True
    assert "node_type_id" not in cluster and "driver_node_type_id" not in cluster  # the pool's, cloud-neutral here
    env_cfg = raw["environments"]["prod"]
    # the salt reaches the job as a secret reference Databricks resolves, never as a value
    assert cluster["spark_env_vars"] == {
        "MEDALLION_HASH_SALT": f"{{{{secrets/{env_cfg['secret_scope']}/{env_cfg['secret_keys']['hash_salt']}}}}}"
    }
    assert db_task["libraries"] == [{"whl": settings.databricks_settings("prod")["wheel_path"]}]
    assert "environments" not in payload and "environment_key" not in db_task and "performance_target" not in payload
    assert db_task["python_wheel_task"]["named_parameters"]["user"] == "claims"
    assert payload["run_as"] == {"service_principal_name": SERVICE_PRINCIPAL}
    assert settings.compute_choice("prod") == "job_cluster_pool"


def test_staging_and_prod_refuse_to_run_without_their_service_principal(monkeypatch, fresh_settings_cache):
    monkeypatch.delenv("MEDALLION_DATABRICKS_USER", raising=False)
    for env in ("staging", "prod"):
        with pytest.raises(ValueError, match="no run identity"):
            settings.databricks_settings(env)
    assert settings.databricks_settings("dev")["run_as"] == "user@example.com"  # the placeholder of a laptop


def test_the_job_finds_its_catalog_from_its_parameters_alone(monkeypatch):
    """On a job cluster no job-level environment variable reaches the run: `--user` alone must give the catalog
    (before, a prod run without MEDALLION_USER silently used `prod_user`)."""
    from medallion import cli

    for var in ("MEDALLION_USER", "MEDALLION_ENV", "MEDALLION_ANALYSTS_GROUP"):
        monkeypatch.delenv(var, raising=False)
    seen = {}

    def run(ctx):
        seen.update(
            catalog=ctx.settings.catalog,
            volume=ctx.settings.location("landing"),
            analysts=ctx.settings.raw["governance"]["analysts_group"],
            env=ctx.settings.env,
        )
        return {}

    named = {"env": "prod", "user": "claims", "analysts-group": "claims-analysts", "run-id": "r1"}
    assert cli.run_job("gold", run, argv=jobs.as_cli(named)) == 0
    assert seen == {
        "catalog": "prod_claims",
        "volume": "/Volumes/prod_claims/data_eng/landing",
        "analysts": "claims-analysts",
        "env": "prod",
    }
    # the Airflow side passes exactly those flags whenever its environment sets them
    monkeypatch.setenv("MEDALLION_USER", "claims")
    monkeypatch.setenv("MEDALLION_ANALYSTS_GROUP", "claims-analysts")
    monkeypatch.setenv("MEDALLION_ENV", "dev")
    params = jobs.job_parameters("gold", target="databricks")
    assert params["user"] == "claims" and params["analysts-group"] == "claims-analysts" and params["env"] == "dev"


def test_an_environment_can_switch_compute_and_override_the_cluster(tmp_path, monkeypatch, fresh_settings_cache):
    raw = _pipeline()
    raw["environments"]["dev"]["compute"] = "job_cluster"
    raw["environments"]["dev"]["job_cluster"] = {"num_workers": 8, "instance_pool_id": "p", "policy_id": "q"}
    raw["environments"]["staging"].pop("compute")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MEDALLION_CONFIG", str(path))
    monkeypatch.setenv("MEDALLION_DATABRICKS_USER", SERVICE_PRINCIPAL)
    dev = jobs.databricks_payload("silver", {"env": "dev"}, env="dev")["tasks"][0]
    assert dev["new_cluster"]["num_workers"] == 8
    assert dev["new_cluster"]["spark_version"] == raw["databricks"]["job_cluster"]["spark_version"]
    staging = jobs.databricks_payload("silver", {"env": "staging"}, env="staging")
    assert staging["tasks"][0]["environment_key"] == staging["environments"][0]["environment_key"]
    raw["environments"]["dev"]["compute"] = "gpu"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="compute must be serverless or job_cluster"):
        jobs.databricks_payload("silver", {}, env="dev")
    with pytest.raises(ValueError, match="does not run on Databricks"):
        jobs.databricks_payload("silver", {}, env="local")


def test_wheel_and_config_locations_can_be_pinned_from_the_environment(monkeypatch, fresh_settings_cache):
    monkeypatch.setenv("MEDALLION_DATABRICKS_USER", SERVICE_PRINCIPAL)
    monkeypatch.setenv("MEDALLION_WHEEL_PATH", "/Volumes/c/s/artifacts/medallion_jobs-0.1.0-py3-none-any.whl")
    monkeypatch.setenv("MEDALLION_REMOTE_CONFIG", "/Volumes/c/s/artifacts/pipeline.yaml")
    monkeypatch.setenv("MEDALLION_ENV", "staging")
    db = settings.databricks_settings("staging")
    assert db["wheel_path"] == "/Volumes/c/s/artifacts/medallion_jobs-0.1.0-py3-none-any.whl"
    assert jobs.job_parameters("gold", target="databricks")["config"] == "/Volumes/c/s/artifacts/pipeline.yaml"


def test_the_round_trip_catches_what_the_jobs_api_would_drop_or_reject():
    good = jobs.databricks_payload("gold", {"env": "dev"}, env="dev")
    assert submit_round_trip(good) == good
    typo = json.loads(json.dumps(good))
    typo["tasks"][0]["python_wheel_tasks"] = typo["tasks"][0].pop("python_wheel_task")
    assert submit_round_trip(typo) != typo
    misplaced = json.loads(json.dumps(good))
    misplaced["new_cluster"] = {"num_workers": 1}
    with pytest.raises(AssertionError, match="no field 'new_cluster'"):
        submit_round_trip(misplaced)
    wrong_shape = json.loads(json.dumps(good))
    wrong_shape["tasks"] = wrong_shape["tasks"][0]
    with pytest.raises(AssertionError, match="expected a list"):
        submit_round_trip(wrong_shape)


def test_secret_reference_survives_airflow_templating():
    from jinja2 import Environment

    ref = jobs.secret_reference("medallion-prod", "hash-salt")
    assert Environment().from_string(ref).render() == "{{secrets/medallion-prod/hash-salt}}"
