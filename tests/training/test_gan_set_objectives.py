"""The GAN family's two objectives over sets of samples in its trainer: their settings and flags, and a short run
on ring8 that brings the samples to the mixture's modes."""
import pytest
import torch

from training.gan import GAN, GANConfig
from translate.errors import ConfigError
from translate.gan import data as gan_data
from translate.gan.objectives import SET_OBJECTIVES


def _config(mode: str, **kw) -> GANConfig:
    return GANConfig(**{**dict(data="ring8", out="", gan_mode=mode, preset="none", steps=400, batch_size=64,
                               mlp_width=64, mlp_layers=2, points=4096, lr=1e-3, eval_samples=500, threads=1), **kw})


def _distance_to_modes(m: GAN) -> float:
    x, _ = m.samples(500, seed=1)
    centres = torch.from_numpy(gan_data.mixture_centres("ring8")).float()
    return torch.cdist(x, centres).min(1).values.mean().item()


@pytest.mark.parametrize("mode", sorted(SET_OBJECTIVES))
def test_a_short_run_on_ring8_brings_the_samples_to_the_modes(mode):
    torch.manual_seed(0)
    m = GAN(_config(mode), torch.device("cpu"))
    train, _ = m.datasets()
    before = _distance_to_modes(m)
    g = torch.Generator().manual_seed(0)
    for i in range(400):
        idx = torch.randint(0, len(train), (64,), generator=g).tolist()
        losses = m.step(torch.utils.data.default_collate([train[(j, 0)] for j in idx]))
        m.steps_done = i + 1
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    assert _distance_to_modes(m) < 0.6 * before  # the ring's radius is 2, each mode's std 0.02


def test_their_settings_and_flags():
    c = _config("contrastive", lr=None, contrastive_n=4)
    o = SET_OBJECTIVES["contrastive"]
    assert (c.optimizer, c.lr, c.n_critic, c.clip, c.lambda_gp) == (o.optimizer, o.lr, o.n_critic, o.clip, 0.0)
    with pytest.raises(ConfigError, match="contrastive_n: must be in \\[2, batch size \\+ 1 = 65\\]"):
        _config("contrastive", contrastive_n=66).validate()
    with pytest.raises(ConfigError, match="lambda_gp"):
        _config("mmd", lambda_gp=1.0).validate()
    with pytest.raises(ConfigError, match="gan_mode"):
        _config("nce")
