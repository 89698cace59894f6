import io
import math

import pytest
import torch
from torch import nn

from translate.losses import (
    ALIASES,
    OBJECTIVE_NAMES,
    OBJECTIVES,
    ImagePool,
    clip_weights,
    cycle_loss,
    feature_matching_loss,
    get_objective,
    gradient_penalty,
    identity_loss,
    l1_loss,
)

LN2 = math.log(2.0)
MINIMAX, NONSAT = OBJECTIVES["minimax"].generator, OBJECTIVES["nonsaturating"].generator


# --------------------------------------------------------------------------- the objectives


def test_the_table_names_every_objective_once():
    assert tuple(OBJECTIVES) == ("minimax", "nonsaturating", "lsgan", "wgan", "wgangp", "hinge")
    assert ALIASES == {"vanilla": "nonsaturating"} and OBJECTIVE_NAMES == (*OBJECTIVES, "vanilla")
    assert get_objective("vanilla") is OBJECTIVES["nonsaturating"]
    with pytest.raises(ValueError) as err:
        get_objective("nsgan")
    for name in OBJECTIVE_NAMES:
        assert name in str(err.value)


def test_each_objective_brings_its_papers_settings():
    assert [(o.optimizer, o.lr, o.betas, o.n_critic) for o in map(get_objective, ("nonsaturating", "lsgan", "hinge"))] \
        == [("adam", 2e-4, (0.5, 0.999), 1)] * 3
    wgan, wgangp = OBJECTIVES["wgan"], OBJECTIVES["wgangp"]
    assert (wgan.optimizer, wgan.lr, wgan.n_critic, wgan.clip, wgan.gradient_penalty) == ("rmsprop", 5e-5, 5, 0.01, 0)
    assert (wgangp.optimizer, wgangp.lr, wgangp.betas, wgangp.n_critic, wgangp.clip, wgangp.gradient_penalty) == (
        "adam", 1e-4, (0.0, 0.9), 5, 0, 10.0)
    assert all(o.clip == 0 and o.gradient_penalty == 0 for n, o in OBJECTIVES.items() if n not in ("wgan", "wgangp"))


def test_bce_objectives_on_zero_logits_are_ln2():
    logits = torch.zeros(2, 1, 4, 4)  # a PatchGAN map: averaged over every element
    for name in ("minimax", "nonsaturating"):
        o = OBJECTIVES[name]
        assert o.real(logits).item() == pytest.approx(LN2) and o.fake(logits).item() == pytest.approx(LN2)
        assert o.discriminator_loss(logits, logits).item() == pytest.approx(2 * LN2)
    assert MINIMAX(logits).item() == pytest.approx(-LN2)  # E[log(1 - 1/2)]
    assert NONSAT(logits).item() == pytest.approx(LN2)  # -E[log 1/2]


def test_bce_extreme_logits_are_finite_and_correct():
    o = OBJECTIVES["nonsaturating"]
    pos = torch.full((3,), 1e4)
    assert o.real(pos).item() == pytest.approx(0.0, abs=1e-6) and o.fake(pos).item() == pytest.approx(1e4)
    assert o.real(-pos).item() == pytest.approx(1e4) and o.fake(-pos).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.tensor([1e4, -1e4], requires_grad=True)
    loss = o.real(logits)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_lsgan_known_values():
    pred = torch.tensor([[0.5, -1.0], [2.0, 1.0]])
    o = OBJECTIVES["lsgan"]  # CycleGAN's form: no 1/2 factors
    # real: ((0.5-1)^2 + (-2)^2 + 1^2 + 0^2) / 4 = 5.25 / 4
    assert o.real(pred).item() == pytest.approx(1.3125) and o.generator(pred).item() == pytest.approx(1.3125)
    # fake: (0.25 + 1 + 4 + 1) / 4 = 6.25 / 4
    assert o.fake(pred).item() == pytest.approx(1.5625)


@pytest.mark.parametrize("name", ["wgan", "wgangp"])
def test_wgan_signs(name):
    pred = torch.tensor([1.0, 2.0, 3.0, -2.0])  # mean 1
    o = OBJECTIVES[name]
    assert o.real(pred).item() == pytest.approx(-1.0) and o.fake(pred).item() == pytest.approx(1.0)
    assert o.generator(pred).item() == pytest.approx(-1.0)


def test_hinge_values():
    pred = torch.tensor([-0.5, 0.5, 2.0, -3.0])
    o = OBJECTIVES["hinge"]
    assert o.real(pred).item() == pytest.approx(1.5)  # relu(1 - p) = [1.5, 0.5, 0, 4]
    assert o.fake(pred).item() == pytest.approx(1.25)  # relu(1 + p) = [0.5, 1.5, 3, 0]
    assert o.generator(pred).item() == pytest.approx(0.25)  # -mean(p)


def test_feature_matching_is_zero_for_identical_features_and_weighted_as_pix2pixhd():
    torch.manual_seed(0)
    real = [[torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4), torch.randn(2, 1, 3, 3)] for _ in range(2)]
    assert feature_matching_loss([[f.clone() for f in s] for s in real], real).item() == 0.0
    fake = [[f + 1.0 for f in s[:-1]] + [s[-1] * 5] for s in real]  # each block off by 1; the output ignored
    # 2 scales x 2 blocks, each L1 1 weighted 4 / 2 blocks / 2 scales
    assert feature_matching_loss(fake, real).item() == pytest.approx(4.0)
    # unpaired: only channel means count, so one batch's images in another order match
    shuffled = [[f.flip(0) for f in s] for s in real]
    assert feature_matching_loss(shuffled, real, paired=False).item() == pytest.approx(0.0, abs=1e-6)
    assert feature_matching_loss(shuffled, real).item() > 0.1


def test_feature_matching_moves_the_fake_side_only():
    real = [[torch.randn(1, 2, 4, 4, requires_grad=True), torch.randn(1, 1, 2, 2)]]
    fake = [[torch.randn(1, 2, 4, 4, requires_grad=True), torch.randn(1, 1, 2, 2)]]
    feature_matching_loss(fake, real).backward()
    assert fake[0][0].grad is not None and real[0][0].grad is None


def test_weight_clipping_clamps_every_parameter():
    net = nn.Linear(3, 3)
    with torch.no_grad():
        net.weight.fill_(5.0)
    clip_weights(net, 0.2)
    assert all(p.abs().max() <= 0.2 for p in net.parameters()) and net.weight.min().item() == pytest.approx(0.2)


# --------------------------------------------------------------------------- minimax vs non-saturating


def test_generator_losses_hand_values():
    # D = sigmoid(l): l = 0 -> D = 1/2; l = ln(1/3) -> D = 1/4.
    l = torch.tensor([0.0])
    assert MINIMAX(l).item() == pytest.approx(-LN2)  # log(1 - 1/2)
    assert NONSAT(l).item() == pytest.approx(LN2)  # -log(1/2)
    l = torch.tensor([math.log(1.0 / 3.0)])
    assert MINIMAX(l).item() == pytest.approx(math.log(0.75), rel=1e-6)
    assert NONSAT(l).item() == pytest.approx(math.log(4.0), rel=1e-6)


def test_generator_losses_match_bce_forms():
    l = torch.linspace(-6, 6, 13)
    o = OBJECTIVES["nonsaturating"]
    assert torch.allclose(NONSAT(l), o.real(l))  # G wants its fakes called real
    assert torch.allclose(MINIMAX(l), -o.fake(l))  # G maximises D's loss on fakes


def test_minimax_stable_for_extreme_logits():
    l = torch.tensor([1e4, -1e4])
    assert MINIMAX(l[:1]).item() == pytest.approx(-1e4)
    assert MINIMAX(l[1:]).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(MINIMAX(l))


def test_non_saturating_gradient_larger_when_d_rejects_fakes():
    # l = -5: D(G(z)) = sigmoid(-5) ~ 0.0067, D confidently says "fake".
    l_mm = torch.tensor([-5.0], requires_grad=True)
    l_ns = torch.tensor([-5.0], requires_grad=True)
    MINIMAX(l_mm).backward()
    NONSAT(l_ns).backward()
    s = 1.0 / (1.0 + math.exp(5.0))
    assert l_mm.grad.item() == pytest.approx(-s, rel=1e-5)  # d/dl -softplus(l) = -sigmoid(l)
    assert l_ns.grad.item() == pytest.approx(-(1.0 - s), rel=1e-5)  # d/dl softplus(-l) = -sigmoid(-l)
    assert abs(l_ns.grad.item()) > 100 * abs(l_mm.grad.item())
    # Both push l up (descent increases D(G(z))).
    assert l_mm.grad.item() < 0 and l_ns.grad.item() < 0


# --------------------------------------------------------------------------- gradient penalty


class LinearCritic(nn.Module):
    """D(x) = sum_CHW w * x, so grad_x D = w for every sample."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w * x).flatten(1).sum(dim=1)


@pytest.mark.parametrize("kind", ["mixed", "real", "fake"])
def test_gradient_penalty_linear_critic(kind):
    w = torch.full((3, 4, 4), 0.5)  # ||w|| = 0.5 * sqrt(48) = sqrt(12)
    D = LinearCritic(w)
    real = torch.rand(5, 3, 4, 4) * 2 - 1
    fake = torch.rand(5, 3, 4, 4) * 2 - 1
    penalty, grads = gradient_penalty(D, real, fake, lambda_gp=10.0, kind=kind)
    expected = 10.0 * (math.sqrt(12.0) - 1.0) ** 2
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    assert grads.shape == real.shape
    assert torch.allclose(grads, w.expand_as(real))


def test_gradient_penalty_unit_norm_is_zero_and_constant():
    w = torch.randn(2, 3, 3)
    w = w / w.norm()
    D = LinearCritic(w)
    real, fake = torch.rand(4, 2, 3, 3), torch.rand(4, 2, 3, 3)
    penalty, _ = gradient_penalty(D, real, fake)
    assert penalty.item() == pytest.approx(0.0, abs=1e-8)
    penalty, _ = gradient_penalty(D, real, fake, lambda_gp=2.0, constant=3.0)
    assert penalty.item() == pytest.approx(2.0 * 4.0, rel=1e-5)


def test_gradient_penalty_backpropagates_into_critic_only():
    w = torch.full((1, 2, 2), 2.0)  # ||w|| = 4
    D = LinearCritic(w)
    g_param = torch.tensor(0.3, requires_grad=True)
    real = torch.rand(3, 1, 2, 2)
    fake = torch.rand(3, 1, 2, 2) * g_param  # fake depends on a "generator" parameter
    penalty, _ = gradient_penalty(D, real, fake, lambda_gp=10.0)
    penalty.backward()
    # d/dw lambda * (||w|| - 1)^2 = lambda * 2 (||w|| - 1) w / ||w||
    expected = 10.0 * 2.0 * (4.0 - 1.0) * w / 4.0
    assert D.w.grad is not None
    assert torch.allclose(D.w.grad, expected)
    assert g_param.grad is None


def test_gradient_penalty_interpolation_with_generator():
    # D(x) = sum x^2 -> grad = 2 x, so the penalty depends on the interpolated points.
    def D(x: torch.Tensor) -> torch.Tensor:
        return (x**2).flatten(1).sum(dim=1)

    real = torch.rand(6, 2, 3, 3)
    fake = -torch.rand(6, 2, 3, 3)
    penalty, grads = gradient_penalty(D, real, fake, lambda_gp=5.0, generator=torch.Generator().manual_seed(7))
    eps = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(7))
    x = eps * real + (1 - eps) * fake
    norms = (2 * x).flatten(1).norm(dim=1)
    assert torch.allclose(grads, 2 * x, atol=1e-6)
    assert penalty.item() == pytest.approx((5.0 * ((norms - 1) ** 2).mean()).item(), rel=1e-5)
    again, _ = gradient_penalty(D, real, fake, lambda_gp=5.0, generator=torch.Generator().manual_seed(7))
    assert again.item() == penalty.item()


def test_gradient_penalty_patch_output_and_edge_cases():
    # PatchGAN-like output (N, 1, H, W) is summed: D = conv with weights 1 -> grad = 1 per pixel.
    conv = nn.Conv2d(1, 1, kernel_size=1, bias=False)
    nn.init.constant_(conv.weight, 1.0)
    real, fake = torch.rand(2, 1, 2, 2), torch.rand(2, 1, 2, 2)
    penalty, _ = gradient_penalty(conv, real, fake, lambda_gp=1.0)
    assert penalty.item() == pytest.approx((2.0 - 1.0) ** 2, rel=1e-5)  # ||ones(4)|| = 2
    zero, grads = gradient_penalty(conv, real, fake, lambda_gp=0.0)
    assert zero.item() == 0.0 and grads is None
    with pytest.raises(ValueError):
        gradient_penalty(conv, real, fake, kind="both")
    with pytest.raises(ValueError):
        gradient_penalty(conv, real, fake[:1])


# --------------------------------------------------------------------------- reconstruction


def test_l1_cycle_identity():
    a = torch.tensor([[0.0, 1.0], [-1.0, 0.5]]).view(1, 1, 2, 2)
    b = torch.tensor([[0.5, 1.0], [1.0, -0.5]]).view(1, 1, 2, 2)
    # |diff| = [0.5, 0, 2, 1] -> 0.875
    assert l1_loss(a, b).item() == pytest.approx(0.875)
    assert cycle_loss(a, b, 10.0).item() == pytest.approx(8.75)
    assert identity_loss(a, b, 5.0).item() == pytest.approx(4.375)
    assert l1_loss(a, a).item() == 0.0


# --------------------------------------------------------------------------- ImagePool


def _batch(ids: list[int]) -> torch.Tensor:
    """Images whose every pixel is their id, so returned images can be identified."""
    return torch.tensor(ids, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).clone()


def _ids(images: torch.Tensor) -> list[int]:
    return [int(v) for v in images[:, 0, 0, 0].tolist()]


def _pool_ids(pool: ImagePool) -> list[int]:
    return [int(img[0, 0, 0, 0].item()) for img in pool.images]


def test_image_pool_size_zero_passthrough():
    pool = ImagePool(0)
    x = torch.randn(4, 3, 2, 2)
    assert pool.query(x) is x
    assert len(pool) == 0


def test_image_pool_fills_then_mixes():
    pool = ImagePool(50, seed=0)
    for q in range(10):
        ids = list(range(5 * q, 5 * q + 5))
        out = pool.query(_batch(ids))
        assert _ids(out) == ids  # not full yet: the inputs come back
    assert len(pool) == 50 and sorted(_pool_ids(pool)) == list(range(50))

    from_history = new = 0
    for q in range(20):
        before = _pool_ids(pool)
        ids = list(range(1000 + 5 * q, 1000 + 5 * q + 5))
        out = pool.query(_batch(ids))
        assert out.shape == (5, 3, 2, 2)
        returned = _ids(out)
        # Each image is either passed through or swapped with a stored one: nothing is lost.
        assert sorted(returned + _pool_ids(pool)) == sorted(before + ids)
        from_history += sum(i < 1000 for i in returned)
        new += sum(i >= 1000 for i in returned)
    assert len(pool) == 50
    assert from_history > 0 and new > 0
    assert any(i >= 1000 for i in _pool_ids(pool))  # the pool content changed


def test_image_pool_seed_reproducible_and_detached():
    a, b = ImagePool(3, seed=123), ImagePool(3, seed=123)
    for q in range(10):
        x = _batch(list(range(4 * q, 4 * q + 4))).requires_grad_(True)
        out_a, out_b = a.query(x), b.query(x)
        assert torch.equal(out_a, out_b)
        assert not out_a.requires_grad


def test_image_pool_state_dict_round_trip():
    pool = ImagePool(50, seed=42)
    for q in range(14):
        pool.query(_batch(list(range(5 * q, 5 * q + 5))))
    buf = io.BytesIO()
    torch.save(pool.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf)  # weights_only-safe contents
    assert all(img.device.type == "cpu" for img in state["images"])

    resumed = ImagePool(50, seed=999)
    resumed.load_state_dict(state)
    assert _pool_ids(resumed) == _pool_ids(pool)
    for q in range(14, 30):
        x = _batch(list(range(5 * q, 5 * q + 5)))
        assert torch.equal(pool.query(x), resumed.query(x))
    assert _pool_ids(resumed) == _pool_ids(pool)

    with pytest.raises(ValueError):
        ImagePool(10).load_state_dict(state)
