"""Every objective every adversarial trainer accepts works in it: its losses, its optimizer and
schedule of D and G updates, and its constraint on D (WGAN's clipping, WGAN-GP's penalty). The
trainers are the registry's (tests/training/shared_checks.py)."""
import pytest
import torch

import training
from tests.conftest import tiny_pix2pix_config
from tests.training.shared_checks import check_objective, objective_cases
from training.config import TrainConfig
from training.gan import GANConfig
from training.pix2pix import Pix2Pix
from translate.losses import OBJECTIVES


# "vanilla" is nonsaturating (tests/translate/test_losses.py)
@pytest.mark.parametrize("trainer, name", objective_cases())
def test_every_objective_trains_in_every_trainer(trainer, name, tiny_pairs, tmp_path):
    check_objective(training.method(trainer), name, tiny_pairs, tmp_path / "run")


def test_overrides_beat_the_objectives_defaults(tiny_pairs, tmp_path):
    cfg = tiny_pix2pix_config(tiny_pairs, tmp_path / "r", gan_mode="wgan", optimizer="adam", lr=1e-3, n_critic=2,
                              clip=0.05)
    assert (cfg.optimizer, cfg.lr, cfg.beta1, cfg.beta2, cfg.n_critic, cfg.clip) == ("adam", 1e-3, 0.5, 0.999, 2, 0.05)
    assert isinstance(Pix2Pix(cfg, torch.device("cpu")).optimizers["D"], torch.optim.Adam)
    gp = tiny_pix2pix_config(tiny_pairs, tmp_path / "r", gan_mode="vanilla", lambda_gp=1.0)  # a penalty with BCE
    assert (gp.lambda_gp, gp.clip, gp.n_critic) == (1.0, 0.0, 1)


def test_configs_written_before_the_objective_table_run_the_same_math():
    """Old config.json files: clip and lambda_gp were stored for every objective but applied only in
    wgan / wgangp, and the image-to-image trainers always took one Adam D step per G step."""
    old_pix2pix = dict(data="d", gan_mode="wgangp", lambda_gp=10.0, lr=2e-4, beta1=0.5, beta2=0.999)
    c = tiny_pix2pix_config("d", "o").__class__.from_dict(old_pix2pix)
    assert (c.optimizer, c.n_critic, c.lambda_gp, c.clip, c.lr) == ("adam", 1, 10.0, 0.0, 2e-4)
    old_gan = dict(data="ring8", gan_mode="hinge", optimizer="adam", lr=2e-4, beta1=0.5, beta2=0.999, n_critic=1,
                   clip=0.01, lambda_gp=10.0, nz=0, arch="auto", d_norm="auto", channels=0)
    g = GANConfig.from_dict(old_gan)
    assert (g.clip, g.lambda_gp, g.nz, g.arch, g.d_norm) == (0.0, 0.0, 16, "mlp", "batch")
    new = GANConfig.from_dict(GANConfig(data="ring8", gan_mode="hinge", lambda_gp=2.0).to_dict())
    assert new.lambda_gp == 2.0  # a config of this version is read as written
    assert "config_format" in TrainConfig(data="x").to_dict()
    assert len(OBJECTIVES) == 6
