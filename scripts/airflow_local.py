#!/usr/bin/env python
"""Drive the real Airflow components locally: scheduler, dag-processor, triggerer and api-server on SQLite.

    python scripts/airflow_local.py setup           # metadata DB in a project-local AIRFLOW_HOME (idempotent)
    python scripts/airflow_local.py cycle           # start the components, run one hourly cycle, print counts, stop
    python scripts/airflow_local.py cycle --interval-start 2026-11-25T03:00Z --conf '{"patients_per_batch": 500}'
                                                    # the same for one given hour (a manual run with that interval)
    python scripts/airflow_local.py backfill --from-date 2026-11-25T00:00Z --to-date 2026-11-25T05:00Z
                                                    # backfill those hours (Airflow backfill of medallion_generate),
                                                    # wait until bronze, silver and gold followed, print the runs, stop
    python scripts/airflow_local.py up              # start the components and keep them running (Ctrl-C stops)
    python scripts/airflow_local.py env             # print the environment the components run with

A cycle is what production does every hour: the scheduler creates the generation run of the latest complete
hour, its landing asset starts bronze, bronze's asset starts silver, silver's starts gold; the cycle then
triggers the monitoring DAG and prints the row counts it recorded, where the quality dashboard is and the cycle's
quality score. Re-running a cycle in the same hour clears
that hour's generation run, so the same interval is processed again (and lands no row twice).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # the shared process helpers (no Airflow import)
from medallion_airflow.processes import stop_process_groups  # noqa: E402

DAGS = ["medallion_generate", "medallion_bronze", "medallion_silver", "medallion_gold", "medallion_monitor"]
COMPONENTS = ["api-server", "scheduler", "dag-processor", "triggerer"]
TERMINAL = {"success", "failed"}
DOMAIN_LAYERS = ("bronze", "silver", "gold")


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or ROOT / ".airflow").resolve()


def api_port() -> int:
    return int(os.environ.get("MEDALLION_AIRFLOW_PORT", "8080"))


def airflow_env() -> dict[str, str]:
    """Settings for every component; a user's own AIRFLOW__* variables win."""
    home = airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    secret_file = home / "jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    port = api_port()
    base = f"http://127.0.0.1:{port}"
    defaults = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "MEDALLION_HOME": str(ROOT),
        # local Spark tasks take a slot of the declared pool: no more JVMs at once than it has slots
        "MEDALLION_SPARK_POOL": next((p["pool_name"] for p in declared_pools()), "default_pool"),
    }
    env = dict(os.environ)
    for key, value in defaults.items():
        env.setdefault(key, value)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


def airflow_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "airflow"
    return subprocess.run([str(exe), *args], env=airflow_env(), check=check, text=True, capture_output=True)


def declared_pools() -> list[dict]:
    """The pools airflow_settings.yaml declares (what `astro dev start` creates), so a local Airflow has them too."""
    with open(ROOT / "airflow_settings.yaml", encoding="utf-8") as fh:
        return (yaml.safe_load(fh).get("airflow") or {}).get("pools") or []


def setup() -> None:
    """Create or upgrade the metadata DB and create the declared pools (idempotent)."""
    result = airflow_cli("db", "migrate", check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit("airflow db migrate failed")
    for pool in declared_pools():
        airflow_cli("pools", "set", pool["pool_name"], str(pool["pool_slot"]), pool.get("pool_description") or "")
    print(f"Airflow metadata DB ready in {airflow_home()}")


# --------------------------------------------------------------------------------------------- components
class Stack:
    """The four Airflow components as child processes, logs under $AIRFLOW_HOME/logs/components/."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.log_dir = airflow_home() / "logs" / "components"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = airflow_env()
        exe = str(Path(sys.executable).parent / "airflow")
        for name in COMPONENTS:
            with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
                self.procs[name] = subprocess.Popen(
                    [exe, name], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        print(f"Started {', '.join(COMPONENTS)} (logs: {self.log_dir})", flush=True)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"airflow {name} exited with code {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        stop_process_groups(self.procs.values(), grace_s=30)
        self.procs.clear()


# --------------------------------------------------------------------------------------------- local mailbox
class LocalMailbox:
    """A local SMTP server for the alert e-mails when no `smtp_default` connection is configured: every message is
    saved as an .eml file under $AIRFLOW_HOME/mail/ (like Mailpit in docker-compose). A user's own
    AIRFLOW_CONN_SMTP_DEFAULT wins and this is not started."""

    def __init__(self) -> None:
        self.dir = airflow_home() / "mail"
        self.controller = None

    def start(self) -> bool:
        if os.environ.get("AIRFLOW_CONN_SMTP_DEFAULT"):
            return False
        import socket
        from email import message_from_bytes

        from aiosmtpd.controller import Controller

        self.dir.mkdir(parents=True, exist_ok=True)
        folder = self.dir

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                subject = message_from_bytes(envelope.content)["Subject"] or ""
                stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
                (folder / f"{stamp}.eml").write_bytes(envelope.content)
                print(f"  e-mail to {', '.join(envelope.rcpt_tos)}: {subject}", flush=True)
                return "250 OK"

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self.controller.start()
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 1},
            }
        )
        print(f"Alert e-mails go to a local mailbox: {self.dir}", flush=True)
        return True

    def count(self) -> int:
        return len(list(self.dir.glob("*.eml"))) if self.dir.is_dir() else 0

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


# --------------------------------------------------------------------------------------------- REST API
class Api:
    def __init__(self, port: int | None = None) -> None:
        self.base = f"http://127.0.0.1:{port or api_port()}"
        self._token: str | None = None

    def _request(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path} -> HTTP {exc.code}: {exc.read()[:500]!r}") from exc
        return json.loads(raw) if raw else {}

    def token(self) -> str:
        if self._token is None:
            self._token = self._request("GET", "/auth/token", auth=False)["access_token"]
        return self._token

    def get(self, path: str) -> dict:
        return self._request("GET", path)

    def post(self, path: str, body: dict) -> dict:
        return self._request("POST", path, body)

    def patch(self, path: str, body: dict) -> dict:
        return self._request("PATCH", path, body)

    def wait_healthy(self, stack: Stack, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            stack.check_alive()
            try:
                health = self._request("GET", "/api/v2/monitor/health", auth=False)
                if (
                    health.get("scheduler", {}).get("status") == "healthy"
                    and health.get("dag_processor", {}).get("status") == "healthy"
                ):
                    return
            except (urllib.error.URLError, ConnectionError, RuntimeError, OSError):
                pass
            time.sleep(2)
        raise TimeoutError("Airflow components did not become healthy in time")

    def wait_dags(self, stack: Stack, dag_ids: list[str], timeout: float = 180) -> None:
        deadline = time.time() + timeout
        missing = list(dag_ids)
        while time.time() < deadline:
            stack.check_alive()
            missing = [d for d in dag_ids if not self._dag_exists(d)]
            if not missing:
                return
            time.sleep(2)
        errors = self.get("/api/v2/importErrors").get("import_errors", [])
        raise TimeoutError(f"DAGs not parsed in time: {missing}; import errors: {errors}")

    def _dag_exists(self, dag_id: str) -> bool:
        try:
            self.get(f"/api/v2/dags/{dag_id}")
            return True
        except RuntimeError:
            return False

    def runs(self, dag_id: str, limit: int = 50) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit={limit}")["dag_runs"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> object:
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/"
            f"{task_id}/xcomEntries/{key}?deserialize=true"
        )
        value = self.get(path)["value"]
        return json.loads(value) if isinstance(value, str) else value

    def job_summary(self, dag_id: str, run_id: str, task_id: str) -> dict | None:
        """A job task's run summary: locally the task's return value; on Databricks the task pushes the run id and
        the summary is read from the run's output (runs/get-output), as the DAGs' alert tasks read it."""
        try:
            return self.xcom(dag_id, run_id, task_id)
        except RuntimeError as exc:
            if "HTTP 404" not in str(exc):
                raise
        from medallion_airflow.alerts import job_summary

        return job_summary(self.xcom(dag_id, run_id, task_id, key="run_id"))


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")) if ts else None


def _utc(value: str) -> datetime:
    """A command-line timestamp (naive = UTC)."""
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def wait_for(description: str, predicate, stack: Stack, timeout: float, poll: float = 3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        stack.check_alive()
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {description}")


def task_end(api: Api, dag_id: str, run: dict) -> datetime:
    """When the job task of a finished run ended (its run's end when the task cannot be read)."""
    for ti in api.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run['dag_run_id'], safe='')}/taskInstances"
    ).get("task_instances", []):
        if ti["task_id"] == dag_id.removeprefix("medallion_") and ti.get("end_date"):
            return _parse(ti["end_date"])
    return _parse(run["end_date"])


def task_failure_reason(api: Api, dag_id: str, run_id: str) -> str:
    tis = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances")
    failed = [t["task_id"] for t in tis.get("task_instances", []) if t.get("state") not in ("success",)]
    return f"tasks not successful: {failed}; see logs under {airflow_home() / 'logs'}"


# --------------------------------------------------------------------------------------------- the cycle
LAYERS = [("medallion_bronze", "bronze"), ("medallion_silver", "silver"), ("medallion_gold", "gold")]


def layers_settled(api: Api, started: datetime, after: datetime) -> dict[str, list[dict]] | None:
    """Every layer finished a run queued after the layer before it last finished (the first layer: after `after`,
    when the last landing happened), and nothing is pending; None while that is not so.

    Bronze, silver and gold run on their upstream asset *and* hourly, so the work may be spread over several runs
    of a layer: all runs queued since `started` belong to it."""
    prev_end, out = after, {}
    for dag_id, _ in LAYERS:
        runs = [r for r in api.runs(dag_id, 50) if (_parse(r.get("queued_at")) or started) >= started]
        if any(r["state"] not in TERMINAL for r in runs):
            return None
        failed = [r for r in runs if r["state"] != "success"]
        if failed:
            raise RuntimeError(f"{dag_id} failed: {task_failure_reason(api, dag_id, failed[0]['dag_run_id'])}")
        if not any(_parse(r["queued_at"]) >= prev_end for r in runs):
            return None
        out[dag_id] = runs
        # the asset event that queues the next layer is emitted when the job *task* ends; the run's own end_date
        # comes later (by however long the scheduler takes to mark it), so compare with the task's end
        prev_end = max(task_end(api, dag_id, r) for r in runs) - timedelta(seconds=1)
    return out


def run_cycle(
    api: Api, stack: Stack, timeout: float, interval_start: datetime | None = None, conf: dict | None = None
) -> dict:
    """One hourly cycle. Without `interval_start` the scheduler's own run of the latest complete hour generates the
    batch (what production does); with it, a manual run of medallion_generate for exactly that data interval does
    (with `conf` as its run parameters), so the cycle does not depend on where the wall clock is in the hour. Either
    way, an interval generated before is cleared and generated again."""
    started = datetime.now(timezone.utc)
    explicit = interval_start is not None
    if not explicit:
        interval_start = started.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    # asset-driven layers first, so none misses the landing event; then the time-scheduled DAGs
    for dag_id in ["medallion_bronze", "medallion_silver", "medallion_gold", "medallion_monitor", "medallion_generate"]:
        api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def generation_run():
        for run in api.runs("medallion_generate"):
            if _parse(run.get("data_interval_start")) == interval_start:
                return run
        return None

    run = (
        generation_run()
        if explicit
        else wait_for(f"the generation run of {interval_start:%Y-%m-%d %H:00}Z", generation_run, stack, 120)
    )
    if run is None:
        interval_end = interval_start + timedelta(hours=1)
        run = api.post(
            "/api/v2/dags/medallion_generate/dagRuns",
            {
                "logical_date": interval_start.isoformat(),
                "data_interval_start": interval_start.isoformat(),
                "data_interval_end": interval_end.isoformat(),
                "conf": conf or {},
            },
        )
    elif run["state"] in TERMINAL and _parse(run.get("end_date")) and _parse(run["end_date"]) < started:
        print(f"Interval {interval_start:%Y-%m-%dT%H:00}Z was generated before: clearing it to re-run it", flush=True)
        api.post(
            "/api/v2/dags/medallion_generate/clearTaskInstances",
            {"dry_run": False, "dag_run_id": run["dag_run_id"], "reset_dag_runs": True, "only_failed": False},
        )
        time.sleep(2)
    print(f"Generation run {run['dag_run_id']} (interval {interval_start:%Y-%m-%dT%H:00}Z)", flush=True)
    run = wait_for(
        "the generation run to finish",
        lambda: (
            r if (r := generation_run()) and r["state"] in TERMINAL and _parse(r.get("end_date")) >= started else None
        ),
        stack,
        timeout,
    )
    if run["state"] != "success":
        raise RuntimeError(
            f"medallion_generate failed: {task_failure_reason(api, 'medallion_generate', run['dag_run_id'])}"
        )
    after = _parse(run["end_date"]) - timedelta(seconds=1)
    summaries = {"generate": api.job_summary("medallion_generate", run["dag_run_id"], "generate")}
    runs_by_dag = wait_for(
        "bronze, silver and gold to settle", lambda: layers_settled(api, started, after), stack, timeout
    )
    for dag_id, task in LAYERS:
        runs = sorted(runs_by_dag[dag_id], key=lambda r: r["queued_at"])
        print(f"{dag_id}: {len(runs)} run(s) succeeded ({', '.join(r['dag_run_id'] for r in runs)})", flush=True)
        summaries[task] = combine(task, [api.job_summary(dag_id, r["dag_run_id"], task) for r in runs])
    monitor = api.post("/api/v2/dags/medallion_monitor/dagRuns", {"logical_date": None, "conf": {}})
    run = wait_for(
        "the monitoring run",
        lambda: next(
            (
                r
                for r in api.runs("medallion_monitor")
                if r["dag_run_id"] == monitor["dag_run_id"] and r["state"] in TERMINAL
            ),
            None,
        ),
        stack,
        timeout,
    )
    if run["state"] != "success":
        raise RuntimeError(
            f"medallion_monitor failed: {task_failure_reason(api, 'medallion_monitor', run['dag_run_id'])}"
        )
    summaries["monitor"] = api.job_summary("medallion_monitor", run["dag_run_id"], "monitor")
    summaries["interval_start"] = interval_start.isoformat()
    summaries["wall_seconds"] = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    return summaries


# --------------------------------------------------------------------------------------------- a backfill
def run_backfill(
    api: Api,
    stack: Stack,
    from_date: datetime,
    to_date: datetime,
    timeout: float,
    conf: dict | None = None,
    max_active_runs: int = 1,
    reprocess: str = "completed",
) -> dict:
    """Backfill the generation of the hours whose logical dates are in [from_date, to_date] (both included) through
    Airflow's backfill feature, the way *medallion_generate -> Trigger -> Backfill* does it in the UI, and wait until
    bronze, silver and gold have processed everything it landed.

    Only medallion_generate is backfilled: its backfill runs emit the `medallion_landing` asset like any run, so
    bronze, silver and gold follow as asset-triggered runs (they read their input incrementally, whatever the
    interval). Backfill runs start only on an unpaused DAG; the layers are unpaused first so none misses an event.
    `max_active_runs=1` generates the hours one after the other, in order: each hour's batch draws the patients it
    changes from the batches before it (their manifests), which a parallel backfill may not have written yet."""
    started = datetime.now(timezone.utc)
    for dag_id in ("medallion_bronze", "medallion_silver", "medallion_gold"):
        api.patch(f"/api/v2/dags/{dag_id}", {"is_paused": False})
    body = {
        "dag_id": "medallion_generate",
        "from_date": from_date.isoformat(),
        "to_date": to_date.isoformat(),
        "max_active_runs": max_active_runs,
        "dag_run_conf": conf or {},
        "reprocess_behavior": reprocess,
    }
    for attempt in range(1, 11):
        try:
            backfill = api.post("/api/v2/backfills", body)
            break
        except RuntimeError as exc:
            # SQLite: Airflow refuses to create a backfill while another component holds the write lock (HTTP 503
            # "Database is locked"); the request was rolled back, so it is safe to send again
            if "HTTP 503" not in str(exc) or attempt == 10:
                raise
            print(f"Backfill not created yet (metadata DB busy), attempt {attempt}; retrying", flush=True)
            time.sleep(2 * attempt)
    api.patch("/api/v2/dags/medallion_generate", {"is_paused": False})  # the form's "Unpause ... on trigger"
    print(
        f"Backfill {backfill['id']} of medallion_generate: {from_date:%Y-%m-%dT%H:%M}Z .. {to_date:%Y-%m-%dT%H:%M}Z "
        f"(max_active_runs={max_active_runs}, reprocess={reprocess}, conf={json.dumps(conf or {})})",
        flush=True,
    )

    def generation_runs() -> list[dict]:
        return [r for r in api.runs("medallion_generate", 100) if (_parse(r.get("queued_at")) or started) >= started]

    def backfill_done():
        b = api.get(f"/api/v2/backfills/{backfill['id']}")
        runs = generation_runs()
        if b.get("completed_at") and runs and all(r["state"] in TERMINAL for r in runs):
            return b, runs
        return None

    backfill, gen_runs = wait_for(f"backfill {backfill['id']} to complete", backfill_done, stack, timeout)
    failed = [r for r in gen_runs if r["state"] != "success"]
    if failed:
        raise RuntimeError(
            f"medallion_generate failed: {task_failure_reason(api, 'medallion_generate', failed[0]['dag_run_id'])}"
        )
    gen_runs.sort(key=lambda r: (r["run_type"] != "backfill", r.get("logical_date") or ""))
    backfilled = [
        r for r in gen_runs if r["run_type"] == "backfill" and from_date <= _parse(r["logical_date"]) <= to_date
    ]
    after = max(task_end(api, "medallion_generate", r) for r in gen_runs) - timedelta(seconds=1)
    runs_by_dag = wait_for(
        "bronze, silver and gold to settle", lambda: layers_settled(api, started, after), stack, timeout
    )

    def brief(run: dict, summary: dict | None = None) -> dict:
        out = {
            k: run.get(k)
            for k in (
                "dag_run_id",
                "run_type",
                "triggered_by",
                "state",
                "logical_date",
                "data_interval_start",
                "data_interval_end",
                "queued_at",
                "end_date",
                "conf",
            )
        }
        if summary is not None:
            out["summary"] = summary
        return out

    summaries: dict = {
        "backfill": backfill,
        "generate": {
            "runs": [brief(r, api.job_summary("medallion_generate", r["dag_run_id"], "generate")) for r in gen_runs]
        },
    }
    summaries["generate"]["backfill_runs"] = [r["dag_run_id"] for r in backfilled]
    for r in summaries["generate"]["runs"]:
        s = r["summary"]
        print(
            f"medallion_generate {r['run_type']:<9} {r['dag_run_id']}: interval {s.get('interval_start')}, "
            f"rows {s.get('rows')}",
            flush=True,
        )
    for dag_id, task in LAYERS:
        runs = sorted(runs_by_dag[dag_id], key=lambda r: r["queued_at"])
        results = [api.job_summary(dag_id, r["dag_run_id"], task) for r in runs]
        summaries[task] = combine(task, results)
        summaries[task]["dag_runs"] = [brief(r) for r in runs]
        kinds = ", ".join(f"{r['dag_run_id']} ({r['run_type']})" for r in runs)
        print(f"{dag_id}: {len(runs)} run(s) succeeded: {kinds}", flush=True)
    summaries["from_date"], summaries["to_date"] = from_date.isoformat(), to_date.isoformat()
    summaries["wall_seconds"] = round((datetime.now(timezone.utc) - started).total_seconds(), 1)
    return summaries


def print_backfill_report(summaries: dict) -> None:
    backfill = summaries["backfill"]
    runs = summaries["generate"]["backfill_runs"]
    print(
        f"\nBackfill {backfill['id']} of medallion_generate done in {summaries['wall_seconds']}s: {len(runs)} hour(s) "
        f"{summaries['from_date']} .. {summaries['to_date']} generated by backfill runs; bronze, silver and gold "
        f"followed in {summaries['bronze']['runs']}, {summaries['silver']['runs']} and {summaries['gold']['runs']} "
        "asset-triggered or hourly run(s)."
    )
    print(
        f"Bronze ingested {summaries['bronze']['rows_ingested']} rows; silver quality score "
        f"{summaries['silver'].get('quality_score')} (target {summaries['silver'].get('target_score')}); "
        f"gold tables: {summaries['gold'].get('tables')}"
    )


def combine(task: str, results: list[dict]) -> dict:
    """One summary for all runs of a layer in a cycle: row figures add up, table totals come from the last run."""
    if task == "bronze":
        tables: dict[str, dict] = {}
        for r in results:
            for entity, t in r.get("tables", {}).items():
                acc = tables.setdefault(
                    entity, {"table": t["table"], "files_seen": 0, "rows_ingested": 0, "rows_rescued": 0}
                )
                for key in ("files_seen", "rows_ingested", "rows_rescued"):
                    acc[key] += t.get(key, 0)
        return {
            "runs": len(results),
            "tables": tables,
            "rows_ingested": sum(r["rows_ingested"] for r in results),
            "rows_rescued": sum(r.get("rows_rescued", 0) for r in results),
            "unreadable_files": [f for r in results for f in r.get("unreadable_files", [])],
        }
    if task == "silver":
        entities: dict[str, dict] = {}
        for r in results:
            for entity, st in r.get("entities", {}).items():
                acc = entities.setdefault(entity, {"quarantined_by_rule": {}})
                for key, value in st.items():
                    if key == "quarantined_by_rule":
                        for rule, n in value.items():
                            acc[key][rule] = acc[key].get(rule, 0) + n
                    elif isinstance(value, int) and not isinstance(value, bool):
                        acc[key] = acc.get(key, 0) + value

        def good(st):  # rows released from held passed every rule; expired ones failed patient_exists
            return st.get("valid", 0) + st.get("released", 0)

        def scored(st):
            return good(st) + st.get("quarantined", 0) + st.get("expired_to_quarantine", 0)

        for st in entities.values():
            st["quality_score"] = round(good(st) / scored(st), 6) if scored(st) else None
        valid = sum(good(st) for st in entities.values())
        total = sum(scored(st) for st in entities.values())
        return {
            "runs": len(results),
            "entities": entities,
            "quality_score": round(valid / total, 6) if total else None,
            "target_score": results[-1].get("target_score"),
        }
    return {"runs": len(results), **results[-1]}


def print_report(summaries: dict) -> None:
    sys.path.insert(0, str(ROOT / "spark_jobs"))
    from medallion.config import load_settings

    settings = load_settings()
    tables = settings.raw["tables"]
    counts = summaries["monitor"]["counts"]
    warehouse = os.path.join(settings.location("warehouse"), settings.schema)
    print(f"\nOne hourly cycle done in {summaries['wall_seconds']}s (interval {summaries['interval_start']}).")
    print(f"Domain tables (Delta, database {settings.schema}, files under {warehouse}):")
    for layer in DOMAIN_LAYERS:
        for name in tables[layer].values():
            print(f"  {layer:<7} {name:<24} {counts.get(name)!s:>10} rows")
    quarantined = sum(counts.get(n) or 0 for n in tables["quarantine"].values())
    held = sum(counts.get(n) or 0 for n in tables["held"].values())
    silver = summaries.get("silver", {})
    print(f"  quarantine (all entities)        {quarantined:>10} rows (with the rules they failed)")
    print(f"  held for a missing patient       {held:>10} rows (re-validated every run)")
    print(f"Silver quality score this cycle: {silver.get('quality_score')} (target {silver.get('target_score')})")
    bronze = summaries.get("bronze", {})
    if bronze:
        files = sum(t.get("files_seen", 0) for t in bronze.get("tables", {}).values())
        print(
            f"Bronze this cycle: {files} landing file(s), {bronze.get('rows_ingested')} rows, "
            f"{bronze.get('rows_rescued', 0)} with rescued data, "
            f"{len(bronze.get('unreadable_files', []))} unreadable (ops_bronze_files has one row per file)"
        )
    monitor = summaries["monitor"]
    score, target = monitor.get("quality_score"), monitor.get("target_score")
    breaches = monitor.get("breaches") or []
    print(f"Airflow run logs: {airflow_home() / 'logs'}")
    print(
        f"Monitoring: {len(breaches)} open data-quality breach(es)"
        + (": " + "; ".join(f"{b['kind']} {b['subject']}" for b in breaches) if breaches else "")
    )
    print(
        f"Quality dashboard: {monitor.get('dashboard')}  (Airflow UI: http://127.0.0.1:{api_port()}/medallion/dashboard,"
        " or Browse -> Quality dashboard, while `make up` runs)"
    )
    print(
        f"Quality score of this cycle: {'n/a' if score is None else f'{score:.4%}'} "
        f"(target {'n/a' if target is None else f'{target:.1%}'}; {monitor.get('quality_window', '')})"
    )


@contextmanager
def environment(overrides: dict[str, str]):
    """`os.environ` with `overrides` for the duration, restored on the way out together with what `setup()` and the
    local mailbox set there (tests run several Airflow homes in one process, one after another)."""
    saved = {key: os.environ.get(key) for key in [*overrides, "AIRFLOW_CONN_SMTP_DEFAULT"]}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def components():
    """The four Airflow components (and the local mailbox) running with the DAGs parsed: yields (api, stack, mailbox)
    and stops everything on the way out. Tests start them once per module and drive several cycles through them."""
    mailbox = LocalMailbox()
    mailbox.start()
    stack = Stack()
    stack.start()
    try:
        api = Api()
        api.wait_healthy(stack)
        api.wait_dags(stack, DAGS)
        yield api, stack, mailbox
    finally:
        stack.stop()
        mailbox.stop()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["setup", "cycle", "backfill", "up", "env"])
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each stage of a cycle")
    parser.add_argument("--summary-json", default=None, help="write the cycle's run summaries to this file")
    parser.add_argument(
        "--conf",
        type=json.loads,
        default=None,
        help="run parameters of the generation run(s), JSON (e.g. '{\"patients_per_batch\": 500}')",
    )
    cycle = parser.add_argument_group("cycle")
    cycle.add_argument(
        "--interval-start",
        type=_utc,
        default=None,
        help="generate this hour (ISO-8601 interval start) by a manual run with that data interval, "
        "instead of the scheduler's run of the latest complete hour",
    )
    backfill = parser.add_argument_group("backfill")
    backfill.add_argument("--from-date", type=_utc, help="logical date (interval start) of the first hour, ISO-8601")
    backfill.add_argument("--to-date", type=_utc, help="logical date of the last hour (included), ISO-8601")
    backfill.add_argument(
        "--max-active-runs", type=int, default=1, help="backfill runs at a time (1: the hours are generated in order)"
    )
    backfill.add_argument(
        "--reprocess",
        choices=["none", "failed", "completed"],
        default="completed",
        help="hours that already have a run: completed (the default) re-runs them, like a clear",
    )
    args = parser.parse_args()
    if args.command == "backfill" and not (args.from_date and args.to_date):
        parser.error("backfill needs --from-date and --to-date")
    if args.command == "env":
        for key, value in sorted(airflow_env().items()):
            if key.startswith(("AIRFLOW", "MEDALLION")) and "SECRET" not in key:
                print(f"export {key}={value!r}")
        return
    setup()
    if args.command == "setup":
        return
    signal.signal(signal.SIGTERM, _interrupt)  # a plain kill stops the components too, like Ctrl-C
    try:
        with components() as (api, stack, mailbox):
            if args.command == "up":
                print(f"Airflow UI: http://127.0.0.1:{api_port()}  (Ctrl-C stops every component)", flush=True)
                while True:
                    stack.check_alive()
                    time.sleep(5)
            if args.command == "backfill":
                summaries = run_backfill(
                    api,
                    stack,
                    args.from_date,
                    args.to_date,
                    args.timeout,
                    conf=args.conf,
                    max_active_runs=args.max_active_runs,
                    reprocess=args.reprocess,
                )
            else:
                summaries = run_cycle(api, stack, args.timeout, interval_start=args.interval_start, conf=args.conf)
            if args.summary_json:
                Path(args.summary_json).write_text(json.dumps(summaries, indent=2, default=str))
            if args.command == "backfill":
                print_backfill_report(summaries)
            else:
                print_report(summaries)
            if mailbox.controller is not None:
                print(f"Alert e-mails in the local mailbox: {mailbox.count()} (files under {mailbox.dir})")
    except KeyboardInterrupt:
        if args.command != "up":
            print("Interrupted: stopping the Airflow components", file=sys.stderr)
            raise SystemExit(130) from None
    except (RuntimeError, TimeoutError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
