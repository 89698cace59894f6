"""The demo fits its training length to the time budget from real timed steps."""
from translate_cli.demo import MAX_STEPS, steps_for_budget


def test_steps_for_budget_is_clamped_and_grows_with_the_budget():
    assert steps_for_budget(0.001) == 100  # a tiny budget still trains enough to show something
    assert steps_for_budget(10_000) == MAX_STEPS  # a huge one is capped
    assert 100 < steps_for_budget(2.0) <= MAX_STEPS  # a real budget on any machine that trains at all
