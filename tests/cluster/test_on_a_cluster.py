"""A representative part of the pipeline's tests with the jobs on a standalone cluster (see conftest.py). In
`make test`: the generator's ground truth found in full (recall and precision 100 %) through generate, bronze and
silver; `make test-cluster` also runs the whole cycle through gold and the monitor (marked `extended`)."""

from __future__ import annotations

import pytest
import test_pipeline
import test_silver
from engines import again

test_quarantine_catches_every_injected_defect_and_nothing_else = again(
    test_silver.test_quarantine_catches_every_injected_defect_and_nothing_else
)
test_cycle_is_consistent_and_rerunning_lands_nothing_twice = again(
    test_pipeline.test_cycle_is_consistent_and_rerunning_lands_nothing_twice, pytest.mark.extended
)
