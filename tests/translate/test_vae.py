"""The VAE's parts (translate/vae.py) against computations made another way: the KL term in closed form against a
Monte Carlo estimate, the discretised likelihood as a distribution over the 256 levels, the ELBO of a tiny case by
hand, bits per dimension, the latent grid's Gaussian quantiles."""
import math

import torch
from scipy.stats import norm

from translate.gan.networks import build_generator
from translate.vae import (
    Encoder,
    GaussianLikelihood,
    bits_per_dim,
    discretized_gaussian_log_prob,
    elbo_terms,
    kl_to_standard_normal,
    latent_grid,
    quantize,
    reparameterize,
)


def test_kl_in_closed_form_matches_a_monte_carlo_estimate():
    mu, logvar = torch.tensor([[0.7, -1.2, 0.1]]), torch.tensor([[-0.5, 0.4, -2.0]])
    g = torch.Generator().manual_seed(0)
    z = reparameterize(mu.expand(200_000, -1), logvar.expand(200_000, -1), torch.randn(200_000, 3, generator=g))
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(0.0, 1.0)
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(1).mean()
    closed = kl_to_standard_normal(mu, logvar)
    assert closed.shape == (1,)
    assert abs(closed.item() - monte_carlo.item()) < 0.02
    assert kl_to_standard_normal(torch.zeros(2, 4), torch.zeros(2, 4)).tolist() == [0.0, 0.0]  # q = prior


def test_the_discretised_gaussian_is_a_distribution_over_the_256_levels():
    levels = torch.linspace(-1, 1, 256)
    for mean, log_scale in ((0.3, math.log(0.05)), (-0.99, math.log(0.001)), (0.0, math.log(3.0)), (1.0, -6.0)):
        logp = discretized_gaussian_log_prob(levels, torch.tensor(mean), torch.tensor(log_scale))
        assert torch.isfinite(logp).all()
        assert abs(logp.double().exp().sum().item() - 1.0) < 1e-4
    # an inner bin: the normal CDF's difference over [x - 1/255, x + 1/255], computed with scipy
    x, mean, s = levels[100].item(), 0.2, 0.3
    expected = math.log(norm.cdf((x + 1 / 255 - mean) / s) - norm.cdf((x - 1 / 255 - mean) / s))
    got = discretized_gaussian_log_prob(levels[100:101], torch.tensor(mean), torch.tensor(math.log(s)))
    assert abs(got.item() - expected) < 1e-4
    # the end bins take the tails; a value between levels is read as its nearest level
    assert abs(discretized_gaussian_log_prob(torch.tensor([-1.0]), torch.tensor(0.0), torch.tensor(0.0)).item()
               - math.log(norm.cdf(-1 + 1 / 255))) < 1e-5
    assert torch.allclose(quantize(torch.tensor([0.0021, -1.3])), torch.stack([levels[128], levels[0]]), atol=1e-6)


def test_the_elbo_of_a_tiny_case_by_hand():
    torch.manual_seed(0)
    E, G, lik = Encoder(nz=2, nc=1, size=8, ndf=2).eval(), build_generator("dcgan", 2, nc=1, size=8, ngf=2).eval(), \
        GaussianLikelihood(1, log_scale=math.log(0.2))
    x = quantize(torch.rand(3, 1, 8, 8) * 2 - 1)
    eps = torch.randn(3, 2)
    terms = elbo_terms(x, E, G, lik, eps)
    with torch.no_grad():
        mu, logvar = E(x)
        mean = G(mu + (0.5 * logvar).exp() * eps)
    def bin_probability(v: float, m: float, s: float = 0.2) -> float:  # the end bins reach to infinity
        upper = norm.cdf((v + 1 / 255 - m) / s) if v < 1 - 1e-6 else 1.0
        lower = norm.cdf((v - 1 / 255 - m) / s) if v > -1 + 1e-6 else 0.0
        return upper - lower

    by_hand = []
    for i in range(3):
        ll = sum(math.log(bin_probability(v, m))
                 for v, m in zip(x[i].flatten().tolist(), mean[i].flatten().tolist(), strict=True))
        kl = 0.5 * sum(a * a + math.exp(b) - 1 - b for a, b in zip(mu[i].tolist(), logvar[i].tolist(), strict=True))
        by_hand.append((ll, kl, ll - kl))
    got = torch.stack([terms["log_likelihood"], terms["kl"], terms["elbo"]], 1)
    assert torch.allclose(got.double(), torch.tensor(by_hand, dtype=torch.float64), rtol=1e-4, atol=1e-3)


def test_bits_per_dim_is_minus_the_elbo_over_d_ln2():
    assert bits_per_dim(-100.0, 64) == 100 / (64 * math.log(2))
    assert abs(bits_per_dim(-64 * 8 * math.log(2), 64) - 8.0) < 1e-12  # uniform over 256 levels: 8 bits


def test_the_latent_grid_is_an_even_grid_of_gaussian_quantiles():
    grid = latent_grid(5)
    q = torch.tensor(norm.ppf([0.1, 0.3, 0.5, 0.7, 0.9]), dtype=torch.float32)
    assert grid.shape == (25, 2)
    assert torch.allclose(grid[:5, 0], q, atol=1e-6)  # along a row: the first coordinate rises
    assert torch.allclose(grid[::5, 1], q.flip(0), atol=1e-6)  # down the column: the second falls
    assert torch.allclose(grid[12], torch.zeros(2), atol=1e-6)  # the centre is the prior's mode
