"""Tests for translate.networks (CPU, tiny sizes)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from translate.networks import (
    D_NAMES,
    G_NAMES,
    MultiscaleDiscriminator,
    NLayerDiscriminator,
    PixelDiscriminator,
    ResnetBlock,
    ResnetGenerator,
    UnetGenerator,
    define_D,
    define_G,
    get_norm_layer,
    init_weights,
    to_inference,
)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def randomise_bn_stats(net: nn.Module) -> None:
    """Give BatchNorm layers non-trivial running stats so eval() differs from train()."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


# --------------------------------------------------------------------------- #
# Shapes
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "name, kwargs, size",
    [
        ("unet_128", {"ngf": 4}, (128, 128)),
        ("unet_128", {"ngf": 4}, (128, 256)),
        ("unet_256", {"ngf": 2}, (256, 256)),
        ("unet", {"ngf": 8, "num_downs": 5}, (32, 32)),
        ("unet", {"ngf": 8, "num_downs": 5}, (64, 64)),
        ("unet", {"ngf": 8, "num_downs": 5}, (32, 96)),
        ("resnet_6blocks", {"ngf": 8}, (32, 32)),
        ("resnet_6blocks", {"ngf": 8}, (20, 36)),
        ("resnet_9blocks", {"ngf": 8}, (64, 48)),
        ("resnet_9blocks", {"ngf": 8, "norm": "instance"}, (12, 16)),
        ("resnet", {"ngf": 8, "n_blocks": 0}, (16, 8)),
        ("resnet", {"ngf": 8, "n_blocks": 3, "norm": "none"}, (24, 24)),
    ],
)
def test_generator_output_shape(name: str, kwargs: dict, size: tuple[int, int]) -> None:
    G = define_G(name, input_nc=1, output_nc=3, **kwargs)
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        y = G(x)
    assert y.shape == (2, 3, *size)
    assert y.abs().max() <= 1.0  # tanh output


def test_size_multiple() -> None:
    assert define_G("unet_128", ngf=2).size_multiple == 128
    assert define_G("unet_256", ngf=2).size_multiple == 256
    assert define_G("unet", ngf=2, num_downs=6).size_multiple == 64
    assert define_G("resnet_6blocks", ngf=2).size_multiple == 4
    assert define_G("resnet", ngf=2, n_blocks=1).size_multiple == 4


@pytest.mark.parametrize("name, kwargs, size", [("unet", {"num_downs": 5}, (48, 32)), ("resnet", {"n_blocks": 1}, (30, 32))])
def test_generator_rejects_bad_size(name: str, kwargs: dict, size: tuple[int, int]) -> None:
    G = define_G(name, ngf=4, **kwargs)
    with pytest.raises(ValueError, match="multiples of"):
        G(torch.randn(1, 3, *size))


@pytest.mark.parametrize(
    "name, kwargs, size, out_hw",
    [
        ("basic", {}, (256, 256), (30, 30)),  # the 70x70 PatchGAN
        ("basic", {}, (64, 96), (6, 10)),
        ("n_layers", {"n_layers": 1}, (64, 64), (30, 30)),
        ("n_layers", {"n_layers": 2}, (64, 64), (14, 14)),
        ("n_layers", {"n_layers": 4, "norm": "instance"}, (128, 128), (6, 6)),
        ("pixel", {}, (20, 28), (20, 28)),
        ("pixel", {"norm": "none"}, (8, 8), (8, 8)),
    ],
)
def test_discriminator_output_shape(name: str, kwargs: dict, size: tuple[int, int], out_hw: tuple[int, int]) -> None:
    D = define_D(name, input_nc=6, ndf=8, **kwargs)
    with torch.no_grad():
        y = D(torch.randn(2, 6, *size))
    assert y.shape == (2, 1, *out_hw)


def test_basic_ignores_n_layers_like_reference() -> None:
    D = define_D("basic", 3, ndf=4, n_layers=5)
    assert isinstance(D, NLayerDiscriminator) and D.n_layers == 3


def test_classes() -> None:
    assert isinstance(define_G("unet_128", ngf=2), UnetGenerator)
    assert isinstance(define_G("resnet_9blocks", ngf=2), ResnetGenerator)
    assert isinstance(define_D("pixel", 3, ndf=2), PixelDiscriminator)


# --------------------------------------------------------------------------- #
# Exact parameter counts (the reference's numbers)
# --------------------------------------------------------------------------- #
def test_param_count_unet_256_batch() -> None:
    assert n_params(define_G("unet_256", 3, 3, norm="batch")) == 54_413_955


def test_param_count_resnet_9blocks_instance() -> None:
    assert n_params(define_G("resnet_9blocks", 3, 3, norm="instance")) == 11_378_179


def test_param_count_basic_D_batch() -> None:
    assert n_params(define_D("basic", 6, norm="batch")) == 2_768_705


# --------------------------------------------------------------------------- #
# Norm layers / bias rule
# --------------------------------------------------------------------------- #
def test_get_norm_layer() -> None:
    bn = get_norm_layer("batch")(5)
    assert isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.track_running_stats
    inorm = get_norm_layer("instance")(5)
    assert isinstance(inorm, nn.InstanceNorm2d) and not inorm.affine and not inorm.track_running_stats
    assert isinstance(get_norm_layer("none")(5), nn.Identity)
    with pytest.raises(ValueError, match="'group'"):
        get_norm_layer("group")


def test_conv_bias_follows_reference_rule() -> None:
    # Bias on convs that feed a norm only for InstanceNorm (reference `use_bias`).
    for norm, has_bias in [("batch", False), ("instance", True), ("none", False)]:
        sd = define_G("resnet", ngf=4, n_blocks=1, norm=norm).state_dict()
        assert ("model.1.bias" in sd) is has_bias, norm
        assert ("model.10.conv_block.1.bias" in sd) is has_bias, norm
        assert "model.18.bias" in sd  # output conv always has a bias
        sd = define_D("pixel", 3, ndf=4, norm=norm).state_dict()
        assert ("net.5.bias" in sd) is has_bias, norm  # the reference's last pixel conv uses use_bias too


# --------------------------------------------------------------------------- #
# Initialisation
# --------------------------------------------------------------------------- #
def _big_conv(net: nn.Module) -> torch.Tensor:
    return net.model[10].conv_block[1].weight.detach()  # 128x128x3x3 for ngf=32


def test_init_normal() -> None:
    G = define_G("resnet", ngf=32, n_blocks=1, norm="batch", init_type="normal", init_gain=0.02)
    w = _big_conv(G)
    assert abs(w.std().item() - 0.02) < 0.0005
    assert abs(w.mean().item()) < 0.0005
    bn = G.model[2]
    assert abs(bn.weight.mean().item() - 1.0) < 0.02 and bn.weight.std().item() < 0.05
    assert torch.all(bn.bias == 0)
    assert torch.all(G.model[-2].bias == 0)


def test_init_gain_used() -> None:
    G = define_G("resnet", ngf=32, n_blocks=1, init_type="normal", init_gain=0.1)
    assert abs(_big_conv(G).std().item() - 0.1) < 0.003


def test_init_xavier() -> None:
    G = define_G("resnet", ngf=32, n_blocks=1, init_type="xavier", init_gain=0.5)
    fan = 128 * 9
    expected = 0.5 * math.sqrt(2.0 / (fan + fan))
    assert abs(_big_conv(G).std().item() / expected - 1) < 0.03


def test_init_kaiming_ignores_gain() -> None:
    G = define_G("resnet", ngf=32, n_blocks=1, init_type="kaiming", init_gain=0.5)
    expected = math.sqrt(2.0 / (128 * 9))
    assert abs(_big_conv(G).std().item() / expected - 1) < 0.03


def test_init_orthogonal() -> None:
    G = define_G("resnet", ngf=32, n_blocks=1, init_type="orthogonal", init_gain=0.7)
    w = _big_conv(G).flatten(1)  # 128 x 1152: rows orthogonal, norm = gain
    assert torch.allclose(w @ w.T, 0.49 * torch.eye(128), atol=1e-4)


def test_init_weights_in_place_and_bias_zero() -> None:
    G = define_G("resnet", ngf=4, n_blocks=1, norm="instance")
    for m in G.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.bias, 1.0)
    assert init_weights(G, "normal", 0.02) is G
    assert all(torch.all(m.bias == 0) for m in G.modules() if isinstance(m, nn.Conv2d))


def test_init_unknown() -> None:
    with pytest.raises(ValueError, match="'uniform'"):
        define_G("resnet_6blocks", ngf=2, init_type="uniform")


# --------------------------------------------------------------------------- #
# Spectral norm
# --------------------------------------------------------------------------- #
def _top_singular_value(m: nn.Module) -> float:
    w = m.weight.detach()
    if isinstance(m, nn.ConvTranspose2d):
        w = w.transpose(0, 1)  # output channels first
    return torch.linalg.matrix_norm(w.flatten(1), ord=2).item()


@pytest.mark.parametrize(
    "build, size",
    [
        (lambda: define_G("resnet", ngf=8, n_blocks=2, spectral_norm=True), 32),
        (lambda: define_G("unet", ngf=4, num_downs=5, spectral_norm=True, norm="instance"), 32),
        (lambda: define_D("basic", 3, ndf=8, spectral_norm=True), 64),
        (lambda: define_D("pixel", 3, ndf=8, spectral_norm=True), 16),
    ],
)
def test_spectral_norm(build, size: int) -> None:
    net = build()
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs and all(parametrize.is_parametrized(m, "weight") for m in convs)
    assert any(k.endswith("parametrizations.weight.original") for k in net.state_dict())
    net.train()
    x = torch.randn(2, 3, size, size)
    for _ in range(5):
        net(x)
    for m in convs:
        assert 0.95 < _top_singular_value(m) < 1.05


def test_multiscale_discriminator_judges_halved_images() -> None:
    """num_d discriminators of one architecture, separately initialised, on the image at 1, 1/2, 1/4: their PatchGAN
    maps are those of the same D on the average-pooled image."""
    torch.manual_seed(0)
    D = define_D("basic", 6, ndf=4, num_d=3)
    assert isinstance(D, MultiscaleDiscriminator) and len(D.scales) == 3
    assert not torch.equal(D.scales[0].model[0].weight, D.scales[1].model[0].weight)
    x = torch.randn(2, 6, 128, 128)
    outs = D(x)
    assert [tuple(o.shape) for o in outs] == [(2, 1, 14, 14), (2, 1, 6, 6), (2, 1, 2, 2)]
    half = nn.functional.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
    assert torch.allclose(outs[1], D.scales[1](half))


def test_discriminator_features_are_its_blocks_then_its_output() -> None:
    D = define_D("basic", 3, ndf=4, num_d=2)
    x = torch.randn(1, 3, 64, 64)
    feats = D.features(x)
    assert len(feats) == 2 and all(len(f) == 5 for f in feats)  # 4 blocks of the 70x70 PatchGAN, then the output
    assert [f.shape[1] for f in feats[0]] == [4, 8, 16, 32, 1]
    assert all(torch.allclose(f[-1], o) for f, o in zip(feats, D(x), strict=True))
    single = define_D("pixel", 3, ndf=4)
    (only,) = single.features(x)
    assert len(only) == 3 and torch.equal(only[-1], single(x))


def test_no_spectral_norm_by_default() -> None:
    G = define_G("resnet", ngf=4, n_blocks=1)
    assert not any(parametrize.is_parametrized(m) for m in G.modules())


# --------------------------------------------------------------------------- #
# to_inference
# --------------------------------------------------------------------------- #
def _dropout_unet() -> nn.Module:
    G = define_G("unet", ngf=8, num_downs=6, norm="batch", use_dropout=True)
    assert any(isinstance(m, nn.Dropout) for m in G.modules())
    randomise_bn_stats(G)
    return G


@pytest.mark.parametrize("batch_stats", [True, False])
def test_to_inference_deterministic_and_frozen(batch_stats: bool) -> None:
    G = _dropout_unet()
    G.train()
    inf = to_inference(G, batch_stats=batch_stats)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = inf(x), inf(x)
    assert torch.equal(a, b)
    assert not inf.training and all(not m.training for m in inf.modules())
    assert all(not p.requires_grad for p in inf.parameters())
    assert inf.batch_stats is batch_stats
    assert inf.inference_norm == ("batch_stats" if batch_stats else "running_stats")
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in inf.modules())
    assert has_bn is (not batch_stats)
    # the original is untouched
    assert G.training and any(isinstance(m, nn.BatchNorm2d) for m in G.modules())
    assert all(p.requires_grad for p in G.parameters())


def _reference_test_time(G: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the reference computes at test time without --eval, minus dropout noise:
    BatchNorm in train mode (it normalises with the statistics of the batch);
    everything else in eval mode (no dropout, no spectral-norm power iteration)."""
    ref = copy.deepcopy(G)
    ref.eval()
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
    with torch.no_grad():
        return ref(x)


@pytest.mark.parametrize(
    "build, size",
    [
        (_dropout_unet, (64, 64)),
        (lambda: define_G("resnet", ngf=8, n_blocks=2, use_dropout=True), (24, 32)),
        (lambda: define_G("unet", ngf=4, num_downs=5, spectral_norm=True), (32, 64)),
    ],
)
def test_batch_stats_matches_train_mode_bn_at_batch_size_1(build, size) -> None:
    G = build()
    randomise_bn_stats(G)
    x = torch.randn(1, 3, *size)
    expected = _reference_test_time(G, x)
    with torch.no_grad():
        got = to_inference(G, batch_stats=True)(x)
        running = to_inference(G, batch_stats=False)(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(running, expected, atol=1e-3)  # sanity: the policies differ


def test_batch_stats_independent_of_batch() -> None:
    G = _dropout_unet()
    inf = to_inference(G, batch_stats=True)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        alone = inf(x[:1])
        batched = inf(x)
    assert torch.allclose(alone[0], batched[0], atol=1e-5, rtol=0)
    # whereas a train-mode BN over the batch of 3 would not be
    assert not torch.allclose(_reference_test_time(G, x)[0], alone[0], atol=1e-3)


def test_running_stats_equals_eval() -> None:
    G = define_G("resnet", ngf=8, n_blocks=2, use_dropout=True)
    randomise_bn_stats(G)
    x = torch.randn(2, 3, 16, 16)
    ref = copy.deepcopy(G).eval()
    with torch.no_grad():
        assert torch.equal(to_inference(G, batch_stats=False)(x), ref(x))


# --------------------------------------------------------------------------- #
# Names and errors
# --------------------------------------------------------------------------- #
def test_sized_names() -> None:
    assert define_G("unet_32", ngf=4).size_multiple == 32
    assert define_G("unet_512", ngf=2).size_multiple == 512
    n = sum(1 for m in define_G("resnet_2blocks", ngf=4).modules() if isinstance(m, ResnetBlock))
    assert n == 2
    with pytest.raises(ValueError, match="power of two"):
        define_G("unet_16")


def test_names() -> None:
    assert set(G_NAMES) == {"unet_128", "unet_256", "unet", "resnet_6blocks", "resnet_9blocks", "resnet"}
    assert set(D_NAMES) == {"basic", "n_layers", "pixel"}


def test_unknown_names() -> None:
    with pytest.raises(ValueError, match="power of two"):
        define_G("unet_300")
    with pytest.raises(ValueError, match="unet_256") as err:
        define_G("vnet")
    assert "resnet_<K>blocks" in str(err.value)
    with pytest.raises(ValueError, match="pixel"):
        define_D("patch", 3)
    with pytest.raises(ValueError, match="'weird'"):
        define_G("resnet_6blocks", norm="weird")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "unet"},
        {"name": "unet", "num_downs": 4},
        {"name": "unet_128", "num_downs": 8},
        {"name": "unet_256", "n_blocks": 6},
        {"name": "resnet"},
        {"name": "resnet_9blocks", "n_blocks": 6},
        {"name": "resnet", "n_blocks": 2, "num_downs": 7},
    ],
)
def test_bad_generator_options(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        define_G(ngf=2, **kwargs)


def test_matching_explicit_depth_is_accepted() -> None:
    assert define_G("unet_128", ngf=2, num_downs=7).num_downs == 7
    assert define_G("resnet_6blocks", ngf=2, n_blocks=6).n_blocks == 6
