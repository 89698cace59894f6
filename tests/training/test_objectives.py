"""Every objective every adversarial trainer accepts works in it: its losses, its optimizer and
schedule of D and G updates, and its constraint on D (WGAN's clipping, WGAN-GP's penalty)."""
import pytest
import torch

from tests.conftest import tiny_pix2pix_config
from training.config import TrainConfig
from training.cyclegan import CycleGAN, CycleGANConfig
from training.gan import GAN, GANConfig
from training.pix2pix import Pix2Pix
from translate.losses import OBJECTIVES, get_objective


def _config(trainer, name, data, out):
    common = dict(gan_mode=name, steps=6, progress=False, export=False, val_every=0, sample_every=100,
                  checkpoint_every=100, log_every=1)
    if trainer == "pix2pix":
        return tiny_pix2pix_config(data, out, netG="unet_32", ngf=4, ndf=4, batch_size=2, **common)
    if trainer == "cyclegan":
        return CycleGANConfig(data=str(data), out=str(out), size=32, load_size=36, netG="resnet_1blocks", ngf=4, ndf=4,
                              batch_size=2, workers=0, pool_size=4, **common)
    # no preset: ring8's own (tests/training/test_presets.py) would replace the objective's optimiser settings
    return GANConfig(data="ring8", out=str(out), points=512, batch_size=16, mlp_width=16, mlp_layers=2,
                     eval_samples=100, preset="none", **common)


METHODS = {"pix2pix": Pix2Pix, "cyclegan": CycleGAN, "gan": GAN}


@pytest.mark.parametrize("trainer", list(METHODS))
@pytest.mark.parametrize("name", list(OBJECTIVES))  # "vanilla" is nonsaturating (tests/translate/test_losses.py)
def test_every_objective_trains_in_every_trainer(trainer, name, tiny_pairs, tmp_path):
    o = get_objective(name)
    cfg = _config(trainer, name, tiny_pairs, tmp_path / "run")
    # the objective's settings, unless overridden
    assert (cfg.optimizer, cfg.lr, cfg.n_critic, cfg.clip, cfg.lambda_gp) == (
        o.optimizer, o.lr, o.n_critic, o.clip, o.gradient_penalty)
    torch.manual_seed(0)
    m = METHODS[trainer](cfg, torch.device("cpu"))
    assert {type(opt) for opt in m.optimizers.values()} == {torch.optim.RMSprop if o.optimizer == "rmsprop"
                                                           else torch.optim.Adam}
    G = next(n for k, n in m.networks.items() if k.startswith("G"))
    before = [p.detach().clone() for p in G.parameters()]
    train, _ = m.datasets()
    batch_size = cfg.batch_size
    for i in range(1, 7):  # as the Trainer drives a method
        batch = torch.utils.data.default_collate([train[(j, 0)] for j in range(i * batch_size, (i + 1) * batch_size)])
        losses = m.step(batch)
        m.steps_done = i
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
        g_unchanged = all(torch.equal(a, b) for a, b in zip(before, G.parameters()))
        assert g_unchanged == (i < o.n_critic), (i, o.n_critic)  # G waits for its n_critic-th D update
        assert ("GP" in losses) == (o.gradient_penalty > 0)
        if o.gradient_penalty:
            assert losses["GP"] >= 0
    if o.clip:
        Ds = [n for k, n in m.networks.items() if k.startswith("D")]
        assert max(p.abs().max().item() for D in Ds for p in D.parameters()) <= o.clip + 1e-7


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
