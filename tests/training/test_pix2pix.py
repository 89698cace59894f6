import json

import pytest
import torch

from tests.conftest import tiny_pix2pix_config
from training.loop import Trainer
from training.pix2pix import Pix2Pix
from training.process_loop import lr_lambda
from translate.errors import ConfigError


def _val_l1(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["val/l1"] for r in rows if "val/l1" in r]


def test_short_training_lowers_validation_l1(tiny_pairs, tmp_path):
    cfg = tiny_pix2pix_config(tiny_pairs, tmp_path / "run", steps=120, val_every=10, lr=1e-3, export=True)
    torch.manual_seed(0)
    t = Trainer(Pix2Pix, cfg)
    start = t.validate().metrics["val/l1"]
    run = t.fit()
    end = _val_l1(run)[-1]
    assert end < 0.5 * start, (start, _val_l1(run))
    # the run directory explains itself
    for name in ("config.json", "metrics.jsonl", "checkpoints/latest.pt", "model.onnx"):
        assert (run / name).exists(), name
    assert list((run / "samples").glob("step_*.png")) and list((run / "tensorboard").iterdir())
    assert json.loads((run / "config.json").read_text())["lambda_L1"] == 100.0
    assert not list(run.rglob("*.tmp*"))  # atomic writes leave nothing behind


def test_linear_decay_matches_the_reference_rule():
    # reference: n_epochs=100 constant, n_epochs_decay=100, stepped at the end of each epoch
    f = lr_lambda(200, 0.5)
    assert f(0) == 1.0 and f(99) == 1.0
    assert f(100) == pytest.approx(1 - 1 / 101) and f(199) == pytest.approx(1 - 100 / 101)


def test_learning_rate_decays_during_the_run(tiny_pairs, tmp_path):
    t = Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "r", steps=8, log_every=1))
    t.fit()
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
           if '"lr"' in x]
    assert lrs[0] == pytest.approx(2e-4) and lrs[3] == pytest.approx(2e-4) and lrs[-1] < 0.25 * 2e-4


def test_bad_config_fields_are_named(tiny_pairs, tmp_path):
    with pytest.raises(ConfigError, match="size"):
        Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "x", size=30))
    with pytest.raises(ConfigError, match="data"):
        Trainer(Pix2Pix, tiny_pix2pix_config("", tmp_path / "x"))


def test_a_size_the_generator_cannot_take_names_its_origin_and_the_fix(tmp_path):
    """--size 64 on the built-in maps set: the preset picked unet_128, which the user never typed."""
    from training.pix2pix import Pix2PixConfig

    with pytest.raises(ConfigError, match=r"unet_128 \(the maps preset's generator\) needs a multiple of 128, "
                                          r"got 64: pass --netG unet_64 \(a U-Net for 64 px\) or a --size"):
        Pix2Pix(Pix2PixConfig(data="maps", out=str(tmp_path / "r"), size=64), torch.device("cpu"))
    # the generator the user named: no preset to blame; 96 is no power of two, so no U-Net to offer
    with pytest.raises(ConfigError, match=r"^size: unet_64 needs a multiple of 64, got 96: pass a --size that is"):
        Pix2PixConfig(data="maps", size=96, netG="unet_64").check_size(64)
    Pix2PixConfig(data="maps", size=64, netG="unet_64").check_size(64)  # and what fits passes


def test_existing_run_is_not_overwritten(tiny_pairs, tmp_path):
    Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "r", steps=2)).fit()
    with pytest.raises(ConfigError, match="resume"):
        Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "r", steps=2))


def test_init_from_starts_with_the_given_weights(tiny_pairs, tmp_path):
    Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "base", steps=2)).fit()
    t = Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "ft", steps=2, seed=5,
                                             init_from=str(tmp_path / "base")))
    base = torch.load(tmp_path / "base" / "checkpoints" / "latest.pt", weights_only=False)["networks"]["G"]
    for k, v in t.method.networks["G"].state_dict().items():
        assert torch.equal(v, base[k]), k
    with pytest.raises(ConfigError, match="init_from"):
        Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "bad", ngf=4, init_from=str(tmp_path / "base")))
