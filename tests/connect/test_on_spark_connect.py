"""The pipeline's tests with the jobs on Spark Connect (see conftest.py).

In `make test` (about 5 minutes; every test runs with ANSI mode on): the generator's ground truth found in full
(recall and precision 100 %), a fail-level rule stopping the run with its one-line reason, and bronze exactly once
across a server killed mid-write. `make test-connect` also runs the ones marked `extended`: a whole cycle consistent
and idempotent through gold and the monitor, values that do not convert quarantined with their rule, gold equal to
the generator's history and to its own rebuild, out-of-order versions, held rows released, re-validation and full
refresh, several hours in one run equal to one at a time, every rule named, and a replayed bronze batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_bronze
import test_gold
import test_pipeline
import test_silver
from engines import again, job_runner, spark_servers

extended = pytest.mark.extended

test_quarantine_catches_every_injected_defect_and_nothing_else = again(
    test_silver.test_quarantine_catches_every_injected_defect_and_nothing_else
)
test_cycle_is_consistent_and_rerunning_lands_nothing_twice = again(
    test_pipeline.test_cycle_is_consistent_and_rerunning_lands_nothing_twice, extended
)
test_values_that_do_not_convert_are_quarantined_with_their_rule_also_with_ansi_mode_on = again(
    test_silver.test_values_that_do_not_convert_are_quarantined_with_their_rule_also_with_ansi_mode_on, extended
)
test_a_fail_level_rule_stops_the_run_before_the_batch_writes_anything = again(
    test_silver.test_a_fail_level_rule_stops_the_run_before_the_batch_writes_anything, extended
)

test_gold_matches_the_generators_ground_truth_over_several_hours = again(
    test_gold.test_gold_matches_the_generators_ground_truth_over_several_hours, extended
)
test_an_out_of_order_version_is_cut_into_its_place_and_facts_follow = again(
    test_gold.test_an_out_of_order_version_is_cut_into_its_place_and_facts_follow, extended
)
test_claims_whose_patient_arrives_a_batch_later_are_held_then_released = again(
    test_silver.test_claims_whose_patient_arrives_a_batch_later_are_held_then_released, extended
)
test_after_a_rule_change_quarantine_is_revalidated_and_a_full_refresh_rejudges_bronze = again(
    test_silver.test_after_a_rule_change_quarantine_is_revalidated_and_a_full_refresh_rejudges_bronze, extended
)
test_hours_taken_in_one_run_keep_the_lineage_separate_runs_keep = again(
    test_silver.test_hours_taken_in_one_run_keep_the_lineage_separate_runs_keep, extended
)
test_bad_rows_are_quarantined_with_every_rule_they_fail = again(
    test_silver.test_bad_rows_are_quarantined_with_every_rule_they_fail, extended
)
test_replaying_a_batch_whose_write_committed_adds_nothing = again(
    test_bronze.test_replaying_a_batch_whose_write_committed_adds_nothing, extended
)
# the server runs Spark's default Parquet rebase mode (EXCEPTION), as a serverless job cannot change it
test_dates_older_than_parquet_writes_alike_are_quarantined_under_the_runtimes_default_rebase_mode = again(
    test_silver.test_dates_older_than_parquet_writes_alike_are_quarantined_under_the_runtimes_default_rebase_mode,
    extended,
)


def test_a_bronze_run_whose_server_dies_mid_write_leaves_no_duplicate_and_no_gap(
    run_job, spark, settings, monkeypatch, tmp_path
):
    """On serverless the compute can go away under a running job. Here the Connect server is killed while bronze's
    second batch is being written (its offsets logged, its commit not), a new server is started, and bronze runs
    again: every landed row is in bronze exactly once, and the ops records agree file by file."""
    monkeypatch.setenv("MEDALLION_BRONZE_MAX_FILES_PER_TRIGGER", "1")
    totals = {"patients": test_bronze._generate(run_job, 1000)["patients"]}
    checkpoint = Path(settings.location("checkpoints")) / "bronze_patients"
    doomed = spark_servers.start_connect(state=tmp_path / "doomed")
    job = subprocess.Popen(
        [str(Path(sys.executable).with_name("medallion-bronze")), "--entities", "patients", "--run-id", "cut-off"],
        env={**os.environ, "SPARK_REMOTE": f"sc://127.0.0.1:{doomed.port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed = False
    try:
        deadline = time.time() + 240
        while time.time() < deadline and job.poll() is None:
            if (checkpoint / "offsets" / "1").exists() and not (checkpoint / "commits" / "1").exists():
                time.sleep(0.5)
                killed = job.poll() is None
                os.killpg(doomed.process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        doomed.stop()
        job.kill()  # a client keeps retrying a lost server for minutes; the platform fails the run instead
        job.wait()
    assert killed, "the job finished before its server could be killed"
    assert not (checkpoint / "commits" / "1").exists()
    fresh = spark_servers.start_connect(state=tmp_path / "fresh")
    try:
        after = job_runner({"SPARK_REMOTE": f"sc://127.0.0.1:{fresh.port}"})("bronze", "--entities", "patients")
    finally:
        fresh.stop()
    assert after["tables"]["patients"]["files_seen"] >= 2  # the interrupted batch and what came after it
    test_bronze._assert_exact(spark, settings, totals)
