"""The pipeline's tests with the jobs on Spark Connect (see conftest.py): ground truth found in full (recall and
precision 100 %), values that do not convert quarantined under ANSI mode, a fail-level rule stopping the run with its
one-line reason, held rows released, quarantine re-validated, gold equal to the generator's history, a whole cycle
consistent and idempotent, and a replayed bronze batch adding nothing."""

from __future__ import annotations

from test_bronze import test_replaying_a_batch_whose_write_committed_adds_nothing  # noqa: F401
from test_gold import (  # noqa: F401
    test_an_out_of_order_version_is_cut_into_its_place_and_facts_follow,
    test_gold_matches_the_generators_ground_truth_over_several_hours,
)
from test_pipeline import test_cycle_is_consistent_and_rerunning_lands_nothing_twice  # noqa: F401
from test_silver import (  # noqa: F401
    test_a_fail_level_rule_stops_the_run_before_the_batch_writes_anything,
    test_after_a_rule_change_quarantine_is_revalidated_and_a_full_refresh_rejudges_bronze,
    test_bad_rows_are_quarantined_with_every_rule_they_fail,
    test_claims_whose_patient_arrives_a_batch_later_are_held_then_released,
    test_hours_taken_in_one_run_keep_the_lineage_separate_runs_keep,
    test_quarantine_catches_every_injected_defect_and_nothing_else,
    test_values_that_do_not_convert_are_quarantined_with_their_rule_also_with_ansi_mode_on,
)
