"""Databricks target: every DAG task renders to a Jobs API runs/submit payload that the SDK's data classes accept
whole, with the wheel task, the compute of its environment, a timeout and a run name."""
from __future__ import annotations

import json
import tomllib

import pytest
import yaml
from conftest import ROOT, RUN_ID, load_dags, rendered_payload, submit_round_trip

from medallion_airflow import jobs, settings

DAG_JOBS = {"medallion_generate": "generate", "medallion_bronze": "bronze", "medallion_silver": "silver",
            "medallion_gold": "gold", "medallion_monitor": "monitor"}


def _pyproject() -> dict:
    with (ROOT / "spark_jobs" / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]


def _pipeline() -> dict:
    return yaml.safe_load((ROOT / "include" / "pipeline.yaml").read_text())


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_every_task_renders_a_complete_runs_submit_payload(monkeypatch, env):
    monkeypatch.setenv("MEDALLION_HASH_SALT", "salt-value-that-must-never-leave-the-scope")
    monkeypatch.setenv("MEDALLION_USER", "juan")
    bag = load_dags(monkeypatch, env=env)
    project, cfg = _pyproject(), settings.pipeline_config()
    env_cfg = cfg["environments"][env]
    files = env_cfg["workspace_files"]
    wheel = f"{files}/spark_jobs/dist/{project['name']}-{project['version']}-py3-none-any.whl"
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
        assert "{{" not in json.dumps(named), "every parameter is rendered"
        (variables,) = payload["environment_variables"]
        assert db_task["environment_variables_key"] == variables["environment_variables_key"]
        assert variables["spec"]["variables"] == {"MEDALLION_ENV": env, "MEDALLION_USER": "juan"}
        if env_cfg["compute"] == "serverless":
            (environment,) = payload["environments"]
            assert db_task["environment_key"] == environment["environment_key"]
            assert environment["spec"]["dependencies"] == [wheel]
            assert environment["spec"]["environment_version"] == cfg["databricks"]["serverless_environment"]["spec"][
                "environment_version"]
            assert "new_cluster" not in db_task and "libraries" not in db_task
        else:
            cluster = db_task["new_cluster"]
            for key, value in cfg["databricks"]["job_cluster"].items():
                assert cluster[key] == value
            # the salt reaches the job as a secret reference Databricks resolves, never as a value
            assert cluster["spark_env_vars"] == {
                "MEDALLION_HASH_SALT": f"{{{{secrets/{env_cfg['secret_scope']}/{env_cfg['secret_keys']['hash_salt']}}}}}"}
            assert db_task["libraries"] == [{"whl": wheel}]
            assert "environments" not in payload and "environment_key" not in db_task
        assert "salt-value-that-must-never-leave-the-scope" not in json.dumps(payload)


def test_compute_follows_the_environment_serverless_by_default():
    raw = _pipeline()
    computes = {env: c.get("compute", "serverless") for env, c in raw["environments"].items()
                if c["target"] == "databricks"}
    assert computes == {"dev": "serverless", "staging": "serverless", "prod": "job_cluster"}


def test_an_environment_can_switch_compute_and_override_the_cluster(tmp_path, monkeypatch, fresh_settings_cache):
    raw = _pipeline()
    raw["environments"]["dev"]["compute"] = "job_cluster"
    raw["environments"]["dev"]["job_cluster"] = {"num_workers": 8}
    raw["environments"]["staging"].pop("compute")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MEDALLION_CONFIG", str(path))
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
