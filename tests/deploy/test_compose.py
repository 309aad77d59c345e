"""docker-compose.yaml: validated by `docker compose config` (the Docker client and its compose v2 plugin; no
engine needed), then checked for the Airflow 3 services, Postgres, Mailpit, the mounts and Java."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import ROOT

AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}


def compose_command() -> list[str]:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        probe = subprocess.run(["docker-compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0 and re.search(r"version v?2\.", probe.stdout):
            return ["docker-compose"]
    pytest.skip("docker compose v2 is not installed here (.ci/run installs Debian's docker-compose v2 package)")


def compose_config(**env) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MEDALLION_", "AIRFLOW_"))}
    environment.update(env)
    out = subprocess.run(
        [*compose_command(), "-f", str(ROOT / "docker-compose.yaml"), "config", "--format", "json"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def config():
    return compose_config()


def test_the_stack_has_airflow_3_components_on_postgres_and_a_mail_catcher(config):
    services = config["services"]
    assert set(services) == AIRFLOW_SERVICES | {"airflow-init", "postgres", "mailpit"}
    commands = {name: services[name]["command"] for name in AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": ["api-server"],
        "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-triggerer": ["triggerer"],
    }
    assert services["postgres"]["image"].startswith("postgres:") and services["postgres"]["healthcheck"]["test"]
    assert services["mailpit"]["image"].startswith("axllent/mailpit:")
    published = {p["target"] for p in services["mailpit"]["ports"]}
    assert {1025, 8025} <= published
    assert {p["target"] for p in services["airflow-apiserver"]["ports"]} == {8080}
    init = services["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true" and "airflow version" in init["command"][-1]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert service["healthcheck"]["test"], name
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        smtp = json.loads(env["AIRFLOW_CONN_SMTP_DEFAULT"])
        assert (smtp["conn_type"], smtp["host"], smtp["port"]) == ("smtp", "mailpit", 1025)


def test_airflow_services_mount_the_project_and_run_java_with_the_pinned_airflow(config):
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    images = set()
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        service = config["services"][name]
        binds = {v["target"]: v["source"] for v in service["volumes"] if v["type"] == "bind"}
        for folder in ("dags", "plugins", "include", "spark_jobs"):
            assert binds[f"/opt/airflow/{folder}"] == str(ROOT / folder), (name, folder)
        dockerfile = service["build"]["dockerfile_inline"]
        assert re.search(rf"^FROM apache/airflow:{re.escape(pinned)}-python3\.\d+$", dockerfile, re.M)
        assert "openjdk-17-jre-headless" in dockerfile  # Spark 3.5 + Delta on Java 17 for the local target
        assert f'"apache-airflow=={pinned}" -r ' in dockerfile  # requirements never move Airflow off the pin
        assert "-e /opt/airflow/spark_jobs" in dockerfile  # the job wheel's entry points, live from the mount
        assert service["environment"]["MEDALLION_HOME"] == "/opt/airflow"
        images.add(service["image"])
    assert len(images) == 1


def test_the_target_and_secrets_come_from_the_environment(config):
    assert config["services"]["airflow-scheduler"]["environment"]["MEDALLION_TARGET"] == "local"
    switched = compose_config(MEDALLION_TARGET="databricks", AIRFLOW_JWT_SECRET="from-the-env")
    env = switched["services"]["airflow-scheduler"]["environment"]
    assert env["MEDALLION_TARGET"] == "databricks" and env["AIRFLOW__API_AUTH__JWT_SECRET"] == "from-the-env"
    text = (ROOT / "docker-compose.yaml").read_text()
    assert "MEDALLION_HASH_SALT:" not in text and "DATABRICKS_DEFAULT:" not in text  # secrets only via .env
    assert re.search(r"env_file:\s*\n\s*- path: \.env\s*\n\s*required: false", text)


def test_an_invalid_file_is_rejected_by_compose(tmp_path):
    bad = tmp_path / "docker-compose.yaml"
    bad.write_text(
        (ROOT / "docker-compose.yaml").read_text().replace("condition: service_healthy", "condition: service_maybe", 1)
    )
    out = subprocess.run(
        [*compose_command(), "-f", str(bad), "config", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
