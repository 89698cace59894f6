"""`translate demo` (`make demo`): both models within one time budget, fitted from real timed steps."""
import dataclasses
import json

import numpy as np
import pytest

from translate_cli.demo import MAX_STEPS, seconds_per_step, steps_for_budget


def test_steps_for_budget_is_clamped_and_grows_with_the_budget():
    assert steps_for_budget(0.001, per_step=0.5) == 100  # a tiny budget still trains enough to show something
    assert steps_for_budget(10_000, per_step=0.5) == MAX_STEPS  # a huge one is capped
    assert steps_for_budget(2.0, per_step=0.5) == 192  # 80 % of 120 s at 0.5 s a step
    assert steps_for_budget(4.0, per_step=0.5) == 384 > steps_for_budget(4.0, per_step=1.0) == 192


def test_a_demo_step_is_timed_as_the_median_of_eight_after_a_warm_up(monkeypatch):
    """The demo's own preset step, timed by an injected clock: three untimed warm-up steps, then the median of
    eight (one hiccup does not count)."""
    import time

    from training.pix2pix import Pix2Pix

    steps, now = [], [0.0]
    durations = iter([0.5, 0.4, 9.0, 0.6, 0.45, 0.55, 0.5, 0.42])  # one hiccup of 9 s

    def step(self, batch):
        steps.append((self.config.preset, tuple(batch["A"].shape)))
        if len(steps) > 3:  # timed from the fourth on
            now[0] += next(durations)

    monkeypatch.setattr(Pix2Pix, "step", step)
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    assert seconds_per_step("sketches") == pytest.approx(0.5)  # sorted .4 .42 .45 .5 .5 .55 .6 9: the fifth
    assert len(steps) == 11 and {preset for preset, _ in steps} == {"sketches"}


def test_the_demo_trains_registers_and_reuses_both_models(tmp_path, monkeypatch, capsys):
    """`make demo` end to end, shortened: tiny sets, tiny networks and a few steps instead of its 4 minutes."""
    from serving.store import ModelStore
    from translate_cli import demo

    monkeypatch.setattr(demo, "SIZE", 32)
    monkeypatch.setattr(demo, "DEMOS", tuple(dataclasses.replace(d, count=12) for d in demo.DEMOS))
    monkeypatch.setattr(demo, "TRAIN", {**demo.TRAIN, "size": 32, "netG": "unet_32", "ngf": 8, "ndf": 8, "workers": 0,
                                        "progress": False})
    monkeypatch.setattr(demo, "seconds_per_step", lambda preset="maps": 0.5)  # timed in the test above
    monkeypatch.setattr(demo, "steps_for_budget", lambda minutes, per_step: 3)
    out = tmp_path / "demo"
    page = demo.run_demo(out, minutes=1.0, n_show=2)
    printed = capsys.readouterr().out
    store = ModelStore(out / "models")
    assert store.names() == ["maps", "sketches"]  # the names the page looks for
    assert store.current("maps") == store.current("sketches") == "v0001"
    for name in ("maps.png", "sketches.png", "results/drawn/mug.png", "results/drawn/box.png",
                 "results/drawn/bottle.png"):
        assert (out / name).is_file(), name
    text = page.read_text()
    assert "sketch &rarr; photo" in text and "aerial photo &rarr; map" in text and "results/drawn/mug.png" in text
    assert "maps test set" in printed and "sketches test set" in printed
    # budgets: each model its share of the minutes given
    cfg = {k: json.loads((out / "runs" / k / "config.json").read_text()) for k in ("maps", "sketches")}
    assert cfg["maps"]["time_limit"] == 0.45 and cfg["sketches"]["time_limit"] == 0.55
    assert cfg["maps"]["preset"] == "maps" and cfg["sketches"]["preset"] == "sketches"
    # a second run reuses the data, the models and their versions
    demo.run_demo(out, minutes=1.0, n_show=2)
    printed = capsys.readouterr().out
    assert "reusing the trained maps model" in printed and "reusing the trained sketches model" in printed
    assert [len(ModelStore(out / "models").versions(n)) for n in ("maps", "sketches")] == [1, 1]


def test_doodles_are_black_strokes_on_white():
    from translate_cli.demo import DOODLES, doodle

    for kind in DOODLES:
        d = doodle(kind, 128, pen=2)
        assert d.shape == (128, 128, 3) and (d[..., 0] == d[..., 2]).all()
        assert 0.02 < (d[..., 0] < 128).mean() < 0.2 and (d[..., 0] == 255).mean() > 0.7
    assert not np.array_equal(doodle("mug", seed=0), doodle("mug", seed=1))  # a hand never draws it twice alike
    with pytest.raises(ValueError, match="no doodle of a 'cat'"):
        doodle("cat")
