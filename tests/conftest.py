"""Shared fixtures: one local Spark session per test process, and a fresh lakehouse folder per test; and the order
`make test` hands tests to its two workers (pytest-xdist, `--dist loadscope`)."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from time_budget import tier  # the tier a test belongs to, as the timing table counts it

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # DagBag does not put plugins/ on sys.path by itself

# Everything the tests write goes to a temporary lakehouse, never to the project's .lakehouse.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="medallion-tests-"))
os.environ["MEDALLION_LAKEHOUSE"] = str(_SESSION_DIR / "lakehouse")
os.environ["MEDALLION_HOME"] = str(ROOT)
os.environ.setdefault("MEDALLION_SPARK_DRIVER_MEMORY", "2g")
os.environ.pop("MEDALLION_TARGET", None)
os.environ.pop("MEDALLION_ENV", None)


# Which tests one worker runs together, in order (`make test` runs two pytest-xdist workers): the Airflow tests share
# nothing with each other, but each starts the four Airflow components and real Spark jobs as tasks, so two at once
# would oversubscribe 2 cores; the deploy and DAG tests share module fixtures (a built wheel, a parsed DagBag). Every
# Spark-job test is its own unit, so the other worker keeps busy while the Airflow tests run. (A scheduler rather than
# `xdist_group` marks: under pytest 9, xdist 3.8's loadgroup no longer renames the node ids it groups by.) The Spark
# Connect and cluster tiers each share one server (or cluster) between their tests, so each is one unit too.
_ONE_WORKER_TIERS = ("e2e", "connect", "cluster")
# ... and those two are one unit between them: each runs a server's JVMs beside the tests' own, and on 2 cores the
# two at once starve the Python workers a Connect server starts (it waits 10 s for them to connect back)
_SAME_UNIT = {"connect": "engines", "cluster": "engines"}
_PER_FILE_TIERS = ("deploy", "dags", "suite")
_FIRST = ("e2e", "connect", "cluster")  # the longest units start first, so none ends the run alone


def _unit(nodeid: str) -> str:
    t = tier(nodeid)
    if t in _ONE_WORKER_TIERS:
        return _SAME_UNIT.get(t, t)
    return nodeid.split("::")[0] if t in _PER_FILE_TIERS else nodeid


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return Units(config, log)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: tier(item.nodeid) not in _FIRST)  # stable: otherwise collection order


@pytest.fixture(scope="session")
def spark():
    """The session every in-process test shares. Its JVM lives for the whole test process, so it keeps the optimizing
    JIT compiler that a short job process goes without (`local_spark.java_options`): measured on a tiny silver run,
    13-15 s with it against 19-20 s with the quick compiler only, once warm. Job processes the Airflow tests start
    keep the configured options."""
    from medallion.config import load_settings
    from medallion.session import get_spark

    options = os.environ.get("MEDALLION_SPARK_JAVA_OPTIONS")
    os.environ.setdefault("MEDALLION_SPARK_JAVA_OPTIONS", "-XX:+UseSerialGC")
    try:
        session = get_spark(load_settings(), app_name="medallion-tests")
    finally:
        if options is None:
            os.environ.pop("MEDALLION_SPARK_JAVA_OPTIONS")
    yield session
    session.stop()


@pytest.fixture
def lakehouse(tmp_path, monkeypatch, spark):
    """A fresh lakehouse root for one test (path-based Delta tables, so the one session serves them all)."""
    root = tmp_path / "lakehouse"
    monkeypatch.setenv("MEDALLION_LAKEHOUSE", str(root))
    return root


@pytest.fixture
def settings(lakehouse):
    from medallion.config import load_settings

    return load_settings()


@pytest.fixture
def run_job(lakehouse):
    """Run a job in-process through its real entry-point code; return (exit code, JSON run summary)."""
    import importlib

    from medallion.cli import run_job as _run_job

    def _run(job: str, *argv: str, expect_ok: bool = True) -> dict:
        module = importlib.import_module(f"medallion.{job}")
        add_arguments = getattr(module, "add_arguments", None)
        out = io.StringIO()
        with redirect_stdout(out):
            code = _run_job(job, module.run, add_arguments, list(argv), getattr(module, "idle", None))
        lines = [l for l in out.getvalue().splitlines() if l.startswith("{")]
        summary = json.loads(lines[-1])
        if expect_ok:
            assert code == 0, summary
        summary["_exit_code"] = code
        return summary

    return _run
