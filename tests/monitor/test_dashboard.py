"""The quality dashboard the monitoring job writes: its figures, and how it looks in a real headless browser.

The browser test drives Debian's chromium through Selenium + chromium-driver (installed by .ci/run), opens the page
three monitoring runs left behind, checks that it loads without console errors and that every chart drew its data,
and saves a screenshot under tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from .conftest import SILVER_PATIENTS, ago

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHARTS = ("quality", "quarantine", "freshness", "volumes", "drift")


@pytest.fixture(scope="module")
def history(tmp_path_factory, spark):
    """Three monitoring runs over small hand-made tables: a dashboard with history in every chart."""
    import os

    from medallion.config import load_settings

    from .conftest import Tables

    old = os.environ["MEDALLION_LAKEHOUSE"]
    os.environ["MEDALLION_LAKEHOUSE"] = str(tmp_path_factory.mktemp("dash") / "lakehouse")
    try:
        import io
        import json
        from contextlib import redirect_stdout

        from medallion import monitor
        from medallion.cli import run_job

        settings = load_settings()
        t = Tables(spark, settings)
        rng = np.random.default_rng(3)
        # patients: 3000 landed rows, exactly what the three silver runs below account for (reconciliation balances);
        # claims and events: a last batch far below the others (a volume anomaly)
        t.bronze(
            "patients", {f"2026-11-27T{h:02d}00Z": n for h, n in enumerate([500, 510, 495, 505, 490, 500])}, ago(20)
        )
        batches = {f"2026-11-27T{h:02d}00Z": n for h, n in enumerate([300, 310, 295, 305, 290, 120])}
        for entity in ("claims", "medical_events"):
            t.bronze(entity, batches, ago(20))
        t.quarantine("patients", [["valid_age"]] * 3 + [["valid_bmi", "valid_age"]] * 2, ago(20))
        t.quarantine("claims", [["valid_claim_amount"]] * 4 + [["patient_exists"]], ago(20))
        summaries = []
        for i, (valid, bad) in enumerate([(995, 2), (990, 8), (998, 1)]):
            t.silver_run(
                f"s{i}", "patients", ago(15 - i), 1000, valid, bad, dups=1000 - valid - bad, by_rule={"valid_age": bad}
            )
            t.write(
                settings.table_name("silver", "patients"),
                SILVER_PATIENTS,
                [
                    (
                        f"P{i}{j:04d}",
                        int(np.clip(rng.normal(45 + 6 * i, 15), 18, 85)),
                        float(rng.normal(28, 6)),
                        float(rng.lognormal(9, 0.5)),
                        ago(14 - i),
                        f"s{i}",
                    )
                    for j in range(300)
                ],
            )
            out = io.StringIO()
            with redirect_stdout(out):
                assert run_job("monitor", monitor.run, None, ["--run-id", f"monitor_{i}"]) == 0
            summaries.append(json.loads(out.getvalue().strip().splitlines()[-1]))
        yield summaries
    finally:
        os.environ["MEDALLION_LAKEHOUSE"] = old


@pytest.mark.slow  # its fixture runs the monitoring job three times
def test_the_page_holds_every_chart_with_data_and_no_patient_data(history):
    summary = history[-1]
    page = Path(summary["dashboard"]).read_text()
    for chart in CHARTS:
        points = int(re.search(rf'data-chart="{chart}" data-points="(\d+)"', page).group(1))
        assert points > 0, chart
    assert page.count('class="point"') >= 3 * 4  # quality: 3 runs x (overall + entities with figures)
    assert "target 99.5%" in page and "valid_age" in page and "bronze_claims" in page
    assert 'class="bar" x=' in page and "outside the band" in page  # the 120-row batch is flagged
    assert not re.search(r'(src|href)="https?:', page)  # self-contained: nothing fetched at view time
    assert not re.search(r"P\d{5}", page)  # no patient id reached the page
    assert summary["previous_monitoring_run"] == "monitor_1"
    assert summary["reconciliation"]["patients"] is True


@pytest.mark.slow
def test_the_dashboard_renders_in_headless_chromium_without_console_errors(history):
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("chromium and chromium-driver are needed (.ci/run installs them from Debian)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,2200",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get(Path(history[-1]["dashboard"]).as_uri())
        assert driver.title.startswith("Medallion quality dashboard")
        for chart in CHARTS:
            figure = driver.find_element(By.ID, chart)
            assert figure.is_displayed() and int(figure.get_attribute("data-points")) > 0, chart
            drawn = figure.find_elements(By.CSS_SELECTOR, "svg circle.point, svg rect.bar")
            assert drawn, f"{chart}: nothing drawn"
            box = driver.execute_script(
                "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];",
                figure.find_element(By.TAG_NAME, "svg"),
            )
            assert box[0] > 200 and box[1] > 80, (chart, box)
        # the 99.5 % target line is drawn inside the quality chart
        ref = driver.find_element(By.CSS_SELECTOR, "#quality line.ref")
        assert ref.get_attribute("stroke") == "#d62728"
        score = driver.find_element(By.ID, "tile-score").text
        assert "%" in score and "target 99.5%" in score
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        ARTIFACTS.mkdir(exist_ok=True)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, max(900, int(height) + 40))
        shot = ARTIFACTS / "dashboard.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    finally:
        driver.quit()
