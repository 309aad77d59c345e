#!/usr/bin/env python
"""An emulated Databricks workspace whose Jobs API really runs the jobs: what the DAGs' Databricks target talks to here.

    python scripts/workspace.py up [--port 8443] [--root /tmp/medallion-emulated]

starts a Spark Connect server (the engine of serverless, scripts/spark_servers.py), "deploys the bundle" (the project's
`include/` and the wheel from `uv build`, into the `workspace_files` folder of `environments.emulated`; the schema),
and serves, over plain HTTP with a bearer token, the endpoints the Databricks provider and the jobs call:

- `POST /api/2.2/jobs/runs/submit` — a one-task run of a `python_wheel_task` on serverless compute: the task's
  environment (its `dependencies`: the wheel) is installed into a fresh virtualenv, as a serverless environment is,
  with the platform's own client beside it (`pyspark[connect]` standing in for Databricks Connect, `databricks-sdk`),
  every version pinned by requirements.lock (on this interpreter: see `Workspace.python`); then the wheel's entry point is called as Databricks calls it (looked up in
  the package's entry points, `--key=value` for each named parameter) against the Connect server. Idempotency tokens
  are honoured (a token already seen returns its run). Runs go PENDING → RUNNING → TERMINATED (SUCCESS, FAILED,
  CANCELED, TIMEDOUT after the payload's `timeout_seconds`).
- `GET /api/2.2/jobs/runs/get`, `GET /api/2.2/jobs/runs/get-output` (`logs`: the last 5 MB of the task's stdout and
  stderr; `error` — the job's one-line reason — and `error_trace` when it failed), `POST /api/2.2/jobs/runs/cancel`
  (ends the task's process group).
- `GET /api/2.0/secrets/get` — the secret scope of the environment, which the jobs read with the SDK's `dbutils`
  (`DATABRICKS_HOST`/`DATABRICKS_TOKEN` are the run's credentials, as the runtime provides them).

What it is not: Auto Loader, Unity Catalog's tags and grants (`runtime: open_source_spark` in the environment), job
clusters (a `new_cluster` run is refused with the reason), the workspace UI. The Airflow side needs only
`MEDALLION_TARGET=databricks`, `MEDALLION_ENV=emulated`, `MEDALLION_EMULATED_ROOT` and the `databricks_default`
connection this prints.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # the shared process helpers (no Airflow import)
from medallion_airflow.processes import stop_process_groups  # noqa: E402

sys.path.insert(0, str(ROOT / "spark_jobs"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ENV = "emulated"
COMPUTES = ("serverless", "job_cluster")
LOG_LIMIT = 5 * 1024 * 1024  # runs/get-output returns the last 5 MB of a task's output
# what Databricks calls the entry point with: the wheel's named entry point, else `package.entry_point()`
BOOTSTRAP = """
import importlib, importlib.metadata as md, sys
package, name, args = sys.argv[1], sys.argv[2], sys.argv[3:]
found = [e for e in md.distribution(package).entry_points if e.name == name]
func = found[0].load() if found else getattr(importlib.import_module(package), name)
sys.argv = [name, *args]
sys.exit(func())
"""


def lock_pins(lock: Path = ROOT / "requirements.lock") -> dict[str, str]:
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.split(";")[0].strip()
    return pins


@dataclass
class Run:
    run_id: int
    payload: dict
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = "Waiting for the environment"
    process: subprocess.Popen | None = None
    output: Path | None = None
    error: str | None = None
    error_trace: str | None = None
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    ended_ms: int = 0

    @property
    def task(self) -> dict:
        return self.payload["tasks"][0]

    def finish(self, result: str, message: str) -> None:
        if self.life_cycle_state == "TERMINATED":
            return
        self.life_cycle_state, self.result_state, self.state_message = "TERMINATED", result, message
        self.ended_ms = int(time.time() * 1000)

    def state(self) -> dict:
        state = {"life_cycle_state": self.life_cycle_state, "state_message": self.state_message}
        if self.result_state:
            state["result_state"] = self.result_state
        return state


class JsonApi:
    """A Databricks-style REST API on 127.0.0.1: bearer-token auth, JSON in and out, a thread per request (HTTP/1.0,
    `Connection: close`, which the provider's aiohttp trigger needs). A subclass answers
    `route(method, path, query, body) -> (status, reply)`; every request is kept in `requests` (method, path, query,
    body, auth) for tests to read. The emulated workspace and the contract tests' scripted Jobs API both are one."""

    def __init__(self, token: str, port: int = 0):
        self.token = token
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _json_handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection(self) -> dict:
        """The Airflow connection (`AIRFLOW_CONN_DATABRICKS_DEFAULT` as JSON) that points the provider here."""
        return {
            "conn_type": "databricks",
            "host": "127.0.0.1",
            "port": self.port,
            "schema": "http",
            "password": self.token,
        }

    def serve(self) -> None:
        self.thread.start()

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def route(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        raise NotImplementedError

    def calls(self, path_suffix: str) -> list[dict]:
        return [r for r in self.requests if r["path"].endswith(path_suffix)]


def _json_handler(api: JsonApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # no request lines on stderr
            pass

        def _reply(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length)) if length else None
            except ValueError:
                return self._reply(400, {"error_code": "MALFORMED_REQUEST", "message": "body is not JSON"})
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            auth = self.headers.get("Authorization")
            with api.lock:
                api.requests.append({"method": method, "path": url.path, "query": query, "body": body, "auth": auth})
            if url.path.startswith("/.well-known/"):  # the SDK's unauthenticated host-metadata probe
                return self._reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": url.path})
            if auth != f"Bearer {api.token}":
                return self._reply(403, {"error_code": "PERMISSION_DENIED", "message": "Invalid access token."})
            self._reply(*api.route(method, url.path, query, body))

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

    return Handler


class Workspace(JsonApi):
    """The Jobs API and Secrets API of an emulated workspace, executing runs on a Spark Connect server."""

    def __init__(
        self, root: Path, token: str, secrets_: dict[tuple[str, str], str], port: int = 0, compute: str = "serverless"
    ):
        if compute not in COMPUTES:
            raise ValueError(f"compute is one of {COMPUTES}, not {compute!r}")
        self.root = Path(root).resolve()
        self.compute = compute
        self.connect_url = ""  # serverless: the Spark Connect server, set by `start` once it is up
        self.master_url = ""  # job_cluster: the standalone master, set by `start`
        self.servers: list = []  # the compute's processes (spark_servers.Server), stopped with the workspace
        self.cluster_lock = threading.Lock()  # job clusters share one Derby metastore: one driver at a time
        # The environments' interpreter: this one (3.11), not serverless environment 5's 3.12. Open-source PySpark
        # 3.5's Connect server cannot run Python 3.12 workers outside its fork-server daemon (measured: every
        # pandas UDF task's worker dies at start), and it starts them that way whenever a streaming foreachBatch
        # worker of another session is being started (StreamingPythonRunner.init switches the daemon off in the
        # shared conf while it creates its worker). The jobs' 3.12 compatibility is CI's 3.12 tier's (Makefile
        # UNIT_TESTS); Databricks' own server is not this one.
        self.python = sys.executable
        self.secrets = dict(secrets_)
        self.runs: dict[int, Run] = {}
        self.tokens: dict[str, int] = {}
        self.next_run_id = 1
        self.env_locks: dict[str, threading.Lock] = {}
        super().__init__(token, port)

    def airflow_env(self) -> dict[str, str]:
        """What the Airflow components need to run the DAGs against this workspace."""
        env = {
            "MEDALLION_TARGET": "databricks",
            "MEDALLION_ENV": ENV,
            "MEDALLION_EMULATED_ROOT": str(self.root),
            "MEDALLION_EMULATED_COMPUTE": self.compute,
            "AIRFLOW_CONN_DATABRICKS_DEFAULT": json.dumps(self.connection()),
        }
        if self.compute == "job_cluster":  # the platform team's pool and policy (names only: nothing checks them)
            env["MEDALLION_DATABRICKS_INSTANCE_POOL_ID"] = "emulated-pool"
            env["MEDALLION_DATABRICKS_CLUSTER_POLICY_ID"] = "emulated-policy"
        return env

    def start(self) -> Workspace:
        self.serve()
        return self

    def stop(self) -> None:
        for run in list(self.runs.values()):
            self.cancel(run, "Workspace stopped")
        self.shutdown()
        for server in reversed(self.servers):
            server.stop()

    # ---- the bundle -----------------------------------------------------------------------------
    def settings(self):
        from medallion.config import load_settings

        return load_settings(ENV, variables={"MEDALLION_EMULATED_ROOT": str(self.root)})

    def deploy(self) -> str:
        """What `databricks bundle deploy` does for this project: the files (include/) and the wheel under the
        environment's workspace folder, and the volume's folders. Returns the python of the wheel's serverless
        environment (installed here once: the compute's Python workers run it too, as serverless runs UDFs in the
        job's environment)."""
        settings = self.settings()
        files = Path(settings.env_cfg["workspace_files"])
        if (files / "include").exists():
            shutil.rmtree(files / "include")
        shutil.copytree(ROOT / "include", files / "include")
        dist = files / "spark_jobs" / "dist"
        dist.mkdir(parents=True, exist_ok=True)
        build = self.root / "build"
        shutil.rmtree(build, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "uv", "build", "-q", "--wheel", str(ROOT / "spark_jobs"), "--out-dir", str(build)],
            check=True,
            cwd=ROOT,
        )
        (wheel,) = build.glob("*.whl")
        shutil.copy2(wheel, dist / wheel.name)
        for key in ("landing", "staging", "checkpoints", "manifests"):
            Path(settings.location(key)).mkdir(parents=True, exist_ok=True)
        return self.environment([str(dist / wheel.name)])

    def create_schema(self, python: str) -> None:
        """The bundle's schema resource (resources/unity_catalog.yml): the jobs create tables, not schemas."""
        settings = self.settings()
        statement = f"CREATE SCHEMA IF NOT EXISTS `{settings.catalog}`.`{settings.schema}`"
        code = f"from pyspark.sql import SparkSession as S; S.builder.getOrCreate().sql({statement!r})"
        subprocess.run([python, "-c", code], check=True, env=self.run_env(python), capture_output=True, timeout=600)

    def cluster_conf(self) -> dict[str, str]:
        """The Spark settings of a job cluster's runtime (its spark-defaults.conf): the local session's, pointed at the
        standalone master, with a Hive metastore (embedded Derby, under the workspace) as the catalog every run's
        driver shares — a job cluster's driver is the job's process, so an in-memory catalog would die with it."""
        from medallion.config import load_settings
        from medallion.session import local_conf

        conf = local_conf(load_settings(), "medallion-job-cluster")
        metastore = self.root / "metastore"
        conf.update(
            {
                "spark.master": self.master_url,
                "spark.sql.catalogImplementation": "hive",
                "spark.sql.warehouse.dir": str(self.root / "managed"),
                "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={metastore}/db;create=true",
                "spark.driver.extraJavaOptions": f"-Dderby.system.home={metastore}",
                "spark.executor.memory": "1g",
            }
        )
        conf.update(RUNTIME_DEFAULTS)
        return conf

    # ---- environments ---------------------------------------------------------------------------
    def environment(self, dependencies: list[str]) -> str:
        """A virtualenv with a run's dependencies (a serverless environment's, a job cluster's libraries) and the
        platform's own packages, every version from requirements.lock; one per set of dependencies (a wheel is a new
        set when it is rebuilt). Returns its python."""
        pins = lock_pins()
        # Databricks Connect / the runtime's PySpark with its pandas and pyarrow
        client = "pyspark[connect]" if self.compute == "serverless" else "pyspark[sql]"
        platform = [f"{client}=={pins['pyspark']}", f"databricks-sdk=={pins['databricks-sdk']}"]
        platform.append(f"setuptools=={pins['setuptools']}")  # PySpark 3.5's pandas check imports distutils (3.12)
        digests = [hashlib.sha256(Path(d).read_bytes()).hexdigest() if Path(d).is_file() else d for d in dependencies]
        key = hashlib.sha256(json.dumps([self.python, platform, digests]).encode()).hexdigest()[:16]
        with self.lock:
            env_lock = self.env_locks.setdefault(key, threading.Lock())
        folder = self.root / "environments" / key
        python = folder / "bin" / "python"
        with env_lock:
            if (folder / ".installed").exists():
                return str(python)
            shutil.rmtree(folder, ignore_errors=True)
            uv = [sys.executable, "-m", "uv"]
            subprocess.run([*uv, "venv", "-q", "--python", self.python, str(folder)], check=True)
            subprocess.run(
                [
                    *uv,
                    "pip",
                    "install",
                    "-q",
                    "--python",
                    str(python),
                    "-c",
                    str(ROOT / "requirements.lock"),
                    *dependencies,
                    *platform,
                ],
                check=True,
            )
            (folder / ".installed").touch()
        return str(python)

    def run_env(self, python: str | None = None, cluster: dict | None = None) -> dict[str, str]:
        """The process environment of a run: the compute's, not this process's (no MEDALLION_* of the caller). A job
        cluster adds its `spark_env_vars`, secret references resolved as Databricks resolves them at cluster start."""
        keep = ("PATH", "HOME", "JAVA_HOME", "LANG", "TMPDIR", "PYENV_VERSION")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env.update(
            DATABRICKS_HOST=self.host,  # the runtime's own credentials (dbutils reads the secret scope with them)
            DATABRICKS_TOKEN=self.token,
            MEDALLION_EMULATED_ROOT=str(self.root),  # where this workspace's /Volumes are
            PYTHONUNBUFFERED="1",
        )
        if self.compute == "serverless":
            env["SPARK_REMOTE"] = self.connect_url  # the job's session is a Spark Connect session
        else:  # the job's process is the cluster's driver: the runtime's Spark settings, its executors' Python
            import spark_servers

            env["SPARK_CONF_DIR"] = str(self.root / "cluster-conf")
            if python:
                env["SPARK_HOME"] = str(spark_servers.spark_home(python))
                env["PYSPARK_PYTHON"] = python
            for key, value in ((cluster or {}).get("spark_env_vars") or {}).items():
                env[key] = SECRET_REFERENCE.sub(lambda m: self.secrets.get((m[1], m[2]), ""), str(value))
        return env

    # ---- runs -----------------------------------------------------------------------------------
    def submit(self, payload: dict) -> tuple[int, dict]:
        tasks = payload.get("tasks") or []
        if len(tasks) != 1 or "python_wheel_task" not in tasks[0]:
            return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "one python_wheel_task is supported here"}
        task = tasks[0]
        if "existing_cluster_id" in task:
            return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "no all-purpose clusters here"}
        wants = "job_cluster" if "new_cluster" in task else "serverless"
        if wants != self.compute:
            message = f"this emulated workspace runs {self.compute} tasks (start it with that compute), not {wants}"
            return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": message}
        if wants == "job_cluster":
            dependencies = [lib["whl"] for lib in task.get("libraries") or [] if "whl" in lib]
        else:
            environments = {e["environment_key"]: e["spec"] for e in payload.get("environments") or []}
            if task.get("environment_key") not in environments:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "the task names no environment"}
            dependencies = list(environments[task["environment_key"]].get("dependencies") or [])
        with self.lock:
            token = payload.get("idempotency_token")
            if token and token in self.tokens:
                return 200, {"run_id": self.tokens[token]}
            run = Run(self.next_run_id, payload)
            self.next_run_id += 1
            self.runs[run.run_id] = run
            if token:
                self.tokens[token] = run.run_id
        threading.Thread(target=self._execute, args=(run, dependencies), daemon=True).start()
        return 200, {"run_id": run.run_id}

    def _execute(self, run: Run, dependencies: list[str]) -> None:
        if self.compute == "job_cluster":
            run.state_message = "Waiting for the cluster"
            with self.cluster_lock:
                self._run(run, dependencies)
        else:
            self._run(run, dependencies)

    def _run(self, run: Run, dependencies: list[str]) -> None:
        try:
            python = self.environment(dependencies)
        except Exception as exc:  # noqa: BLE001 - any install failure is the run's failure
            run.error = f"environment could not be installed: {type(exc).__name__}"
            run.finish("FAILED", run.error)
            return
        wheel_task = run.task["python_wheel_task"]
        args = [f"--{k}={v}" for k, v in (wheel_task.get("named_parameters") or {}).items()]
        run.output = self.root / "runs" / f"{run.run_id}.log"
        run.output.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            if run.life_cycle_state == "TERMINATED":  # cancelled while its environment was installed
                return
            with open(run.output, "wb") as out:
                run.process = subprocess.Popen(
                    [python, "-c", BOOTSTRAP, wheel_task["package_name"], wheel_task["entry_point"], *args],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.run_env(python, run.task.get("new_cluster")),
                    cwd=self.root,
                    start_new_session=True,
                )
            run.life_cycle_state, run.state_message = "RUNNING", "In run"
        timeout = payload_timeout(run.payload)
        try:
            code = run.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel(run, f"Run timed out after {timeout} seconds", result="TIMEDOUT")
            return
        if run.life_cycle_state == "TERMINATED":
            return
        if code == 0:
            run.finish("SUCCESS", "")
            return
        lines = tail_lines(run.output, 40)
        reason = next((line[len("ERROR: ") :] for line in reversed(lines) if line.startswith("ERROR: ")), None)
        run.error = reason or f"the entry point exited with code {code}"
        run.error_trace = "\n".join(lines)
        run.finish("FAILED", "Task failed with error")

    def cancel(self, run: Run, message: str = "Run cancelled.", result: str = "CANCELED") -> None:
        with self.lock:
            run.finish(result, message)
            process = run.process
        if process is not None:
            stop_process_groups([process], grace_s=20)

    def run_info(self, run: Run) -> dict:
        state = run.state()
        return {
            "run_id": run.run_id,
            "job_id": 1_000_000 + run.run_id,  # a one-time run's own anonymous job, as the Jobs API answers it
            "run_name": run.payload.get("run_name"),
            "run_page_url": f"{self.host}/#job/runs/{run.run_id}",
            "start_time": run.started_ms,
            "end_time": run.ended_ms,
            "state": state,
            "status": {"state": run.life_cycle_state},
            "tasks": [{"run_id": task_run_id(run.run_id), "task_key": run.task["task_key"], "state": state}],
        }

    def output(self, run: Run) -> dict:
        out = {"metadata": self.run_info(run)}
        if run.output is not None and run.output.exists():
            with open(run.output, "rb") as fh:
                fh.seek(max(0, run.output.stat().st_size - LOG_LIMIT))
                out["logs"] = fh.read().decode("utf-8", "replace")
                out["logs_truncated"] = run.output.stat().st_size > LOG_LIMIT
        if run.error:
            out["error"] = run.error
        if run.error_trace:
            out["error_trace"] = run.error_trace
        return out

    # ---- HTTP -----------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        if method == "POST" and path == "/api/2.2/jobs/runs/submit":
            return self.submit(body or {})
        params = {**(body or {}), **query}  # the async hook sends a GET's parameters as a JSON body
        if path == "/api/2.0/secrets/get" and method == "GET":
            value = self.secrets.get((params.get("scope"), params.get("key")))
            if value is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such secret"}
            return 200, {"key": params["key"], "value": base64.b64encode(value.encode()).decode()}
        if path in ("/api/2.2/jobs/runs/get", "/api/2.2/jobs/runs/get-output", "/api/2.2/jobs/runs/cancel"):
            run_id = int(params.get("run_id", 0))
            if path.endswith("get-output"):
                run_id = run_of_task(run_id)
            run = self.runs.get(run_id)
            if run is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {run_id} does not exist."}
            if path.endswith("/runs/get") and method == "GET":
                return 200, self.run_info(run)
            if path.endswith("get-output") and method == "GET":
                return 200, self.output(run)
            if path.endswith("cancel") and method == "POST":
                threading.Thread(target=self.cancel, args=(run,), daemon=True).start()
                return 200, {}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"{method} {path}"}


# Databricks' own defaults where the local session's differ (what the emulated computes run with)
RUNTIME_DEFAULTS = {
    "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "false",  # tables must ask for it
    "spark.python.worker.faulthandler.enabled": "true",  # a crashed Python worker says where
}
SECRET_REFERENCE = re.compile(r"\{\{secrets/([^/}]+)/([^}]+)\}\}")


def task_run_id(run_id: int) -> int:
    return run_id * 10  # the one task's run id (distinct from the run's, as in the Jobs API)


def run_of_task(task_run: int) -> int:
    return task_run // 10


def payload_timeout(payload: dict) -> float | None:
    seconds = payload.get("timeout_seconds") or payload["tasks"][0].get("timeout_seconds")
    return float(seconds) if seconds else None


def tail_lines(path: Path, count: int) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return list(deque((line.rstrip("\n") for line in fh), maxlen=count))


def start(root: Path, salt: str, port: int = 0, compute: str = "serverless", token: str | None = None) -> Workspace:
    """Deploy the bundle under `root`, start the compute (a Spark Connect server for serverless, a standalone master
    and worker for job clusters; the catalog's managed storage under `root`) and the API. `workspace.stop()` stops
    all of it."""
    import spark_servers

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    secrets_ = {("medallion-emulated", "hash-salt"): salt}
    workspace = Workspace(root, token or "dapi-" + secrets.token_hex(16), secrets_, port, compute)
    python = workspace.deploy()
    try:
        if compute == "serverless":
            server = spark_servers.start_connect(
                state=root / "connect",
                extra_conf={"spark.sql.warehouse.dir": str(root / "managed"), **RUNTIME_DEFAULTS},
                python=python,
            )
            workspace.servers.append(server)
            workspace.connect_url = f"sc://127.0.0.1:{server.port}"
        else:
            workspace.servers.extend(spark_servers.start_cluster(state=root / "cluster", python=python))
            workspace.master_url = f"spark://127.0.0.1:{workspace.servers[0].port}"
            conf_dir = root / "cluster-conf"
            conf_dir.mkdir(exist_ok=True)
            lines = [f"{key} {value}" for key, value in workspace.cluster_conf().items()]
            (conf_dir / "spark-defaults.conf").write_text("\n".join(lines) + "\n")
        workspace.create_schema(python)
        workspace.start()
    except BaseException:
        for server in workspace.servers:
            server.stop()
        raise
    return workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the workspace and keep it running (Ctrl-C stops it)")
    up.add_argument("--port", type=int, default=8443)
    up.add_argument("--root", default=os.environ.get("MEDALLION_EMULATED_ROOT", "/tmp/medallion-emulated"))
    up.add_argument("--compute", choices=COMPUTES, default="serverless")
    args = parser.parse_args(argv)
    salt = os.environ.get("MEDALLION_HASH_SALT") or secrets.token_hex(16)  # the secret scope's hash salt
    workspace = start(Path(args.root), salt, args.port, args.compute)
    print(
        f"Emulated Databricks workspace on {workspace.host} ({args.compute}: {workspace.connect_url or workspace.master_url})"
    )
    print("Point Airflow at it with:")
    for key, value in workspace.airflow_env().items():
        print(f"  export {key}='{value}'")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        workspace.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
