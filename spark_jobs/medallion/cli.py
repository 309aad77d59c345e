"""The job contract shared by every entry point: common flags, a JSON run summary last, a one-line failure reason.

A job module defines `add_arguments(parser)` (optional) and `run(ctx) -> dict`; `main()` in that module calls
`run_job(...)`. The last line a job prints on stdout is its run summary as JSON; on failure the job prints
`ERROR: <reason>` on stderr and exits 1. Nothing here logs row values, so no patient data reaches a log.
Whoever reads a job's output back (the Airflow operator, the alert tasks) finds the summary with `parse_summary` /
`last_summary`, kept here beside the code that prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .config import ENTITIES, ConfigError, Settings, load_settings

log = logging.getLogger("medallion")

# Flags that fill include/pipeline.yaml's `${VAR}` placeholders in the run (catalog {env}_{user}, analysts group). The
# Airflow side passes them as named parameters whenever its own environment sets them, so job and orchestrator resolve
# the same names on any compute (job-level environment variables reach serverless runs only).
CONFIG_VARIABLE_FLAGS = {"user": "MEDALLION_USER", "analysts-group": "MEDALLION_ANALYSTS_GROUP"}
# Parameters the Databricks provider adds to a python_wheel_task (OpenLineage parent-run injection): accepted, and
# only logged by their run ids.
PROVIDER_FLAGS = ("OPENLINEAGE_CONTEXT",)


class JobError(RuntimeError):
    """An expected failure with a reason worth showing to the user as it is."""


@dataclass
class JobContext:
    job: str
    settings: Settings
    args: argparse.Namespace
    run_id: str
    interval_start: datetime | None
    interval_end: datetime | None
    _spark: Any = None
    _lakehouse: Any = None

    @property
    def spark(self):
        if self._spark is None:
            from .session import get_spark

            self._spark = get_spark(self.settings, app_name=f"medallion-{self.job}")
        return self._spark

    @property
    def lakehouse(self):
        if self._lakehouse is None:
            from .lakehouse import Lakehouse

            self._lakehouse = Lakehouse(lambda: self.spark, self.settings)  # Spark starts on first use
        return self._lakehouse

    def on(self, spark) -> JobContext:
        """This context working through another session: a `foreachBatch` function's, its batch's own session (on
        Spark Connect the function runs in the server, where the job's session does not exist)."""
        return dataclasses.replace(self, _spark=spark, _lakehouse=None)

    def __getstate__(self) -> dict:
        """Pickled without its session (Spark Connect pickles a `foreachBatch` function into the server, and a
        session does not pickle): the function works through its batch's session (`on`)."""
        return {**self.__dict__, "_spark": None, "_lakehouse": None}


def parse_ts(value: str | None) -> datetime | None:
    """Parse an ISO-8601 timestamp as Airflow renders it; naive values are taken as UTC."""
    if value in (None, "", "None"):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise JobError(f"not an ISO-8601 timestamp: {value!r}") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def build_parser(job: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"medallion-{job}", description=f"medallion {job} job")
    parser.add_argument("--env", default=None, help="environment from include/pipeline.yaml (default: local)")
    parser.add_argument("--config", default=None, help="path of pipeline.yaml (default: include/pipeline.yaml)")
    parser.add_argument("--interval-start", default=None, help="data interval start, ISO-8601")
    parser.add_argument("--interval-end", default=None, help="data interval end, ISO-8601")
    parser.add_argument("--run-id", default=None, help="the orchestrator's run id, recorded with every write")
    for flag, var in CONFIG_VARIABLE_FLAGS.items():
        parser.add_argument(f"--{flag}", default=None, help=f"fills ${{{var}}} in pipeline.yaml (default: ${var})")
    for flag in PROVIDER_FLAGS:
        parser.add_argument(f"--{flag}", default=None, help=argparse.SUPPRESS)
    if add_arguments:
        add_arguments(parser)
    return parser


def entities_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--entities", default=",".join(ENTITIES), help="comma-separated entities to process, in pipeline order"
    )


def selected_entities(args: argparse.Namespace) -> list[str]:
    wanted = [e.strip() for e in (getattr(args, "entities", None) or ",".join(ENTITIES)).split(",") if e.strip()]
    unknown = sorted(set(wanted) - set(ENTITIES))
    if unknown:
        raise JobError(f"unknown entities {unknown}; entities are {list(ENTITIES)}")
    return [e for e in ENTITIES if e in wanted]


def openlineage_parent(args: argparse.Namespace) -> str | None:
    """`<job name>/<run id>` of the Airflow task the provider named as this run's OpenLineage parent, if any."""
    raw = getattr(args, "OPENLINEAGE_CONTEXT", None)
    if not raw:
        return None
    try:
        parent = json.loads(raw)["parent"]
        return f"{parent['job']['namespace']}/{parent['job']['name']} run {parent['run']['runId']}"
    except (ValueError, KeyError, TypeError):
        return "unreadable OPENLINEAGE_CONTEXT"


def _json_default(value: Any):
    if isinstance(value, datetime):
        return value.isoformat()
    if type(value).__module__ == "numpy":  # a count Spark Connect hands back as a NumPy scalar: a JSON number
        return value.item()
    return str(value)


def run_job(
    job: str,
    run: Callable[[JobContext], dict],
    add_arguments=None,
    argv: list[str] | None = None,
    idle: Callable[[JobContext], str | None] | None = None,
) -> int:
    """Run one job. `idle(ctx)` (optional) says why a run has nothing to do — read without starting Spark where the
    target allows it; the run then reports that as `skipped` and succeeds at once (an hourly safety-net run after
    the asset-triggered one has processed everything)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    args = build_parser(job, add_arguments).parse_args(argv)
    started = time.time()
    ctx = None
    try:
        variables = {
            var: getattr(args, flag.replace("-", "_"))
            for flag, var in CONFIG_VARIABLE_FLAGS.items()
            if getattr(args, flag.replace("-", "_"), None)
        }
        settings = load_settings(args.env, args.config, variables)
        lineage = openlineage_parent(args)
        if lineage:
            log.info("OpenLineage parent: %s", lineage)
        start, end = parse_ts(args.interval_start), parse_ts(args.interval_end)
        if start and end and end <= start:
            raise JobError(f"interval end {end.isoformat()} is not after its start {start.isoformat()}")
        run_id = args.run_id or f"manual__{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
        ctx = JobContext(job=job, settings=settings, args=args, run_id=run_id, interval_start=start, interval_end=end)
        log.info(
            "job %s starting: env=%s target=%s run_id=%s interval=[%s, %s)",
            job,
            settings.env,
            settings.target,
            run_id,
            start,
            end,
        )
        skipped = idle(ctx) if idle else None
        if skipped:
            log.info("job %s has nothing to do: %s", job, skipped)
        result = {"skipped": skipped} if skipped else (run(ctx) or {})
        summary = {
            "job": job,
            "status": "success",
            "env": settings.env,
            "run_id": run_id,
            "interval_start": start,
            "interval_end": end,
            "duration_s": round(time.time() - started, 2),
            **result,
        }
        print(json.dumps(summary, default=_json_default, sort_keys=False), flush=True)
        return 0
    except (JobError, ConfigError) as exc:
        reason = str(exc)
    except Exception as exc:  # an unexpected failure: full trace to the log, its type and message as the reason
        traceback.print_exc(file=sys.stderr)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    reason = " ".join(reason.split())[:500]
    print(f"ERROR: {reason}", file=sys.stderr, flush=True)
    print(
        json.dumps({"job": job, "status": "failed", "reason": reason, "duration_s": round(time.time() - started, 2)}),
        flush=True,
    )
    return 1


def entry(job: str, run, add_arguments=None, idle=None) -> Callable[[list[str] | None], None]:
    """Build a console entry point `main()` for a job module."""

    def main(argv: list[str] | None = None) -> None:
        sys.exit(run_job(job, run, add_arguments, argv, idle))

    return main


def parse_summary(line: str) -> dict | None:
    """The run summary if `line` is one: a JSON object naming its job (what `run_job` prints last), else None."""
    line = (line or "").strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "job" in value else None


def last_summary(output: str) -> dict | None:
    """The run summary in a job's output (stdout, or a task log holding it): its last summary line."""
    for line in reversed((output or "").splitlines()):
        summary = parse_summary(line)
        if summary is not None:
            return summary
    return None
