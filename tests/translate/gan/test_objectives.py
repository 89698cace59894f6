"""The GAN family's objectives over sets of samples (translate/gan/objectives.py) against hand computation."""
import math

import pytest
import torch
import torch.nn.functional as F

from translate.gan.objectives import (
    MMD_BANDWIDTHS,
    SET_OBJECTIVES,
    contrastive_discriminator_loss,
    contrastive_generator_loss,
    contrastive_sets,
    gaussian_kernel_mixture,
    mmd2,
)

REAL = torch.tensor([0.5, -1.0, 2.0])
FAKE = torch.tensor([0.1, 0.3, -0.7])


def _log_softmax(row: list[float], i: int) -> float:
    return row[i] - math.log(sum(math.exp(v) for v in row))


def test_each_set_is_one_real_and_n_minus_1_different_generated_samples():
    expected = torch.tensor([[0.5, 0.1, 0.3], [-1.0, 0.3, -0.7], [2.0, -0.7, 0.1]])
    assert torch.equal(contrastive_sets(REAL, FAKE, 3), expected)
    with pytest.raises(ValueError, match="N = 5 for a batch of 3"):
        contrastive_sets(REAL, FAKE, 5)  # only 3 generated samples to fill 4 places


def test_the_contrastive_losses_by_hand():
    sets = [[0.5, 0.1, 0.3], [-1.0, 0.3, -0.7], [2.0, -0.7, 0.1]]
    d = -sum(_log_softmax(r, 0) for r in sets) / 3  # D picks the real one, in column 0
    g = -sum(_log_softmax(r, j) for r in sets for j in (1, 2)) / 6  # G: each generated one picked
    assert contrastive_discriminator_loss(REAL, FAKE, 3).item() == pytest.approx(d, rel=1e-6)
    assert contrastive_generator_loss(REAL, FAKE, 3).item() == pytest.approx(g, rel=1e-6)
    # uniform scores: log N either way
    flat = torch.zeros(4)
    assert contrastive_discriminator_loss(flat, flat, 4).item() == pytest.approx(math.log(4))


def test_two_way_contrast_is_the_relativistic_standard_gan():
    assert contrastive_discriminator_loss(REAL, FAKE, 2).item() == pytest.approx(
        F.softplus(-(REAL - FAKE)).mean().item(), rel=1e-6)  # -log sigmoid(D(x) - D(G(z)))
    assert contrastive_generator_loss(REAL, FAKE, 2).item() == pytest.approx(
        F.softplus(-(FAKE - REAL)).mean().item(), rel=1e-6)


def test_mmd_by_hand_with_the_kernel_mixture():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([[3.0, 1.0], [0.5, -1.0]])

    def k(a, b):
        d2 = sum((p - q) ** 2 for p, q in zip(a, b, strict=True))
        return sum(math.exp(-d2 / (2 * s * s)) for s in MMD_BANDWIDTHS)

    xs, ys = x.tolist(), y.tolist()
    kxx = sum(k(a, b) for i, a in enumerate(xs) for j, b in enumerate(xs) if i != j) / (3 * 2)
    kyy = sum(k(a, b) for i, a in enumerate(ys) for j, b in enumerate(ys) if i != j) / (2 * 1)
    kxy = sum(k(a, b) for a in xs for b in ys) / 6
    assert mmd2(x, y).item() == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-5)
    assert gaussian_kernel_mixture(x, x).diagonal().tolist() == pytest.approx([len(MMD_BANDWIDTHS)] * 3)
    # the objective: D maximises it (its loss is -MMD^2), G minimises it
    mmd = SET_OBJECTIVES["mmd"]
    assert mmd.features and mmd.discriminator(x, y, 0).item() == pytest.approx(-mmd.generator(x, y, 0).item())


def test_mmd_tells_a_shifted_sample_from_the_same_distribution():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 3, generator=g), torch.randn(400, 3, generator=g)
    same, shifted = mmd2(a, b).item(), mmd2(a, b + 1.0).item()
    assert abs(same) < 0.02 and shifted > 0.3  # unbiased: about zero (either sign) for one distribution
