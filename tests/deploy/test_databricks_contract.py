"""Contract test of the Databricks target: the real operator (the provider's DatabricksSubmitRunOperator, deferrable),
DatabricksHook and DatabricksExecutionTrigger of each DAG task talk HTTP to a local server speaking the Jobs API
endpoints they call (runs/submit, runs/get, runs/get-output, runs/cancel). The server checks the bearer token,
validates every submitted payload against the SDK's Jobs data classes and honours idempotency tokens as the Jobs
API does (a token it has seen returns that token's run). A task runs as Airflow runs it: execute under its timeout;
when it defers, the trigger runs to its event and execute_complete finishes the task; a retry is a new try with the
same task-state store."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import RUN_ID, TaskStateStore, load_dags, submit_round_trip, task_context

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from workspace import JsonApi  # noqa: E402  (scripts/ is not a package)

TOKEN = "dapi-contract-test-token"


class FakeJobsApi(JsonApi):
    """An in-memory Jobs API 2.2: each submitted run walks through `states`, the last one repeating. The HTTP side
    (bearer token, JSON, request log) is the emulated workspace's (scripts/workspace.py); the runs are scripted."""

    def __init__(self):
        super().__init__(TOKEN)
        self.runs: dict[int, dict] = {}
        self.tokens: dict[str, int] = {}
        self.states: list[dict] = [{"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}]
        self.task_error: str | None = None
        self.task_logs: str | None = None  # what a python_wheel_task printed (runs/get-output `logs`)
        self.next_run_id = 1000

    # ---- the endpoints ----------------------------------------------------------------------------
    def route(self, method, path, query, body):
        if method == "POST" and path == "/api/2.2/jobs/runs/submit":
            try:
                assert submit_round_trip(body) == body, "payload changed by the SDK round trip"
            except AssertionError as exc:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": str(exc)}
            with self.lock:
                token = body.get("idempotency_token")
                if token in self.tokens:  # the Jobs API: a known token returns its run, whatever its state
                    return 200, {"run_id": self.tokens[token]}
                run_id = self.next_run_id
                self.next_run_id += 1
                self.runs[run_id] = {"payload": body, "polls": 0, "cancelled": False}
                if token:
                    self.tokens[token] = run_id
            return 200, {"run_id": run_id}
        if method == "GET":  # the sync hook sends GET parameters as a query, the async one (trigger) as a JSON body
            query = {**(body or {}), **query}
        if method == "GET" and path == "/api/2.2/jobs/runs/get":
            run_id = int(query["run_id"])
            run = self.runs.get(run_id)
            if run is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {run_id} does not exist."}
            return 200, self.run_info(run_id, run)
        if method == "GET" and path == "/api/2.2/jobs/runs/get-output":
            task_run_id = int(query["run_id"])
            if run_id_of_task(task_run_id) not in self.runs:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {task_run_id} does not exist."}
            output = {"metadata": {"run_id": task_run_id}}
            if self.task_error:
                output["error"] = self.task_error
            if self.task_logs is not None:
                output["logs"] = self.task_logs
            return 200, output
        if method == "POST" and path == "/api/2.2/jobs/runs/cancel":
            run = self.runs[int(body["run_id"])]
            run["cancelled"] = True
            return 200, {}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"{method} {path}"}

    def run_info(self, run_id: int, run: dict) -> dict:
        if run["cancelled"]:
            state = {"life_cycle_state": "TERMINATED", "result_state": "CANCELED", "state_message": "Run cancelled."}
        else:
            state = dict(self.states[min(run["polls"], len(self.states) - 1)])
            run["polls"] += 1
        state.setdefault("state_message", "")
        task = run["payload"]["tasks"][0]
        return {
            "run_id": run_id,
            "job_id": 7,
            "run_name": run["payload"].get("run_name"),
            "run_page_url": f"http://127.0.0.1:{self.port}/#job/runs/{run_id}",
            "state": state,
            "tasks": [{"run_id": run_id * 10, "task_key": task["task_key"], "attempt_number": 0, "state": state}],
        }


def run_id_of_task(task_run_id: int) -> int:
    return task_run_id // 10  # run_info numbers the one task run as run_id * 10


@pytest.fixture
def jobs_api(monkeypatch):
    api = FakeJobsApi()
    api.serve()
    # the `databricks_default` connection of the DAGs, pointed at the local server over plain http
    monkeypatch.setenv("AIRFLOW_CONN_DATABRICKS_DEFAULT", json.dumps(api.connection()))
    yield api
    api.shutdown()


def run_trigger(trigger) -> dict:
    """Run a trigger as the triggerer does, to its first event."""

    async def first_event():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(first_event())


def run_task(
    dag,
    task,
    timeout_s: float | None = None,
    try_number: int = 1,
    store: TaskStateStore | None = None,
    defer: bool = True,
):
    """Render the task and run it as Airflow's task runner does: execute under execution_timeout, on_kill on
    timeout; a deferral runs its trigger to the event and resumes in execute_complete (defer=False: the
    TaskDeferred is raised to the caller). Returns the context (its ti holds the XComs)."""
    from airflow.sdk.exceptions import TaskDeferred
    from airflow.sdk.execution_time.task_runner import _run_execute_callable

    task.polling_period_seconds = 1  # the config's 10 s, shortened for the test
    if timeout_s is not None:
        task.execution_timeout = timedelta(seconds=timeout_s)
    ctx = task_context(dag, task, try_number=try_number, store=store)
    task.render_template_fields(ctx)
    try:
        _run_execute_callable(ctx, task.execute, task)
    except TaskDeferred as deferred:
        if not defer:
            raise
        event = run_trigger(deferred.trigger)
        getattr(task, deferred.method_name)(ctx, event)
    return ctx


@pytest.mark.parametrize(
    "dag_id", ["medallion_generate", "medallion_bronze", "medallion_silver", "medallion_gold", "medallion_monitor"]
)
def test_a_task_succeeds_when_the_run_succeeds(monkeypatch, jobs_api, dag_id):
    jobs_api.states = [
        {"life_cycle_state": "PENDING"},
        {"life_cycle_state": "RUNNING"},
        {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"},
    ]
    dag = load_dags(monkeypatch, env="dev").dags[dag_id]
    task = dag.get_task(dag_id.removeprefix("medallion_"))
    ctx = run_task(dag, task)
    (submit,) = jobs_api.calls("/runs/submit")
    assert submit["method"] == "POST" and submit["auth"] == f"Bearer {TOKEN}"
    payload = submit["body"]
    job = dag_id.removeprefix("medallion_")
    assert payload["run_name"] == f"medallion-{job} {dag_id} {RUN_ID}"
    assert payload["tasks"][0]["python_wheel_task"]["entry_point"] == f"medallion-{job}"
    assert payload["tasks"][0]["python_wheel_task"]["named_parameters"]["run-id"] == RUN_ID
    run_id = jobs_api.runs and next(iter(jobs_api.runs))
    gets = jobs_api.calls("/runs/get")
    assert len(gets) >= 3 and {g["query"]["run_id"] for g in gets} == {str(run_id)}
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in jobs_api.requests)
    assert not jobs_api.calls("/runs/cancel") and not jobs_api.calls("/runs/get-output")
    assert payload["idempotency_token"].startswith("medallion-") and len(payload["idempotency_token"]) <= 64
    assert ctx["ti"].xcom["run_id"] == run_id  # the run id (and its page) reach the task's XCom ...
    assert ctx["ti"].xcom["run_page_url"].endswith(f"/runs/{run_id}")
    assert ctx["task_state_store"]["databricks_run_id"] == run_id  # ... and the durable store (retries reconnect)


def test_a_failed_run_fails_the_task_with_the_run_error(monkeypatch, jobs_api):
    from airflow.providers.common.compat.sdk import AirflowException

    jobs_api.states = [
        {
            "life_cycle_state": "TERMINATED",
            "result_state": "FAILED",
            "state_message": "Task medallion_silver failed with message: Workload failed",
        }
    ]
    jobs_api.task_error = "ERROR: environment 'dev' needs a hash salt in $MEDALLION_HASH_SALT"
    dag = load_dags(monkeypatch, env="dev").dags["medallion_silver"]
    with pytest.raises(AirflowException) as failure:
        run_task(dag, dag.get_task(dag.dag_id.removeprefix("medallion_")))
    message = str(failure.value)
    assert "FAILED" in message and "needs a hash salt" in message
    (output,) = jobs_api.calls("/runs/get-output")
    run_id = next(iter(jobs_api.runs))
    assert output["query"]["run_id"] == str(run_id * 10)  # the failed task's run, as the Jobs API numbers it
    assert not jobs_api.calls("/runs/cancel")


def test_an_internal_error_fails_the_task_with_the_state_message(monkeypatch, jobs_api):
    from airflow.providers.common.compat.sdk import AirflowException

    jobs_api.states = [
        {"life_cycle_state": "RUNNING"},
        {
            "life_cycle_state": "INTERNAL_ERROR",
            "state_message": "Could not reach driver of cluster 0101-abc: Spark is not running",
        },
    ]
    dag = load_dags(monkeypatch, env="prod").dags["medallion_gold"]
    with pytest.raises(AirflowException, match="INTERNAL_ERROR.*Could not reach driver of cluster"):
        run_task(dag, dag.get_task(dag.dag_id.removeprefix("medallion_")))
    assert jobs_api.calls("/runs/submit")[0]["body"]["run_as"] == {
        "service_principal_name": "00000000-0000-4000-8000-00000000abcd"
    }  # prod runs as its service principal


def test_a_deferred_task_that_is_killed_cancels_its_run_and_the_run_has_its_own_timeout(monkeypatch, jobs_api):
    """Deferred, the wait is the trigger's: a task marked failed or timed out kills the trigger, whose on_kill cancels
    the run; and Databricks ends the run itself at the job timeout (timeout_seconds) should nobody be listening."""
    from airflow.sdk.exceptions import TaskDeferred

    jobs_api.states = [{"life_cycle_state": "RUNNING"}]  # never finishes
    dag = load_dags(monkeypatch, env="staging").dags["medallion_bronze"]
    task = dag.get_task("bronze")
    with pytest.raises(TaskDeferred) as deferred:
        run_task(dag, task, defer=False)
    assert deferred.value.trigger.serialize()[0].endswith("DatabricksExecutionTrigger")
    asyncio.run(deferred.value.trigger.on_kill())
    (submit,) = jobs_api.calls("/runs/submit")
    assert int(submit["body"]["timeout_seconds"]) == int(task.timeout_seconds) > 0
    (cancel,) = jobs_api.calls("/runs/cancel")
    run_id = next(iter(jobs_api.runs))
    assert cancel["method"] == "POST" and cancel["body"] == {"run_id": run_id}
    assert cancel["auth"] == f"Bearer {TOKEN}"
    assert jobs_api.runs[run_id]["cancelled"]


def test_a_wrong_token_is_refused_and_nothing_runs(monkeypatch, jobs_api):
    from airflow.providers.common.compat.sdk import AirflowException

    monkeypatch.setenv(
        "AIRFLOW_CONN_DATABRICKS_DEFAULT",
        json.dumps(
            {
                "conn_type": "databricks",
                "host": "127.0.0.1",
                "port": jobs_api.port,
                "schema": "http",
                "password": "not-the-token",
            }
        ),
    )
    dag = load_dags(monkeypatch, env="dev").dags["medallion_monitor"]
    with pytest.raises(AirflowException, match="403"):
        run_task(dag, dag.get_task(dag.dag_id.removeprefix("medallion_")))
    assert jobs_api.runs == {} and jobs_api.calls("/runs/submit")[0]["auth"] == "Bearer not-the-token"


def test_the_server_rejects_a_payload_the_jobs_api_would_not_accept(jobs_api):
    import requests

    bad = {
        "tasks": [{"task_key": "t", "python_wheel_task": {"package_name": "x", "entry_point": "y"}, "new_clutser": {}}]
    }
    reply = requests.post(
        f"http://127.0.0.1:{jobs_api.port}/api/2.2/jobs/runs/submit",
        json=bad,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert reply.status_code == 400 and jobs_api.runs == {}


def test_the_bronze_alert_reads_the_run_summary_from_the_run_output(monkeypatch, jobs_api):
    """On Databricks the failed-file alert finds bronze's run summary in the task run's stdout (runs/get-output)."""
    from medallion_airflow import alerts

    summary = {
        "job": "bronze",
        "status": "success",
        "unreadable_files": ["claims: 2026-11-27T0500Z/claims.csv.gz"],
        "tables": {
            "claims": {
                "table": "dev_user.data_eng.bronze_claims",
                "files": [
                    {
                        "file": "2026-11-27T0500Z/claims.csv.gz",
                        "status": "unreadable",
                        "rows": 0,
                        "rescued_rows": 0,
                        "reason": "EOFError: Compressed file ended before the end-of-stream marker was reached",
                    }
                ],
            }
        },
    }
    jobs_api.task_logs = "INFO job bronze starting\n" + json.dumps(summary) + "\n"
    dag = load_dags(monkeypatch, env="dev").dags["medallion_bronze"]
    ctx = run_task(dag, dag.get_task("bronze"))
    run_id = ctx["ti"].xcom["run_id"]
    sent = []
    monkeypatch.setattr(alerts, "send_email", lambda subject, body, context=None: sent.append((subject, body)))
    assert alerts.alert_unreadable_files(run_id, "medallion_bronze", RUN_ID) == summary["unreadable_files"]
    (output,) = jobs_api.calls("/runs/get-output")
    assert output["query"]["run_id"] == str(run_id * 10)  # the task run's output, not the parent run's
    [(subject, body)] = sent
    assert "1 landing file" in subject and "2026-11-27T0500Z/claims.csv.gz" in body and "EOFError" in body


def test_tasks_defer_to_the_triggerer_with_the_run_to_watch(monkeypatch, jobs_api):
    from airflow.sdk.exceptions import TaskDeferred

    jobs_api.states = [{"life_cycle_state": "PENDING"}, {"life_cycle_state": "RUNNING"}]
    dag = load_dags(monkeypatch, env="dev").dags["medallion_silver"]
    task = dag.get_task("silver")
    assert task.deferrable
    with pytest.raises(TaskDeferred) as deferred:
        run_task(dag, task, defer=False)
    run_id = next(iter(jobs_api.runs))
    jobs_api.states = [{"life_cycle_state": "RUNNING"}, {"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}]
    jobs_api.runs[run_id]["polls"] = 0
    trigger = deferred.value.trigger
    assert trigger.run_id == run_id and deferred.value.method_name == "execute_complete"
    event = run_trigger(trigger)  # the triggerer polls until the run ends
    assert event["run_id"] == run_id and event["run_state"]
    task.execute_complete(task_context(dag, task), event)  # success: no exception


def test_a_retry_reconnects_to_the_run_still_going_instead_of_submitting_another(monkeypatch, jobs_api):
    """Try 1 submits and stores the run id, then its worker dies while the run goes on; try 2 finds the run in the
    task-state store, still RUNNING, and waits for that run — deferred again, no second submit."""
    from airflow.sdk.exceptions import TaskDeferred

    jobs_api.states = [{"life_cycle_state": "RUNNING"}]
    dag = load_dags(monkeypatch, env="dev").dags["medallion_gold"]
    store = TaskStateStore()
    with pytest.raises(TaskDeferred) as first:
        run_task(dag, dag.get_task("gold"), store=store, defer=False)
    (run_id,) = jobs_api.runs
    assert store["databricks_run_id"] == run_id
    with pytest.raises(TaskDeferred) as second:
        run_task(dag, dag.get_task("gold"), try_number=2, store=store, defer=False)
    assert len(jobs_api.calls("/runs/submit")) == 1
    assert first.value.trigger.run_id == second.value.trigger.run_id == run_id
    jobs_api.states = [{"life_cycle_state": "TERMINATED", "result_state": "SUCCESS"}]
    ctx = run_task(dag, dag.get_task("gold"), try_number=3, store=store)  # the run finished: taken as done
    assert len(jobs_api.calls("/runs/submit")) == 1 and ctx["ti"].xcom["run_id"] == run_id


def test_a_retry_after_a_failed_run_submits_a_new_run_with_its_own_token(monkeypatch, jobs_api):
    """The token carries the try number. With one token for every try the Jobs API hands try 2 the failed run of
    try 1, and a DatabricksRunNowOperator/SubmitRun retry reports that run's outcome (apache/airflow#64828)."""
    from airflow.providers.common.compat.sdk import AirflowException
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    jobs_api.states = [{"life_cycle_state": "TERMINATED", "result_state": "FAILED", "state_message": "boom"}]
    jobs_api.task_error = "ERROR: boom"
    dag = load_dags(monkeypatch, env="dev").dags["medallion_bronze"]
    store = TaskStateStore()
    with pytest.raises(AirflowException):
        run_task(dag, dag.get_task("bronze"), store=store)
    with pytest.raises(AirflowException):  # its own run, failing on its own (a token without try: the same run)
        run_task(dag, dag.get_task("bronze"), try_number=2, store=store)
    first, second = (c["body"] for c in jobs_api.calls("/runs/submit"))
    assert first["idempotency_token"] != second["idempotency_token"]
    assert len(jobs_api.runs) == 2 and store["databricks_run_id"] == max(jobs_api.runs)
    # within one try the token is stable: a submit the hook repeats after a lost response gets the same run
    hook = DatabricksHook("databricks_default")
    assert hook.submit_run(dict(second)) == max(jobs_api.runs) and len(jobs_api.runs) == 2


def test_the_run_carries_the_openlineage_parent_of_the_airflow_task(monkeypatch, jobs_api):
    """The provider injects the Airflow task as OpenLineage parent into the wheel task's named parameters (when the
    OpenLineage provider is installed); the job's command line accepts it."""
    import json as _json

    from airflow.providers.databricks.utils import openlineage as ol

    from medallion.cli import build_parser, openlineage_parent

    pytest.importorskip("pyspark")
    from medallion.gold import add_arguments

    context = {
        "parent": {
            "run": {"runId": "0192-parent"},
            "job": {"namespace": "airflow", "name": "medallion_gold.gold"},
            "root": {"run": {"runId": "0192-root"}, "job": {"namespace": "airflow", "name": "medallion_gold"}},
        }
    }
    monkeypatch.setattr(ol, "_is_openlineage_provider_accessible", lambda: True)
    monkeypatch.setattr(ol, "_build_openlineage_parent_run_context", lambda ti: context)
    dag = load_dags(monkeypatch, env="dev").dags["medallion_gold"]
    task = dag.get_task("gold")
    assert task.openlineage_inject_parent_job_info
    run_task(dag, task)
    named = jobs_api.calls("/runs/submit")[0]["body"]["tasks"][0]["python_wheel_task"]["named_parameters"]
    assert _json.loads(named["OPENLINEAGE_CONTEXT"]) == context
    flags = [f"--{k}={v}" for k, v in named.items()]
    args = build_parser("gold", add_arguments).parse_args(flags)  # an unknown flag would exit 2 before the job starts
    assert openlineage_parent(args) == "airflow/medallion_gold.gold run 0192-parent"
