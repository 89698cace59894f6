"""The demo fits its training length to the time budget from real timed steps."""
from translate_cli.demo import MAX_STEPS, seconds_per_step, steps_for_budget


def test_steps_for_budget_is_clamped_and_grows_with_the_budget():
    assert steps_for_budget(0.001, per_step=0.5) == 100  # a tiny budget still trains enough to show something
    assert steps_for_budget(10_000, per_step=0.5) == MAX_STEPS  # a huge one is capped
    assert steps_for_budget(2.0, per_step=0.5) == 192  # 80 % of 120 s at 0.5 s a step
    assert steps_for_budget(4.0, per_step=0.5) == 384 > steps_for_budget(4.0, per_step=1.0) == 192


def test_a_demo_step_is_timed_on_this_machine():
    t = seconds_per_step()
    assert 0 < t < 60  # a real measurement, whatever the machine's load
