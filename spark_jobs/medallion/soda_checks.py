"""Soda Core checks on the silver tables, run by the silver job on the data it has just written.

The SodaCL files live in `include/soda/` (one per silver table, `soda.check_files`). A value written
`"{{ dotted.path }}"` in them is filled from include/pipeline.yaml before Soda reads the file, so the vocabularies,
ranges and code patterns are the silver rules' own (`quality.*`) and table names come from `tables`.

One Soda scan covers the selected tables: each is registered as a temporary view of its Delta table (one snapshot,
the data the job just wrote) and Soda runs its aggregate queries through the job's Spark session (`spark_df`).
Each check's outcome lands as one row in the operations table `tables.ops.soda_checks` (replaced when the same run
is retried) and as one line in the job log. A check that fails at its `fail` level (every check without `warn:`)
makes `raise_for_failures` raise `SodaCheckFailed`, a `JobError`, so the silver task fails with a one-line reason;
a `warn` outcome only reports.

Privacy: failed-row samples are off twice over - the global sample limit is 0, so Soda builds no failed-rows query,
and the sampler it would use stores nothing and never reads a row. Soda's own log records are kept out of the job log
while it runs; its warnings and errors are forwarded as one line each with quoted literals masked and no stack trace.
Soda Core's usage telemetry is switched off before Soda is first imported. Check outcomes carry counts, column names
and `_processed_at` times only.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .cli import JobError
from .config import ENTITIES, ConfigError, Settings

log = logging.getLogger("medallion.soda")

DEFAULTS = {
    "enabled": True,
    "checks_dir": "include/soda",
    "check_files": {e: f"silver_{e}.yml" for e in ENTITIES},
    "data_source": "silver",
    "freshness_warn_hours": 6,
    "min_rows_warn": 100,
    "fail_on_error": True,
}
OUTCOMES = ("pass", "warn", "fail", "error")
_PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


# ---- configuration and check files -------------------------------------------------------------------------------


def soda_settings(settings: Settings) -> dict[str, Any]:
    """The `soda:` section of pipeline.yaml over the defaults."""
    return {**DEFAULTS, **(settings.raw.get("soda") or {})}


def check_file(settings: Settings, entity: str) -> Path:
    cfg = soda_settings(settings)
    folder = settings.project_file(cfg["checks_dir"])
    try:
        return folder / cfg["check_files"][entity]
    except KeyError as exc:
        raise ConfigError(f"soda.check_files has no file for {entity}") from exc


def _lookup(raw: dict, dotted: str, where: str) -> Any:
    value: Any = raw
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ConfigError(f"{where}: placeholder {{{{ {dotted} }}}} is not a value of pipeline.yaml")
        value = value[part]
    return value


def _fill(node: Any, raw: dict, where: str) -> Any:
    """Replace placeholders: a string that is one placeholder takes the config value as it is (a list stays a list);
    a placeholder inside a longer string is replaced by the value's text."""
    if isinstance(node, dict):
        return {_fill(k, raw, where): _fill(v, raw, where) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, raw, where) for v in node]
    if isinstance(node, str):
        whole = _PLACEHOLDER.fullmatch(node.strip())
        if whole:
            return _lookup(raw, whole.group(1), where)
        return _PLACEHOLDER.sub(lambda m: str(_lookup(raw, m.group(1), where)), node)
    return node


def render_checks(settings: Settings, entity: str) -> dict[str, Any]:
    """One entity's SodaCL file as data, placeholders filled from pipeline.yaml."""
    path = check_file(settings, entity)
    if not path.is_file():
        raise ConfigError(f"Soda check file not found: {path}")
    with path.open(encoding="utf-8") as fh:
        template = yaml.safe_load(fh)
    if not isinstance(template, dict) or not template:
        raise ConfigError(f"Soda check file {path} holds no checks")
    return _fill(template, settings.raw, path.name)


def render_checks_yaml(settings: Settings, entity: str) -> str:
    return yaml.safe_dump(render_checks(settings, entity), sort_keys=False, allow_unicode=True, width=1000)


# ---- results ------------------------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    table_name: str
    check_name: str
    column_name: str | None
    outcome: str  # pass | warn | fail | error
    level: str  # fail: the check can fail the task; warn: it only reports
    measured_value: float | None
    measured_text: str | None
    definition: str
    check_identity: str | None

    def describe(self) -> str:
        measured = self.measured_text or (_fmt(self.measured_value) if self.measured_value is not None else "-")
        return f"{self.check_name} on {self.table_name} (measured {measured})"


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


class SodaCheckFailed(JobError):
    """Fail-level Soda checks failed (or could not be evaluated); the message is the task's one-line reason."""

    def __init__(self, reason: str, summary: dict):
        super().__init__(reason)
        self.summary = summary


# ---- Soda plumbing ------------------------------------------------------------------------------------------------


def _soda_without_telemetry():
    """Import Soda's Scan with usage telemetry off and without writing ~/.soda/config.yml.

    Soda decides at import time (soda.telemetry.soda_telemetry, imported by soda.scan) from its global config
    whether to send anonymous usage data to collect.soda.io; the pipeline never should. If Soda was imported
    before, the already created telemetry object is switched off instead.
    """
    import sys

    if "soda.telemetry.soda_telemetry" not in sys.modules:
        from soda.common.config_helper import ConfigHelper

        if getattr(ConfigHelper, "_ConfigHelper__instance", None) is None:
            helper = object.__new__(ConfigHelper)
            helper._ConfigHelper__config = {
                "send_anonymous_usage_stats": False,
                "user_cookie_id": "medallion-telemetry-off",
            }
            helper._config_path = None
            ConfigHelper._ConfigHelper__instance = helper
    from .soda_spark_df import register

    register()  # Soda's spark_df data source: soda-core-spark-df where installed (local), ours on Databricks
    from soda.scan import Scan
    from soda.telemetry.soda_telemetry import SodaTelemetry

    SodaTelemetry.get_instance()._SodaTelemetry__send = False
    return Scan


def _no_rows_sampler():
    from soda.sampler.sample_ref import SampleRef
    from soda.sampler.sampler import Sampler

    class NoRowsSampler(Sampler):
        """Keeps no failed rows: never asks the sample for its rows or their count (nothing is collected)."""

        def store_sample(self, sample_context) -> SampleRef:
            return SampleRef(
                name=sample_context.sample_name,
                schema=None,
                total_row_count=0,
                stored_row_count=0,
                type=SampleRef.TYPE_NOT_PERSISTED,
                message="failed-row samples are disabled (rows may hold PHI)",
            )

    return NoRowsSampler()


@contextmanager
def _soda_logs_kept_out():
    """While Soda runs, its Python log records do not reach the job's handlers (they are forwarded afterwards)."""
    soda_logger = logging.getLogger("soda")
    propagate = soda_logger.propagate
    soda_logger.propagate = False
    null = logging.NullHandler()
    soda_logger.addHandler(null)
    try:
        yield
    finally:
        soda_logger.removeHandler(null)
        soda_logger.propagate = propagate


def scrub(message: str, limit: int = 300) -> str:
    """One line of a Soda message fit for the job log: first line, quoted literals masked, length capped."""
    first = (str(message or "").strip().splitlines() or [""])[0]
    first = _QUOTED.sub("'…'", first)
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _level(source_configurations: Any) -> str:
    cfg = source_configurations if isinstance(source_configurations, dict) else {}
    return "warn" if "warn" in cfg and "fail" not in cfg else "fail"


def _measured(check_dict: dict) -> tuple[float | None, str | None]:
    diagnostics = check_dict.get("diagnostics") or {}
    if "freshness" in diagnostics:  # Soda's value is the age in milliseconds
        millis = diagnostics.get("value")
        hours = round(millis / 3_600_000, 4) if isinstance(millis, (int, float)) else None
        return (
            hours,
            f"freshness {diagnostics['freshness']} (newest _processed_at {diagnostics.get('maxColumnTimestampUtc')})",
        )
    if "valueSeries" in diagnostics or "column_type_mismatches" in diagnostics:  # schema check: column names only
        events = {
            k: diagnostics.get(k)
            for k in ("missing_column_names", "column_type_mismatches", "column_additions", "column_deletions")
            if diagnostics.get(k)
        }
        present = [c for c in diagnostics.get("present_column_names") or []]
        if present:
            events["forbidden_columns_present"] = present
        count = sum(len(v) for v in events.values())
        return float(count), (json.dumps(events, sort_keys=True, default=str) if events else "schema as expected")
    value = diagnostics.get("value")
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and math.isnan(value))
    ):
        return None, None if value is None else scrub(str(value), 100)
    return float(value), None


def _results(scan, tables: list[str]) -> list[CheckResult]:
    results = []
    for check in scan._checks:  # every check, also those Soda could not evaluate (outcome None)
        d = check.get_dict()
        outcome = d.get("outcome")
        value, text = _measured(d) if outcome else (None, None)
        level = _level(check.check_cfg.source_configurations)
        if level == "warn" and outcome == "fail":  # e.g. the freshness of an empty table: a warn check only warns
            outcome = "warn"
        results.append(
            CheckResult(
                table_name=d.get("table") or "-",
                check_name=str(d.get("name")),
                column_name=d.get("column"),
                outcome=outcome if outcome in ("pass", "warn", "fail") else "error",
                level=level,
                measured_value=value,
                measured_text=text,
                definition=d.get("definition"),
                check_identity=d.get("identity"),
            )
        )
    found = {r.table_name for r in results}
    for table in tables:  # a file whose checks Soda could not parse must not pass silently
        if table not in found:
            results.append(
                CheckResult(
                    table,
                    "checks parsed",
                    None,
                    "error",
                    "fail",
                    None,
                    "no check of this table was evaluated (see the Soda errors above)",
                    "",
                    None,
                )
            )
    return results


# ---- the entry points ---------------------------------------------------------------------------------------------


def run_scans(spark, lake, settings: Settings, run_id: str, entities: Iterable[str] = ENTITIES) -> dict:
    """Scan the silver tables of `entities` that exist, record one row per check, log one line per check.

    Returns {"enabled", "checks", "passed", "warned", "failed", "errors", "failed_checks", "warned_checks",
    "error_checks", "tables", "skipped_tables", "soda_errors"}; it never raises for a failed check
    (`raise_for_failures` does that).
    """
    cfg = soda_settings(settings)
    wanted = set(entities)
    entities = [e for e in ENTITIES if e in wanted]
    if not cfg["enabled"]:
        log.info("soda: checks disabled (soda.enabled: false)")
        return {
            "enabled": False,
            "checks": 0,
            "passed": 0,
            "warned": 0,
            "failed": 0,
            "errors": 0,
            "failed_checks": [],
            "warned_checks": [],
            "error_checks": [],
            "tables": [],
            "skipped_tables": [],
            "soda_errors": [],
        }
    silver = {e: settings.table_name("silver", e) for e in ENTITIES}
    present = {e: lake.exists(t) for e, t in silver.items()}
    scanned = [e for e in entities if present[e]]
    skipped = [silver[e] for e in entities if not present[e]]
    documents = {e: render_checks_yaml(settings, e) for e in scanned}  # config errors surface before any work

    views = [silver[e] for e in ENTITIES if present[e] and (e in scanned or e == "patients")]  # patients: references
    checked_at = datetime.now(timezone.utc)
    results: list[CheckResult] = []
    soda_errors: list[str] = []
    if scanned:
        Scan = _soda_without_telemetry()
        for table in views:
            lake.read(table).createOrReplaceTempView(table)
        try:
            with _soda_logs_kept_out():
                scan = Scan()
                scan.set_scan_definition_name(f"medallion_silver_{run_id}")
                scan.set_data_source_name(cfg["data_source"])
                scan.add_spark_session(spark, data_source_name=cfg["data_source"])
                scan.sampler = _no_rows_sampler()
                scan._configuration.samples_limit = 0  # no failed-rows query at all (0 in a config file is ignored)
                for entity in scanned:
                    scan.add_sodacl_yaml_str(documents[entity], file_name=check_file(settings, entity).stem)
                scan.execute()
            for entry in scan.get_error_or_warning_logs():
                line = scrub(entry.message)
                if entry.exception is not None:
                    line += f" ({type(entry.exception).__name__})"
                if entry.level.value == "ERROR":
                    soda_errors.append(line)
                log.warning("soda %s: %s", entry.level.value.lower(), line)
            results = _results(scan, [silver[e] for e in scanned])
        finally:
            for table in views:
                spark.catalog.dropTempView(table)

    summary = _summarize(results, soda_errors, cfg, [silver[e] for e in scanned], skipped)
    _record(lake, settings, run_id, checked_at, results, [silver[e] for e in scanned])
    _log_summary(results, summary)
    return summary


def _summarize(
    results: list[CheckResult], soda_errors: list[str], cfg: dict, tables: list[str], skipped: list[str]
) -> dict:
    count = {o: sum(r.outcome == o for r in results) for o in OUTCOMES}
    return {
        "enabled": True,
        "checks": len(results),
        "passed": count["pass"],
        "warned": count["warn"],
        "failed": count["fail"],
        "errors": count["error"],
        "failed_checks": [r.describe() for r in results if r.outcome == "fail"],
        "warned_checks": [r.describe() for r in results if r.outcome == "warn"],
        "error_checks": [f"{r.check_name} on {r.table_name}" for r in results if r.outcome == "error"],
        "soda_errors": soda_errors,
        "fail_on_error": bool(cfg["fail_on_error"]),
        "tables": tables,
        "skipped_tables": skipped,
    }


def _record(
    lake, settings: Settings, run_id: str, checked_at: datetime, results: list[CheckResult], tables: list[str]
) -> None:
    """Replace this run's rows of the scanned tables in the ops table (one commit: a retried run leaves one set)."""
    if not tables:
        return
    from .ops import SODA_CHECKS, OpsTable

    checks = OpsTable.open(lake, settings.raw["tables"]["ops"]["soda_checks"], SODA_CHECKS)
    rows = [{"run_id": run_id, "checked_at": checked_at, **asdict(r)} for r in results]
    seen: set[tuple[str, str]] = set()
    unique = []
    for row in rows:  # one row per check: a repeated identical check is recorded once
        key = (row["table_name"], row["check_name"])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    checks.replace_run(run_id, unique, within=("table_name", tables))


def _log_summary(results: list[CheckResult], summary: dict) -> None:
    for r in results:
        measured = r.measured_text or (_fmt(r.measured_value) if r.measured_value is not None else "-")
        log.info(
            "soda %-4s %s | %s | level=%s | measured=%s",
            r.outcome.upper(),
            r.table_name,
            r.check_name,
            r.level,
            measured,
        )
    log.info(
        "soda: %d checks on %s: %d passed, %d warned, %d failed, %d errors%s",
        summary["checks"],
        ", ".join(summary["tables"]) or "no table",
        summary["passed"],
        summary["warned"],
        summary["failed"],
        summary["errors"],
        f"; not scanned (no table yet): {', '.join(summary['skipped_tables'])}" if summary["skipped_tables"] else "",
    )


def failure_reason(summary: dict) -> str | None:
    """The one-line reason a Soda result fails the task, or None when it does not."""
    if not summary.get("enabled", True):
        return None
    parts = []
    if summary["failed"]:
        parts.append(
            f"{summary['failed']} fail check{'s' if summary['failed'] != 1 else ''}: "
            + "; ".join(summary["failed_checks"])
        )
    if summary.get("fail_on_error", True) and (summary["errors"] or summary.get("soda_errors")):
        what = summary["error_checks"] or summary["soda_errors"]
        parts.append(f"{summary['errors'] or len(summary['soda_errors'])} check error(s): " + "; ".join(what[:5]))
    return "Soda: " + " | ".join(parts) if parts else None


def raise_for_failures(summary: dict) -> None:
    """Raise SodaCheckFailed (a JobError: the task fails with a one-line reason) if a fail-level check failed."""
    reason = failure_reason(summary)
    if reason:
        raise SodaCheckFailed(reason, summary)
