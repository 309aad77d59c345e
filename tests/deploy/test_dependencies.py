"""The wheel installs on serverless compute without open-source pyspark.

A serverless job's environment is the pinned environment version's client (Databricks Connect, which brings its own
`pyspark` modules but no `pyspark` distribution) plus the dependencies the job lists: our wheel. If anything in the
wheel's dependency tree requires `pyspark`, pip installs open-source pyspark next to Databricks Connect and the
session breaks. So the serverless environment's dependency list is resolved here with pyspark made impossible (a
`pyspark<0` constraint: any requirement on it fails the resolution) for the environment's Python and client
version from include/pipeline.yaml. The `local` extra (soda-core-spark-df, for local runs) is resolved the same way
and must fail: that is the layout that used to be the wheel's base dependencies.

Needs PyPI (CI has it): `-m "not network"` skips it offline.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from medallion.config import load_raw

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def serverless_environment(tmp_path_factory, built_wheel) -> dict:
    cfg = load_raw(env={})["databricks"]["serverless_environment"]
    out = tmp_path_factory.mktemp("resolve")
    wheel = built_wheel
    constraints = out / "no-pyspark.txt"
    constraints.write_text("pyspark<0\n")
    return {
        "wheel": wheel,
        "constraints": constraints,
        "python": cfg["client"]["python"],
        "client": f"databricks-connect=={cfg['client']['databricks_connect']}",
        "dir": out,
    }


def resolve(env: dict, requirement: str) -> subprocess.CompletedProcess:
    requirements = env["dir"] / "requirements.in"
    requirements.write_text(f"{env['client']}\n{requirement}\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "uv",
            "pip",
            "compile",
            str(requirements),
            "--python-version",
            env["python"],
            "--python-platform",
            "x86_64-manylinux_2_28",
            "--constraint",
            str(env["constraints"]),
            "--no-header",
            "--no-annotate",
            "--quiet",
        ],
        cwd=env["dir"],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_serverless_environment_resolves_without_pyspark(serverless_environment):
    env = serverless_environment
    result = resolve(env, f"medallion_jobs @ {env['wheel'].as_uri()}")
    assert result.returncode == 0, result.stderr[-2000:]
    pins = {line.split("==")[0].strip().lower() for line in result.stdout.splitlines() if "==" in line}
    assert "pyspark" not in pins
    assert {"databricks-connect", "soda-core", "soda-core-spark", "faker", "numpy", "pyyaml"} <= pins, pins
    assert "soda-core-spark-df" not in pins


def test_the_local_extra_would_pull_pyspark_and_is_refused(serverless_environment):
    env = serverless_environment
    result = resolve(env, f"medallion_jobs[local] @ {env['wheel'].as_uri()}")
    assert result.returncode != 0
    assert "pyspark" in result.stderr
