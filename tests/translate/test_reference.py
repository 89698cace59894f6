"""Tests for translate.reference: importing reference-layout checkpoints.

translate.networks keeps the module layout of junyanz/pytorch-CycleGAN-and-pix2pix,
so a freshly initialised model's state_dict is laid out exactly like a reference
checkpoint. The literal-key tests below pin that layout down independently, so
any drift from the reference would be caught here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from translate.networks import define_D, define_G
from translate.reference import (
    clean_state_dict,
    infer_discriminator_config,
    infer_generator_config,
    load_reference_discriminator,
    load_reference_generator,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def randomise_bn_stats(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(123)


def save(sd: dict, path: Path) -> Path:
    torch.save(sd, path)
    return path


def assert_same_outputs(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    a.eval()
    b.eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def instance_norm_prefixes(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_modules() if isinstance(m, nn.InstanceNorm2d)]


# --------------------------------------------------------------------------- #
# Literal reference layout
# --------------------------------------------------------------------------- #
def test_unet_256_literal_keys() -> None:
    sd = define_G("unet_256", 3, 3, ngf=64, norm="batch").state_dict()
    expected = {
        # outermost: [downconv, submodule, ReLU, upconv, Tanh]
        "model.model.0.weight": (64, 3, 4, 4),
        "model.model.3.weight": (128, 3, 4, 4),
        "model.model.3.bias": (3,),
        # next level: [LeakyReLU, downconv, downnorm, submodule, ReLU, upconv, upnorm]
        "model.model.1.model.1.weight": (128, 64, 4, 4),
        "model.model.1.model.2.weight": (128,),
        "model.model.1.model.2.running_mean": (128,),
        "model.model.1.model.5.weight": (256, 64, 4, 4),
        "model.model.1.model.6.running_var": (64,),
        "model.model.1.model.3.model.1.weight": (256, 128, 4, 4),
        "model.model.1.model.3.model.3.model.1.weight": (512, 256, 4, 4),
        # innermost (8th level): [LeakyReLU, downconv, ReLU, upconv, upnorm]
        "model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.1.weight": (512, 512, 4, 4),
        "model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.3.weight": (512, 512, 4, 4),
        "model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.4.weight": (512,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    # BatchNorm => no conv biases except the outermost up-conv.
    assert "model.model.0.bias" not in sd and "model.model.1.model.1.bias" not in sd
    # index 3 of a middle level is the nested block, not a layer
    assert "model.model.1.model.3.weight" not in sd
    # outermost 3 + 6 middle levels x (2 convs + 2 BN x 5 entries) + innermost (2 convs + 1 BN)
    assert len(sd) == 3 + 6 * 12 + 7


def test_resnet_9blocks_literal_keys() -> None:
    sd = define_G("resnet_9blocks", 3, 3, ngf=64, norm="instance").state_dict()
    expected = {
        "model.1.weight": (64, 3, 7, 7),
        "model.1.bias": (64,),
        "model.4.weight": (128, 64, 3, 3),
        "model.7.weight": (256, 128, 3, 3),
        "model.10.conv_block.1.weight": (256, 256, 3, 3),
        "model.10.conv_block.5.weight": (256, 256, 3, 3),
        "model.18.conv_block.5.bias": (256,),
        "model.19.weight": (256, 128, 3, 3),  # ConvTranspose2d
        "model.22.weight": (128, 64, 3, 3),
        "model.26.weight": (3, 64, 7, 7),
        "model.26.bias": (3,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any("running_mean" in k for k in sd)  # affine=False, no stats
    assert "model.10.conv_block.6.weight" not in sd

    sd_drop = define_G("resnet_9blocks", 3, 3, ngf=64, norm="instance", use_dropout=True).state_dict()
    assert tuple(sd_drop["model.10.conv_block.6.weight"].shape) == (256, 256, 3, 3)
    assert "model.10.conv_block.5.weight" not in sd_drop

    # With BatchNorm, index 6 is the second norm without dropout and the conv with it.
    sd_bn = define_G("resnet_6blocks", 3, 3, ngf=64, norm="batch").state_dict()
    assert tuple(sd_bn["model.10.conv_block.5.weight"].shape) == (256, 256, 3, 3)
    assert tuple(sd_bn["model.10.conv_block.6.weight"].shape) == (256,)
    sd_bn_drop = define_G("resnet_6blocks", 3, 3, ngf=64, norm="batch", use_dropout=True).state_dict()
    assert tuple(sd_bn_drop["model.10.conv_block.6.weight"].shape) == (256, 256, 3, 3)
    assert tuple(sd_bn_drop["model.10.conv_block.7.running_mean"].shape) == (256,)
    assert "model.15.conv_block.1.weight" in sd_bn and "model.16.weight" in sd_bn  # 6 blocks, then up-conv


def test_discriminator_literal_keys() -> None:
    sd = define_D("basic", 6, ndf=64, norm="batch").state_dict()
    expected = {
        "model.0.weight": (64, 6, 4, 4),
        "model.0.bias": (64,),
        "model.2.weight": (128, 64, 4, 4),
        "model.3.running_mean": (128,),
        "model.5.weight": (256, 128, 4, 4),
        "model.8.weight": (512, 256, 4, 4),
        "model.9.weight": (512,),
        "model.11.weight": (1, 512, 4, 4),
        "model.11.bias": (1,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "model.2.bias" not in sd

    sd = define_D("pixel", 6, ndf=64, norm="batch").state_dict()
    assert tuple(sd["net.0.weight"].shape) == (64, 6, 1, 1)
    assert tuple(sd["net.2.weight"].shape) == (128, 64, 1, 1)
    assert tuple(sd["net.3.weight"].shape) == (128,)
    assert tuple(sd["net.5.weight"].shape) == (1, 128, 1, 1)


# --------------------------------------------------------------------------- #
# Generator round trips
# --------------------------------------------------------------------------- #
GENERATORS = [
    # (define_G kwargs, expected inferred config, input size)
    (
        {"name": "unet", "num_downs": 6, "ngf": 8, "norm": "batch"},
        {"name": "unet", "num_downs": 6, "input_nc": 3, "output_nc": 3, "ngf": 8, "norm": "batch", "use_dropout": False},
        64,
    ),
    (
        {"name": "unet_128", "ngf": 4, "norm": "instance", "input_nc": 1, "output_nc": 2},
        {"name": "unet", "num_downs": 7, "input_nc": 1, "output_nc": 2, "ngf": 4, "norm": "instance", "use_dropout": False},
        128,
    ),
    (
        {"name": "unet", "num_downs": 5, "ngf": 4, "norm": "none"},
        {"name": "unet", "num_downs": 5, "input_nc": 3, "output_nc": 3, "ngf": 4, "norm": "none", "use_dropout": False},
        32,
    ),
    (
        {"name": "resnet", "n_blocks": 2, "ngf": 8, "norm": "batch"},
        {"name": "resnet", "n_blocks": 2, "input_nc": 3, "output_nc": 3, "ngf": 8, "norm": "batch", "use_dropout": False},
        16,
    ),
    (
        {"name": "resnet", "n_blocks": 2, "ngf": 8, "norm": "batch", "use_dropout": True},
        {"name": "resnet", "n_blocks": 2, "input_nc": 3, "output_nc": 3, "ngf": 8, "norm": "batch", "use_dropout": True},
        16,
    ),
    (
        {"name": "resnet_9blocks", "ngf": 4, "norm": "instance", "output_nc": 1, "use_dropout": True},
        {"name": "resnet", "n_blocks": 9, "input_nc": 3, "output_nc": 1, "ngf": 4, "norm": "instance", "use_dropout": True},
        20,
    ),
    (
        {"name": "resnet_6blocks", "ngf": 4, "norm": "none"},
        {"name": "resnet", "n_blocks": 6, "input_nc": 3, "output_nc": 3, "ngf": 4, "norm": "none", "use_dropout": False},
        12,
    ),
    (
        {"name": "resnet", "n_blocks": 0, "ngf": 4, "norm": "instance"},
        {"name": "resnet", "n_blocks": 0, "input_nc": 3, "output_nc": 3, "ngf": 4, "norm": "instance", "use_dropout": False},
        12,
    ),
]


@pytest.mark.parametrize("kwargs, config, size", GENERATORS, ids=lambda v: str(v) if isinstance(v, int) else None)
def test_generator_round_trip(tmp_path: Path, kwargs: dict, config: dict, size: int) -> None:
    G = define_G(**kwargs)
    randomise_bn_stats(G)
    path = save(G.state_dict(), tmp_path / "latest_net_G.pth")
    assert infer_generator_config(G.state_dict()) == config

    loaded, got = load_reference_generator(path)
    assert got == config
    assert not loaded.training
    x = torch.randn(2, G.input_nc, size, size)
    assert_same_outputs(G, loaded, x)
    for (k, a), (k2, b) in zip(G.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k


def test_dataparallel_prefix(tmp_path: Path) -> None:
    G = define_G("resnet", n_blocks=1, ngf=4, norm="batch")
    randomise_bn_stats(G)
    sd = {f"module.{k}": v for k, v in G.state_dict().items()}
    loaded, config = load_reference_generator(save(sd, tmp_path / "latest_net_G_A.pth"))
    assert config["n_blocks"] == 1 and config["norm"] == "batch"
    assert_same_outputs(G, loaded, torch.randn(1, 3, 8, 8))
    assert clean_state_dict(sd).keys() == G.state_dict().keys()


def test_accepts_in_memory_state_dict() -> None:
    D = define_D("pixel", 3, ndf=4)
    loaded, config = load_reference_discriminator(D.state_dict())
    assert config["name"] == "pixel"
    assert_same_outputs(D, loaded, torch.randn(1, 3, 4, 4))


@pytest.mark.parametrize("name, kwargs", [("unet", {"num_downs": 5}), ("resnet", {"n_blocks": 2})])
def test_old_instance_norm_running_stats_are_dropped(tmp_path: Path, name: str, kwargs: dict) -> None:
    G = define_G(name, ngf=4, norm="instance", **kwargs)
    sd = dict(G.state_dict())
    prefixes = instance_norm_prefixes(G)
    assert prefixes
    for p in prefixes:  # what PyTorch <= 0.4 wrote for InstanceNorm(track_running_stats=True)
        n = G.get_submodule(p).num_features
        sd[f"{p}.running_mean"] = torch.randn(n)
        sd[f"{p}.running_var"] = torch.rand(n) + 0.5
        sd[f"{p}.num_batches_tracked"] = torch.tensor(7)
    assert infer_generator_config(sd)["norm"] == "instance"
    loaded, config = load_reference_generator(save(sd, tmp_path / "latest_net_G_B.pth"))
    assert config["norm"] == "instance"
    assert_same_outputs(G, loaded, torch.randn(2, 3, 32, 32))


def test_instance_norm_inferred_from_running_stats_alone() -> None:
    # Norm layer with running stats but no affine params = InstanceNorm of old PyTorch.
    sd = dict(define_G("resnet", n_blocks=1, ngf=4, norm="instance").state_dict())
    sd["model.2.running_mean"] = torch.zeros(4)
    sd["model.2.running_var"] = torch.ones(4)
    del sd["model.1.bias"]
    assert infer_generator_config(sd)["norm"] == "instance"


def test_missing_num_batches_tracked(tmp_path: Path) -> None:
    G = define_G("unet", num_downs=5, ngf=4, norm="batch")
    randomise_bn_stats(G)
    sd = {k: v for k, v in G.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(sd) < len(G.state_dict())
    loaded, _ = load_reference_generator(save(sd, tmp_path / "latest_net_G.pth"))
    assert_same_outputs(G, loaded, torch.randn(1, 3, 32, 32))
    counters = [v for k, v in loaded.state_dict().items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(c) == 0 for c in counters)


def test_all_variants_at_once(tmp_path: Path) -> None:
    G = define_G("resnet", n_blocks=3, ngf=4, norm="instance", use_dropout=True)
    sd = {f"module.{k}": v for k, v in G.state_dict().items()}
    for p in instance_norm_prefixes(G):
        sd[f"module.{p}.running_mean"] = torch.zeros(G.get_submodule(p).num_features)
        sd[f"module.{p}.running_var"] = torch.ones(G.get_submodule(p).num_features)
    loaded, config = load_reference_generator(save(sd, tmp_path / "latest_net_G.pth"))
    assert config == {"name": "resnet", "n_blocks": 3, "input_nc": 3, "output_nc": 3, "ngf": 4,
                      "norm": "instance", "use_dropout": True}
    assert_same_outputs(G, loaded, torch.randn(1, 3, 16, 24))


def test_overrides(tmp_path: Path) -> None:
    G = define_G("unet", num_downs=6, ngf=4, norm="batch", use_dropout=False)
    path = save(G.state_dict(), tmp_path / "latest_net_G.pth")
    loaded, config = load_reference_generator(path, use_dropout=True)
    assert config["use_dropout"] is True
    assert any(isinstance(m, nn.Dropout) for m in loaded.modules())
    assert_same_outputs(G, loaded, torch.randn(1, 3, 64, 64))  # dropout is off in eval


# --------------------------------------------------------------------------- #
# Discriminators
# --------------------------------------------------------------------------- #
DISCRIMINATORS = [
    ({"name": "basic", "input_nc": 6, "ndf": 8, "norm": "batch"},
     {"name": "basic", "input_nc": 6, "ndf": 8, "n_layers": 3, "norm": "batch"}, 64),
    ({"name": "n_layers", "input_nc": 3, "ndf": 4, "n_layers": 2, "norm": "instance"},
     {"name": "n_layers", "input_nc": 3, "ndf": 4, "n_layers": 2, "norm": "instance"}, 32),
    ({"name": "n_layers", "input_nc": 3, "ndf": 4, "n_layers": 5, "norm": "none"},
     {"name": "n_layers", "input_nc": 3, "ndf": 4, "n_layers": 5, "norm": "none"}, 128),
    ({"name": "n_layers", "input_nc": 3, "ndf": 4, "n_layers": 1, "norm": "batch"},
     {"name": "n_layers", "input_nc": 3, "ndf": 4, "n_layers": 1, "norm": "batch"}, 16),
    ({"name": "n_layers", "input_nc": 3, "ndf": 4, "n_layers": 0, "norm": "batch"},
     {"name": "n_layers", "input_nc": 3, "ndf": 4, "n_layers": 0, "norm": "batch"}, 16),
    ({"name": "pixel", "input_nc": 6, "ndf": 8, "norm": "batch"},
     {"name": "pixel", "input_nc": 6, "ndf": 8, "norm": "batch"}, 8),
    ({"name": "pixel", "input_nc": 2, "ndf": 8, "norm": "instance"},
     {"name": "pixel", "input_nc": 2, "ndf": 8, "norm": "instance"}, 8),
]


@pytest.mark.parametrize("kwargs, config, size", DISCRIMINATORS)
def test_discriminator_round_trip(tmp_path: Path, kwargs: dict, config: dict, size: int) -> None:
    D = define_D(**kwargs)
    randomise_bn_stats(D)
    sd = {f"module.{k}": v for k, v in D.state_dict().items()}
    assert infer_discriminator_config(sd) == config
    loaded, got = load_reference_discriminator(save(sd, tmp_path / "latest_net_D.pth"))
    assert got == config
    assert_same_outputs(D, loaded, torch.randn(2, kwargs["input_nc"], size, size))


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
def test_corrupted_file(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G.pth"
    path.write_bytes(b"\x00not a torch file at all" * 10)
    with pytest.raises(ValueError, match="latest_net_G.pth"):
        load_reference_generator(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = save(define_G("resnet", n_blocks=1, ngf=2).state_dict(), tmp_path / "latest_net_G.pth")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="latest_net_G.pth"):
        load_reference_generator(path)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = save({"epoch": 3, "lr": 0.1}, tmp_path / "latest_net_G.pth")
    with pytest.raises(ValueError, match="latest_net_G.pth.*state dict"):
        load_reference_generator(path)


def test_discriminator_file_as_generator(tmp_path: Path) -> None:
    path = save(define_D("basic", 6, ndf=4).state_dict(), tmp_path / "latest_net_D.pth")
    with pytest.raises(ValueError, match="latest_net_D.pth.*discriminator"):
        load_reference_generator(path)
    path = save(define_G("unet", num_downs=5, ngf=2).state_dict(), tmp_path / "latest_net_G.pth")
    with pytest.raises(ValueError, match="latest_net_G.pth.*generator"):
        load_reference_discriminator(path)


def test_missing_and_unexpected_keys(tmp_path: Path) -> None:
    sd = dict(define_G("resnet", n_blocks=2, ngf=4, norm="batch").state_dict())
    del sd["model.11.conv_block.5.weight"]
    sd["model.11.conv_block.9.weight"] = torch.zeros(1)
    path = save(sd, tmp_path / "broken_net_G.pth")
    with pytest.raises(ValueError, match="broken_net_G.pth") as err:
        load_reference_generator(path)
    msg = str(err.value)
    assert "missing keys: model.11.conv_block.5.weight" in msg
    assert "unexpected keys: model.11.conv_block.9.weight" in msg


def test_shape_mismatch(tmp_path: Path) -> None:
    sd = dict(define_G("unet", num_downs=5, ngf=4).state_dict())
    sd["model.model.1.model.1.weight"] = torch.zeros(8, 4, 3, 3)
    path = save(sd, tmp_path / "latest_net_G.pth")
    with pytest.raises(ValueError, match=r"latest_net_G.pth.*shape.*model\.model\.1\.model\.1\.weight"):
        load_reference_generator(path)


def test_wrong_norm_override(tmp_path: Path) -> None:
    path = save(define_G("resnet", n_blocks=1, ngf=4, norm="instance").state_dict(), tmp_path / "g.pth")
    with pytest.raises(ValueError, match="g.pth.*unexpected keys"):
        load_reference_generator(path, norm="none")


def test_unknown_layout() -> None:
    with pytest.raises(ValueError, match="no known generator layout"):
        infer_generator_config({"encoder.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="no known discriminator layout"):
        infer_discriminator_config({"encoder.weight": torch.zeros(1)})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_reference_generator(tmp_path / "nope.pth")
