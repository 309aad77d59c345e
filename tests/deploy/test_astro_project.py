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
from conftest import ROOT, load_dags
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
    image = re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)[0]
    match = re.fullmatch(r"astrocrpublic\.azurecr\.io/runtime:(\d+\.\d+-\d+)(?:-python-(\d+\.\d+))?-base", image)
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


def _stages() -> dict[str, str]:
    """The Dockerfile's build stages by name, each with its instructions."""
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", _dockerfile(), flags=re.M | re.I)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_image_installs_the_runtime_lock_and_only_the_pytest_stage_adds_test_tools():
    stages = _stages()
    assert list(stages)[-1] == "production"  # the default build target: what `astro dev start` / `astro deploy` build
    assert re.search(r"^FROM runtime AS production\s*$", _dockerfile(), re.M) and not stages["production"].strip()
    runtime = stages["runtime"]
    # the -base image has no ONBUILD: nothing installs requirements.txt (unlocked below the top level)
    instructions = "\n".join(l for l in _dockerfile().splitlines() if not l.lstrip().startswith("#"))
    assert "requirements.txt" not in instructions
    assert re.search(r"pip install --no-cache-dir -r \S*requirements\.lock && pip check", runtime)
    assert "requirements-dev" not in runtime
    assert re.search(r"pip install --no-cache-dir -r \S*requirements-dev\.lock", stages["pytest"])
    assert re.search(r"^FROM runtime AS pytest", _dockerfile(), re.M)
    # the job package is installed after the copy, without dependencies (they are in the lock)
    assert re.search(r"pip install --no-cache-dir --no-deps /usr/local/airflow/spark_jobs", runtime)
    assert runtime.index("requirements.lock") < runtime.index("COPY --chown=astro:0 . /usr/local/airflow")
    assert (ROOT / "spark_jobs" / "pyproject.toml").is_file()
    assert re.search(r"MEDALLION_HOME=/usr/local/airflow", runtime)
    reqs = _requirements()
    for name in ("apache-airflow-providers-databricks", "pyspark", "delta-spark", "databricks-sdk"):
        assert str(reqs[name].specifier).startswith("=="), name


def test_packages_txt_brings_a_java_spark_supports_and_the_build_checks_the_debian_release():
    packages = [l.strip() for l in (ROOT / "packages.txt").read_text().splitlines() if l.strip()]
    (jre,) = [p for p in packages if re.fullmatch(r"openjdk-\d+-jre-headless", p)]
    assert int(re.search(r"\d+", jre).group()) in (8, 11, 17)  # the Javas Spark 3.5 runs on
    runtime = _stages()["runtime"]
    assert re.search(r'\$VERSION_CODENAME" != "\$DEBIAN_RELEASE"', runtime) and "exit 1" in runtime
    assert runtime.index("DEBIAN_RELEASE") < runtime.index("apt-get install") and "java -version" in runtime


@pytest.mark.network
def test_every_line_of_packages_txt_installs_on_the_runtimes_debian_release(tmp_path):
    """Asks the Debian release named in the Dockerfile (ARG DEBIAN_RELEASE) for each package of packages.txt, through
    a private apt state on this machine's mirror (the system's sources untouched). Needs apt and a Debian mirror."""
    release = re.search(r"^ARG DEBIAN_RELEASE=(\w+)$", _dockerfile(), re.M).group(1)
    if not shutil.which("apt-get"):
        pytest.skip("apt-get is not on this machine")
    sources = list(Path("/etc/apt/sources.list.d").glob("*.sources"))
    mirror = next((m for s in sources for m in re.findall(r"^URIs:\s*(\S+)", s.read_text(), re.M)), None)
    if mirror is None and Path("/etc/apt/sources.list").is_file():
        mirror = next(iter(re.findall(r"^deb\s+(\S+)", Path("/etc/apt/sources.list").read_text(), re.M)), None)
    if mirror is None:
        pytest.skip("no Debian mirror configured here")
    (tmp_path / "lists" / "partial").mkdir(parents=True)
    (tmp_path / "sources.list").write_text(f"deb {mirror} {release} main\n")
    opts = [
        "-o", f"Dir::Etc::SourceList={tmp_path / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={tmp_path / 'lists'}", "-o", f"Dir::Cache={tmp_path}", "-o", "Dir::Cache::pkgcache=",
        "-o", "Dir::Cache::srcpkgcache=", "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip
    update = subprocess.run(["apt-get", *opts, "update", "-qq"], capture_output=True, text=True, timeout=600)
    assert update.returncode == 0, update.stderr[-2000:]
    packages = [l.strip() for l in (ROOT / "packages.txt").read_text().splitlines() if l.strip()]
    for package in packages:
        policy = subprocess.run(["apt-cache", *opts, "policy", package], capture_output=True, text=True, timeout=120)
        candidate = re.search(r"Candidate:\s*(\S+)", policy.stdout)
        assert candidate and candidate.group(1) != "(none)", f"{package} is not in Debian {release}"


def test_airflow_settings_define_connections_pools_and_the_target():
    from medallion_airflow.settings import TARGETS

    settings = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
    conns = {c["conn_id"]: c for c in settings["connections"]}
    pipeline = yaml.safe_load((ROOT / "include" / "pipeline.yaml").read_text())
    databricks = conns["databricks_default"]
    assert pipeline["databricks"]["connection_id"].endswith(":-databricks_default}")
    assert databricks["conn_type"] == "databricks" and not databricks["conn_password"]  # a placeholder, no secret
    smtp = conns["smtp_default"]
    assert smtp["conn_type"] == "smtp" and smtp["conn_extra"]["disable_tls"] is True and not smtp["conn_password"]
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


def _image_python() -> str:
    return re.search(r"^FROM \S+-python-(\d+\.\d+)\b", _dockerfile(), re.M).group(1)


@pytest.mark.skipif(
    f"{sys.version_info[0]}.{sys.version_info[1]}" != _image_python(),
    reason="runs on the image's Python only (CI's second tier: make test-unit on it)",
)
def test_dag_integrity_tests_pass_from_the_image_build_context(tmp_path):
    """What `astro dev pytest tests/dags` runs: the DAG tests, from a copy holding only the build context, on the
    image's Python version (never passing only because this interpreter is another one)."""
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


def test_tasks_that_start_spark_take_a_slot_of_the_declared_pool(monkeypatch):
    """With the image's environment, every local-target task (a Spark JVM in the container) is in the pool that
    airflow_settings.yaml declares, one slot each; Databricks-target tasks (which only wait) stay out of it."""
    from test_astro_compose import dockerfile_env

    from medallion_airflow.jobs import LocalSparkJobOperator

    (pool,) = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]["pools"]
    monkeypatch.setenv("MEDALLION_SPARK_POOL", dockerfile_env()["MEDALLION_SPARK_POOL"])
    bag = load_dags(monkeypatch, target="local")
    spark_tasks = [t for d in bag.dags.values() for t in d.tasks if isinstance(t, LocalSparkJobOperator)]
    assert {t.task_id for t in spark_tasks} >= {"generate", "bronze", "silver", "gold", "monitor"}
    assert {(t.pool, t.pool_slots) for t in spark_tasks} == {(pool["pool_name"], 1)}
    others = [t for d in bag.dags.values() for t in d.tasks if not isinstance(t, LocalSparkJobOperator)]
    assert others and all(t.pool != pool["pool_name"] for t in others)
    bag = load_dags(monkeypatch, target="databricks")
    assert all(t.pool != pool["pool_name"] for d in bag.dags.values() for t in d.tasks)
