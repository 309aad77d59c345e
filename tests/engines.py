"""Running the jobs on another engine than the tests' own session: each job is its own process, started through its
console entry point with the variables that point it at that engine (`SPARK_REMOTE` for a Spark Connect server,
`MEDALLION_SPARK_MASTER` for a standalone cluster), as a Databricks job run starts it. The tiers tests/connect and
tests/cluster use it; their tests read the results through the classic in-process session, another engine than the
one that did the work."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "spark_jobs"))  # the tests the tiers run again, and their helpers

import spark_servers  # noqa: E402, F401  (scripts/ is not a package; the tiers start their engines with it)


def job_runner(engine_env: dict[str, str]) -> Callable[..., dict]:
    """A `run_job(job, *argv, expect_ok=True)` like the in-process one: returns the job's JSON run summary with its
    `_exit_code`; with `expect_ok`, a failed job fails the test with the end of its stderr."""

    def run(job: str, *argv: str, expect_ok: bool = True) -> dict:
        command = [str(Path(sys.executable).with_name(f"medallion-{job}")), *argv]
        done = subprocess.run(
            command, env={**os.environ, **engine_env}, capture_output=True, text=True, timeout=900, check=False
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        assert lines, f"{job} printed no summary (exit {done.returncode}): {done.stderr[-3000:]}"
        summary = json.loads(lines[-1])
        if expect_ok:
            assert done.returncode == 0, (summary, done.stderr[-3000:])
        summary["_exit_code"] = done.returncode
        return summary

    return run


def again(test: Callable, *marks) -> Callable:
    """A test of another tier, to be run again in this one (with `marks`: e.g. `pytest.mark.extended`, which only
    `make test-connect` / `make test-cluster` run). A wrapper, so marking it leaves the original test alone."""

    @functools.wraps(test)
    def rerun(*args, **kwargs):
        return test(*args, **kwargs)

    for mark in marks:
        rerun = mark(rerun)
    return rerun
