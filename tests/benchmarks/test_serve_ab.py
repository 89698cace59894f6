"""serve_ab's overhead arithmetic: the raw model's CPU per image at the batch the service ran, from a run's JSON
(whose batch sizes are strings) and from the sitting's mean of every run."""
import pytest

from benchmarks.serve_ab import sitting_raw
from benchmarks.serve_load import model_cpu_ms


def test_the_raw_models_cpu_is_read_between_the_batches_measured_even_from_json_keys():
    raw = {"cpu_ms": {"8": 8.0, "16": 6.0}}  # as read back from JSON: "16" < "8" as strings
    assert model_cpu_ms(raw, 8) == 8.0
    assert model_cpu_ms(raw, 16) == 6.0
    assert model_cpu_ms(raw, 12) == pytest.approx(7.0)
    assert model_cpu_ms(raw, 1) == 8.0 and model_cpu_ms(raw, 32) == 6.0  # outside: the nearest measured


def test_the_sittings_raw_is_the_mean_of_its_runs_at_each_batch():
    runs = [{"raw": {"cpu_ms": {"1": 10.0, "8": 9.0}}}, {"raw": {"cpu_ms": {"1": 13.0, "8": 11.0}}}]
    assert sitting_raw(runs) == {"cpu_ms": {1: 11.5, 8: 10.0}}
    assert model_cpu_ms(sitting_raw(runs), 1) == 11.5
