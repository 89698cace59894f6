"""The checks every registered method passes, each on its own tiny config (tests/training/shared_checks.py):
a resumed run is the run that was never stopped, and the run exports every generator. Every objective
in every adversarial method: tests/training/test_objectives.py; two processes: test_distributed.py."""
import pytest

import training
from tests.training.shared_checks import check_exact_resume, check_export, registered


@pytest.mark.parametrize("name", registered())
def test_a_resumed_run_is_the_run_that_never_stopped(name, tiny_pairs, tmp_path):
    check_exact_resume(training.method(name), tiny_pairs, tmp_path)


@pytest.mark.parametrize("name", registered())
def test_the_run_exports_every_generator(name, tiny_pairs, tmp_path):
    check_export(training.method(name), tiny_pairs, tmp_path)
