#!/usr/bin/env python
"""The two other engines the jobs run on here, started from the pip-installed PySpark (no Spark download):

    python scripts/spark_servers.py connect-up [--port 15002]   # a Spark Connect server: the engine of serverless
    python scripts/spark_servers.py cluster-up [--port 7077]    # a standalone cluster: one master, one worker
    python scripts/spark_servers.py down                        # stop whatever this project started
    python scripts/spark_servers.py env                         # the variables that point jobs at them

Spark Connect is what Databricks serverless compute runs: the job is a thin client (`SPARK_REMOTE=sc://…`), every
DataFrame operation is a plan sent to the server, a `foreachBatch` function is pickled and runs in a Python worker of
the server, and there is no `sparkContext`. The server here is Spark 3.5's own (`spark-connect_2.12`, resolved from
Maven Central into the project's Ivy cache beside Delta's jars) with the local session's settings from
include/pipeline.yaml (`medallion.session.local_conf`) and ANSI mode on, as on serverless.

The standalone cluster is what a job cluster is: a driver in the job's process and executors in other JVMs (and their
own Python workers), so every function Spark ships to executors must pickle and every file path must be shared.

Both write their logs and pid files under .cache/spark-servers; the tests start their own on free ports.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))  # the shared process helpers (no Airflow import)
from medallion_airflow.processes import stop_process_groups  # noqa: E402

STATE = ROOT / ".cache" / "spark-servers"
CONNECT_PACKAGE = "org.apache.spark:spark-connect_2.12:{version}"
CONNECT_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# serverless runs with ANSI SQL on: a bad cast raises instead of becoming NULL (the jobs must parse with try_cast)
SERVERLESS_CONF = {"spark.sql.ansi.enabled": "true"}


def spark_home(python: str | None = None) -> Path:
    """The pip-installed PySpark's folder (Spark's home): this interpreter's, or another virtualenv's `python`."""
    if python is None:
        import pyspark

        return Path(pyspark.__file__).resolve().parent
    code = "import os, pyspark; print(os.path.dirname(os.path.realpath(pyspark.__file__)))"
    return Path(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Server:
    """One started JVM process (its own process group, so stopping it stops its children too)."""

    name: str
    process: subprocess.Popen
    port: int
    log: Path

    def wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not listen on port {self.port} within {timeout:.0f} s; see {self.log}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        stop_process_groups([self.process], grace_s=30)


def _start(name: str, argv: list[str], port: int, state: Path, env: dict[str, str] | None = None) -> Server:
    state.mkdir(parents=True, exist_ok=True)
    log = state / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=state,
            env={**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_HOME": str(spark_home()), **(env or {})},
            # (env may name another PYSPARK_PYTHON and its own SPARK_HOME: see start_connect)
            start_new_session=True,
        )
    (state / f"{name}.pid").write_text(str(process.pid))
    return Server(name, process, port, log)


def start_connect(
    port: int | None = None, state: Path = STATE, extra_conf: dict[str, str] | None = None, python: str | None = None
) -> Server:
    """Start a Spark Connect server with Delta and the local session's settings; return once it listens. `python`:
    the interpreter of its Python workers (foreachBatch functions, UDFs), which must be the clients' minor version
    (this process's by default)."""
    import pyspark

    from medallion.config import load_settings
    from medallion.session import local_conf

    port = port or free_port()
    settings = load_settings()
    conf = {k: v for k, v in local_conf(settings, "medallion-connect-server").items() if k != "spark.jars.packages"}
    # a server lives long: it keeps the optimizing JIT compiler a short job process goes without (TieredStopAtLevel)
    conf["spark.driver.extraJavaOptions"] = " ".join(
        o for o in conf["spark.driver.extraJavaOptions"].split() if not o.startswith("-XX:TieredStopAtLevel")
    )
    conf.update(SERVERLESS_CONF)
    conf.update(extra_conf or {})
    conf["spark.connect.grpc.binding.port"] = str(port)
    packages = [CONNECT_PACKAGE.format(version=pyspark.__version__), settings.local_spark["delta_package"]]
    # the server runs from the workers' own PySpark: Spark puts its home's Python code on the workers' path, which
    # must match their interpreter (another virtualenv's Python importing this one's compiled modules crashes)
    home = spark_home(python)
    argv = [str(home / "bin" / "spark-submit"), "--class", CONNECT_CLASS, "--packages", ",".join(packages)]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    argv.append("spark-internal")  # the server's main class is in the package: no application jar
    server = _start(
        "connect", argv, port, state, {"PYSPARK_PYTHON": python, "SPARK_HOME": str(home)} if python else None
    )
    server.wait_listening(timeout=300)  # the first start resolves the Connect jar from Maven Central
    return server


def start_cluster(
    port: int | None = None, state: Path = STATE, cores: int = 2, memory: str = "2g", python: str | None = None
) -> list[Server]:
    """Start a standalone master and one worker on 127.0.0.1; return them once the worker has registered. `python`:
    another virtualenv's interpreter whose PySpark the processes run from (see start_connect)."""
    port = port or free_port()
    home = spark_home(python)
    spark_class = str(home / "bin" / "spark-class")
    env = {"SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": str(state / "work"), "SPARK_HOME": str(home)}
    if python:
        env["PYSPARK_PYTHON"] = python
    master = _start(
        "master",
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(free_port()),
        ],
        port,
        state,
        env,
    )
    master.wait_listening(timeout=120)
    worker_port = free_port()
    worker = _start(
        "worker",
        [
            spark_class,
            "org.apache.spark.deploy.worker.Worker",
            f"spark://127.0.0.1:{port}",
            "--host",
            "127.0.0.1",
            "--port",
            str(worker_port),
            "--webui-port",
            str(free_port()),
            "--cores",
            str(cores),
            "--memory",
            memory,
        ],
        worker_port,
        state,
        env,
    )
    worker.wait_listening(timeout=120)
    deadline = time.monotonic() + 60
    while b"Successfully registered with master" not in worker.log.read_bytes():
        if time.monotonic() > deadline or worker.process.poll() is not None:
            master.stop()
            worker.stop()
            raise RuntimeError(f"the worker did not register with the master; see {worker.log}")
        time.sleep(0.5)
    return [master, worker]


def stop_started(state: Path = STATE) -> list[str]:
    """Stop every server whose pid file is in `state` (those `connect-up` / `cluster-up` started)."""
    stopped = []
    for pid_file in sorted(state.glob("*.pid")):
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            stopped.append(pid_file.stem)
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink()
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["connect-up", "cluster-up", "down", "env"])
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "spark_jobs"))
    os.environ.setdefault("MEDALLION_HOME", str(ROOT))
    if args.command == "connect-up":
        server = start_connect(args.port or 15002)
        STATE.mkdir(parents=True, exist_ok=True)
        (STATE / "connect.url").write_text(f"sc://127.0.0.1:{server.port}")
        print(f"Spark Connect server on sc://127.0.0.1:{server.port} (log: {server.log}); run jobs on it with")
        print(f"  export SPARK_REMOTE=sc://127.0.0.1:{server.port}")
    elif args.command == "cluster-up":
        master, _worker = start_cluster(args.port or 7077)
        (STATE / "cluster.url").write_text(f"spark://127.0.0.1:{master.port}")
        print(f"Spark standalone cluster at spark://127.0.0.1:{master.port} (logs: {STATE}); run jobs on it with")
        print(f"  export MEDALLION_SPARK_MASTER=spark://127.0.0.1:{master.port}")
    elif args.command == "down":
        stopped = stop_started()
        for name in ("connect.url", "cluster.url"):
            (STATE / name).unlink(missing_ok=True)
        print("stopped: " + (", ".join(stopped) or "nothing was running"))
    else:
        for name, var in (("connect.url", "SPARK_REMOTE"), ("cluster.url", "MEDALLION_SPARK_MASTER")):
            if (STATE / name).exists():
                print(f"export {var}={(STATE / name).read_text()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
