"""Astro CLI project: the Dockerfile's Runtime matches our Airflow, the files `astro dev start` reads are well
formed, and the DAG tests run from the image's build context as they do from the checkout."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from packaging.requirements import Requirement
from packaging.version import Version

# Astro Runtime 3 builds and the Airflow release each carries (Astronomer's runtime catalog, runtimeVersionsV3).
RUNTIME_AIRFLOW = {"3.3-7": "3.3.1", "3.3-8": "3.3.2"}


def _requirements() -> dict[str, Requirement]:
    lines = [l.split("#")[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    return {r.name: r for r in (Requirement(l) for l in lines if l)}


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_the_runtime_image_carries_the_airflow_we_pin():
    dockerfile = _dockerfile()
    (image,) = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    match = re.fullmatch(r"astrocrpublic\.azurecr\.io/runtime:(\d+\.\d+-\d+)(?:-python-(\d+\.\d+))?", image)
    assert match, image
    runtime, python = match.groups()
    airflow = RUNTIME_AIRFLOW[runtime]
    pin = _requirements()["apache-airflow"]
    assert pin.specifier.contains(airflow)
    # the image's own build (e.g. 3.3.2+astro.1) satisfies the pin, so installing requirements.txt keeps it
    assert pin.specifier.contains(f"{airflow}+astro.1")
    assert not pin.specifier.contains("3.3.1") and not pin.specifier.contains("3.4.0")
    assert re.search(rf'io\.medallion\.airflow-version="{re.escape(airflow)}"', dockerfile)
    lock = (ROOT / "requirements.lock").read_text()
    assert re.search(rf"^apache-airflow=={re.escape(airflow)}$", lock, re.M)
    assert python == "3.12" and f'io.medallion.python-version="{python}"' in dockerfile
    assert Version(python) >= Version("3.11")  # tomllib (tests) and the wheel's requires-python


def test_requirements_suit_the_astro_build():
    text = (ROOT / "requirements.txt").read_text()
    # installed by an ONBUILD step before the project is copied: no local paths or editable installs
    assert not re.search(r"^\s*(-e|\.|/)", text, re.M)
    reqs = _requirements()
    for name in ("apache-airflow-providers-databricks", "pyspark", "delta-spark", "databricks-sdk"):
        assert str(reqs[name].specifier).startswith("=="), name
    # the job package is installed after the copy, without dependencies (they are in requirements.txt)
    dockerfile = _dockerfile()
    assert re.search(r"^RUN pip install --no-cache-dir --no-deps /usr/local/airflow/spark_jobs$", dockerfile, re.M)
    assert (ROOT / "spark_jobs" / "pyproject.toml").is_file()
    assert re.search(r"MEDALLION_HOME=/usr/local/airflow", dockerfile)


def test_packages_txt_brings_the_java_runtime_spark_needs():
    packages = [l.strip() for l in (ROOT / "packages.txt").read_text().splitlines() if l.strip()]
    assert packages == ["openjdk-17-jre-headless"]


def test_airflow_settings_define_connections_pools_and_the_target():
    from medallion_airflow.settings import TARGETS

    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    conns = {c["conn_id"]: c for c in settings["connections"]}
    pipeline = yaml.safe_load((ROOT / "include" / "pipeline.yaml").read_text())
    databricks = conns["databricks_default"]
    assert pipeline["databricks"]["connection_id"].endswith(":-databricks_default}")
    assert databricks["conn_type"] == "databricks" and not databricks["conn_password"]  # a placeholder, no secret
    smtp = conns["smtp_default"]
    assert smtp["conn_type"] == "smtp" and smtp["conn_port"] == 1025 and smtp["conn_host"] == "host.docker.internal"
    assert smtp["conn_extra"]["disable_tls"] is True and not smtp["conn_password"]
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    assert "1025:1025" in compose["services"]["mailpit"]["ports"]  # the mail catcher this connection reaches
    (pool,) = settings["pools"]
    assert pool["pool_name"] and int(pool["pool_slot"]) >= 1
    variables = {v["variable_name"]: v["variable_value"] for v in settings["variables"]}
    assert variables["MEDALLION_TARGET"] in TARGETS
    assert re.search(r"MEDALLION_TARGET=local", _dockerfile())


def test_the_astro_project_config_and_dockerignore():
    config = yaml.safe_load((ROOT / ".astro" / "config.yaml").read_text())
    assert config["project"]["name"] == "medallion"
    patterns = [
        l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")
    ]
    for local_state in (".venv", ".lakehouse", ".cache", ".airflow", ".git", ".env"):
        assert local_state in patterns
    for needed in (
        "dags/medallion_bronze.py",
        "plugins/medallion_airflow/jobs.py",
        "include/pipeline.yaml",
        "spark_jobs/pyproject.toml",
        "spark_jobs/medallion/cli.py",
        "requirements.txt",
        "packages.txt",
        "tests/dags/test_dag_integrity.py",
        "pytest.ini",
        "Dockerfile",
    ):
        assert not any(fnmatch.fnmatch(needed, p) or needed.startswith(p.rstrip("/") + "/") for p in patterns), needed


def _build_context(dest: Path) -> None:
    """Copy what `docker build` would send (the .dockerignore rules this project uses: names and path prefixes)."""
    patterns = [
        l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")
    ]

    def ignored(rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return any(
            fnmatch.fnmatch(rel, p) or rel.startswith(p + "/") or (p.startswith("**/") and fnmatch.fnmatch(name, p[3:]))
            for p in patterns
        )

    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT).as_posix()
        if any(ignored("/".join(rel.split("/")[: i + 1])) for i in range(rel.count("/") + 1)):
            continue
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


@pytest.mark.slow
def test_dag_integrity_tests_pass_from_the_image_build_context(tmp_path):
    """What `astro dev pytest tests/dags` runs: the DAG tests, from a copy holding only the build context."""
    project = tmp_path / "airflow"
    _build_context(project)
    assert not (project / ".venv").exists() and (project / "dags" / "medallion_gold.py").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDALLION_")}
    env.update(MEDALLION_TARGET="local")  # as the Dockerfile sets it
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/dags", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", out.stdout) and not re.search(r"\b\d+ failed\b", out.stdout)
