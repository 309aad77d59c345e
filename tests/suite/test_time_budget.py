"""The suite's own time budget (tests/time_budget.py): the per-tier table every run prints, and a run over budget fails
naming its slowest tests — checked on a throw-away suite run by a real pytest process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parents[1]


def _suite(tmp_path: Path, budget_minutes: str) -> subprocess.CompletedProcess:
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\naddopts = -p time_budget\nmedallion_time_budget_minutes = {budget_minutes}\n"
    )
    for tier, body in (
        ("fast", "def test_quick():\n    assert True\n"),
        (
            "slow",
            "import time\n\ndef test_sleepy():\n    time.sleep(2)\n\n"
            "def test_skipped():\n    import pytest\n    pytest.skip('not here')\n",
        ),
    ):
        folder = tmp_path / "tests" / tier
        folder.mkdir(parents=True)
        (folder / f"test_{tier}.py").write_text(body)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(PLUGIN_DIR), "PATH": "/usr/bin:/bin", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_run_prints_and_stores_minutes_per_tier(tmp_path):
    run = _suite(tmp_path, "0")
    assert run.returncode == 0, run.stdout[-2000:]
    assert "time by tier" in run.stdout and "whole run" in run.stdout
    timing = json.loads((tmp_path / "tests" / "artifacts" / "timing.json").read_text())
    tiers = {t["tier"]: t for t in timing["tiers"]}
    assert set(tiers) == {"fast", "slow"}
    assert tiers["slow"]["tests"] == 2 and tiers["slow"]["skipped"] == 1 and tiers["slow"]["seconds"] >= 2
    assert timing["tiers"][0]["tier"] == "slow"  # the costliest tier first
    assert timing["slowest"][0]["test"] == "tests/slow/test_slow.py::test_sleepy"


def test_a_run_over_its_budget_fails_and_names_the_slowest_tests(tmp_path):
    run = _suite(tmp_path, "0.02")  # 1.2 s: the sleepy test alone takes longer
    assert run.returncode == 1, run.stdout[-2000:]
    assert "TIME BUDGET EXCEEDED" in run.stdout
    slowest = [line.split()[-1] for line in run.stdout.split("TIME BUDGET EXCEEDED", 1)[1].splitlines()[1:4]]
    assert slowest[0] == "tests/slow/test_slow.py::test_sleepy", slowest
