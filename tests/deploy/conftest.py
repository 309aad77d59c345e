"""Helpers of the deployment tests: the Jobs API data classes as the schema of a runs/submit payload, and DAGs
loaded for the Databricks target with a given environment."""

from __future__ import annotations

import copy
import dataclasses
import enum
import inspect
import re
import subprocess
import sys
import typing
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _unwrap_optional(tp):
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _round_trip_value(tp, value, where: str):
    tp = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if origin in (list, list):
        (item,) = typing.get_args(tp)
        assert isinstance(value, list), f"{where}: expected a list, got {type(value).__name__}"
        return [_round_trip_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        assert isinstance(value, dict), f"{where}: expected an object, got {type(value).__name__}"
        return tp.from_dict(copy.deepcopy(value)).as_dict()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value).value
    if tp in (str, int, bool, float):
        assert isinstance(value, (str, int, bool, float)), f"{where}: expected a scalar"
        return value
    raise AssertionError(f"{where}: unhandled type {tp}")


def submit_round_trip(payload: dict) -> dict:
    """A runs/submit body through the SDK's Jobs data classes (JobsAPI.submit's parameters) and back.

    Every top-level key must be a parameter of JobsAPI.submit; nested objects go through `from_dict(...).as_dict()`,
    which keeps only the fields the Jobs API defines. A payload equal to its round trip has no unknown or misplaced
    field and nothing of the wrong shape.
    """
    from databricks.sdk.service import jobs

    hints = typing.get_type_hints(jobs.JobsAPI.submit)
    params = set(inspect.signature(jobs.JobsAPI.submit).parameters) - {"self"}
    out = {}
    for key, value in payload.items():
        assert key in params, f"runs/submit has no field {key!r}"
        out[key] = _round_trip_value(hints[key], value, key)
    return out


# Stand-in application id of the service principal staging/prod deploy and run as (no real one anywhere in the repo).
SERVICE_PRINCIPAL = "00000000-0000-4000-8000-00000000abcd"


def load_dags(monkeypatch, target: str = "databricks", env: str | None = None):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("MEDALLION_TARGET", target)
    if env:
        monkeypatch.setenv("MEDALLION_ENV", env)
    if env in ("staging", "prod") and not __import__("os").environ.get("MEDALLION_DATABRICKS_USER"):
        monkeypatch.setenv("MEDALLION_DATABRICKS_USER", SERVICE_PRINCIPAL)
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


class FakeTI:
    """What the operators use of a task instance: XCom pushes and stats tags."""

    def __init__(self, dag_id: str = "dag", task_id: str = "task", try_number: int = 1):
        self.xcom: dict[str, object] = {}
        self.stats_tags: dict[str, str] = {}
        self.dag_id, self.task_id, self.map_index, self.try_number = dag_id, task_id, -1, try_number

    def xcom_push(self, key, value, **_):
        self.xcom[key] = value


class TaskStateStore(dict):
    """Airflow 3.3's task_state_store (where a durable operator keeps the remote run id across retries)."""

    def set(self, key, value):
        self[key] = value


INTERVAL_START = datetime(2026, 11, 27, 5, tzinfo=timezone.utc)
INTERVAL_END = datetime(2026, 11, 27, 6, tzinfo=timezone.utc)
RUN_ID = "scheduled__2026-11-27T06:00:00+00:00"


def task_context(dag, task, try_number: int = 1, store: TaskStateStore | None = None, **extra) -> dict:
    params = dag.params.resolve() if hasattr(dag.params, "resolve") else dict(dag.params)
    ctx = {
        "data_interval_start": INTERVAL_START,
        "data_interval_end": INTERVAL_END,
        "run_id": RUN_ID,
        "logical_date": INTERVAL_START,
        "ds": "2026-11-27",
        "params": params,
        "dag": dag,
        "task": task,
        "ti": FakeTI(dag.dag_id, task.task_id, try_number),
        "task_state_store": TaskStateStore() if store is None else store,
        "var": {},
        "conn": None,
        "macros": None,
    }
    ctx.update(extra)
    return ctx


def rendered_payload(dag, task, context: dict | None = None) -> dict:
    """What the operator would POST to runs/submit: its templates rendered, named fields merged."""
    task = copy.deepcopy(task)
    task.render_template_fields(context or task_context(dag, task))
    return task._get_merged_json()


@pytest.fixture
def fresh_settings_cache():
    from medallion_airflow import settings

    settings._load.cache_clear()
    yield
    settings._load.cache_clear()


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """The wheel, built the way `make wheel` builds it (into a temporary folder)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^wheel:.*\n\t(.+)$", makefile, re.M).group(1)
    assert "uv build --wheel spark_jobs" in recipe, recipe
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "uv", "build", "-q", "--wheel", "spark_jobs", "--out-dir", str(out)],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    return wheel
