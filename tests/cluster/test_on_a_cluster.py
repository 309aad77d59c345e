"""A representative part of the pipeline's tests with the jobs on a standalone cluster (see conftest.py): the whole
cycle consistent and idempotent, and the generator's ground truth found in full (recall and precision 100 %)."""

from __future__ import annotations

from test_pipeline import test_cycle_is_consistent_and_rerunning_lands_nothing_twice  # noqa: F401
from test_silver import test_quarantine_catches_every_injected_defect_and_nothing_else  # noqa: F401
