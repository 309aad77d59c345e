"""pytest plugin (loaded by pytest.ini: `-p time_budget`): where the run's time went, per tier, and the time budget.

`make test` prints a table of minutes per tier (the folder under tests/: dags, deploy, spark_jobs, monitor, e2e …)
so every change can quote its cost, writes it to tests/artifacts/timing.json, and fails a run whose wall clock passed
`medallion_time_budget_minutes` (pytest.ini), naming the slowest tests: CI stops at 90 minutes, and a suite that
creeps towards that limit should fail loudly before it gets there."""

from __future__ import annotations

import json
import time as _time
from pathlib import Path

import pytest

TIMING_FILE = Path("tests") / "artifacts" / "timing.json"  # relative to the rootdir

_TIMING: dict[str, float | dict] = {"tests": {}}


def pytest_addoption(parser):
    parser.addini(
        "medallion_time_budget_minutes", "fail the run when the whole session takes longer (0: no budget)", default="0"
    )


def _worker(config) -> bool:
    """An xdist worker: the controller gets every report and keeps the table (workers see only their share)."""
    return hasattr(config, "workerinput")


def pytest_sessionstart(session):
    _TIMING["start"] = _time.monotonic()


def pytest_runtest_logreport(report):
    entry = _TIMING["tests"].setdefault(report.nodeid, {"seconds": 0.0, "outcome": "passed"})
    entry["seconds"] += report.duration
    if report.failed:
        entry["outcome"] = "failed"
    elif report.skipped and report.when in ("setup", "call"):
        entry["outcome"] = "skipped"


def tier(nodeid: str) -> str:
    """The folder under tests/ a test lives in (its tier: dags, deploy, spark_jobs, e2e …)."""
    parts = nodeid.split("::")[0].split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" else parts[0]


def timing_table(tests: dict[str, dict], wall: float) -> tuple[list[dict], str]:
    tiers: dict[str, dict] = {}
    for nodeid, t in tests.items():
        row = tiers.setdefault(
            tier(nodeid), {"tier": tier(nodeid), "tests": 0, "failed": 0, "skipped": 0, "seconds": 0.0}
        )
        row["tests"] += 1
        row["seconds"] += t["seconds"]
        row["failed"] += t["outcome"] == "failed"
        row["skipped"] += t["outcome"] == "skipped"
    rows = sorted(tiers.values(), key=lambda r: -r["seconds"])
    lines = [f"{'tier':<12}{'tests':>7}{'failed':>8}{'skipped':>9}{'minutes':>9}{'share':>7}"]
    total = sum(r["seconds"] for r in rows) or 1.0
    for r in rows:
        r["seconds"] = round(r["seconds"], 1)
        lines.append(
            f"{r['tier']:<12}{r['tests']:>7}{r['failed']:>8}{r['skipped']:>9}{r['seconds'] / 60:>9.1f}"
            f"{r['seconds'] / total:>7.0%}"
        )
    lines.append(
        f"{'whole run':<12}{len(tests):>7}{sum(r['failed'] for r in rows):>8}"
        f"{sum(r['skipped'] for r in rows):>9}{wall / 60:>9.1f}  (wall clock)"
    )
    return rows, "\n".join(lines)


def pytest_sessionfinish(session, exitstatus):
    """Runs before the terminal summary: decide here whether the run is over its budget (the exit status)."""
    if not _TIMING["tests"] or "start" not in _TIMING or _worker(session.config):
        return
    wall = _TIMING["wall"] = _time.monotonic() - _TIMING["start"]
    budget = float(session.config.getini("medallion_time_budget_minutes") or 0)
    if budget and wall > budget * 60 and session.exitstatus in (0, 5):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _TIMING["budget"] = budget


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if "wall" not in _TIMING:
        return
    wall, budget = _TIMING["wall"], _TIMING["budget"]
    rows, table = timing_table(_TIMING["tests"], wall)
    terminalreporter.section("time by tier")
    terminalreporter.write_line(table)
    slowest = sorted(_TIMING["tests"].items(), key=lambda kv: -kv[1]["seconds"])[:10]
    out = config.rootpath / TIMING_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "wall_seconds": round(wall, 1),
                "budget_minutes": budget,
                "tiers": rows,
                "slowest": [{"test": k, "seconds": round(v["seconds"], 1)} for k, v in slowest],
            },
            indent=2,
        )
    )
    if budget and wall > budget * 60:
        terminalreporter.write_line(
            f"TIME BUDGET EXCEEDED: the run took {wall / 60:.1f} min, over the budget of "
            f"{budget:g} min (pytest.ini medallion_time_budget_minutes). Slowest tests:",
            red=True,
            bold=True,
        )
        for nodeid, t in slowest:
            terminalreporter.write_line(f"  {t['seconds'] / 60:6.1f} min  {nodeid}", red=True)
