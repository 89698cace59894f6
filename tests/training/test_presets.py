"""Presets: each built-in data set brings its tested settings to the options the user leaves unset, shows them in
`--help` and records them in config.json (the settings behind BENCHMARKS.md's numbers)."""
import json

import pytest
import torch

from training.config import NO_PRESET, TrainConfig
from training.cyclegan import CycleGANConfig
from training.gan import PRESETS as GAN_PRESETS
from training.gan import GANConfig
from training.pix2pix import Pix2PixConfig
from translate.datasets import make_dataset, pair_photos
from translate.datasets.photo_pairs import PairOptions
from translate.errors import ConfigError
from translate_cli.main import main

# the settings of BENCHMARKS.md's WGAN-GP rows (benchmarks/gan_mixtures.py runs with the same presets)
WGANGP_TOY = dict(lr=2e-3, beta1=0.5, beta2=0.9, lambda_gp=0.1, n_critic=2, batch_size=256, mlp_width=128,
                  ema_decay=0.999, decay_fraction=0.5)


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()  # the mixtures' preset trains on one thread
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("data,steps", [("ring8", 15000), ("grid25", 20000)])
def test_the_mixtures_bring_the_settings_that_gave_the_benchmarks_results(data, steps):
    c = GANConfig(data=data, gan_mode="wgangp")
    assert c.preset == data and c.steps == steps
    assert {k: getattr(c, k) for k in WGANGP_TOY} == WGANGP_TOY
    hinge = GANConfig(data=data, gan_mode="hinge")  # each objective its tested optimiser settings
    assert (hinge.lr, hinge.beta2, hinge.n_critic, hinge.lambda_gp, hinge.batch_size) == (1e-3, 0.999, 1, 0.0, 256)
    wgan = GANConfig(data=data, gan_mode="wgan")  # not tuned on the mixtures: its paper's RMSprop
    assert (wgan.optimizer, wgan.lr, wgan.clip, wgan.n_critic) == ("rmsprop", 5e-5, 0.01, 5)


def test_every_value_can_be_overridden_and_none_means_the_plain_defaults():
    mine = GANConfig(data="ring8", gan_mode="wgangp", lr=1e-4, batch_size=64, steps=100, ema_decay=0.0)
    assert (mine.lr, mine.batch_size, mine.steps, mine.ema_decay) == (1e-4, 64, 100, 0.0)
    assert (mine.lambda_gp, mine.n_critic, mine.mlp_width) == (0.1, 2, 128)  # the rest still from the preset
    plain = GANConfig(data="ring8", gan_mode="wgangp", preset=NO_PRESET)
    assert (plain.lr, plain.beta1, plain.n_critic, plain.lambda_gp) == (1e-4, 0.0, 5, 10.0)  # the paper's
    assert (plain.batch_size, plain.mlp_width, plain.steps, plain.ema_decay, plain.threads) == (64, 256, 5000, 0.0, 0)
    folder = GANConfig(data="some/images", gan_mode="wgangp")
    assert folder.preset == NO_PRESET and folder.batch_size == 64
    borrowed = GANConfig(data="some/points", preset="grid25", gan_mode="wgangp")  # a preset asked for by name
    assert borrowed.steps == 20000 and borrowed.lr == 2e-3
    with pytest.raises(ConfigError, match=r"preset: no preset 'ring9' for gan \(known: ring8, grid25, digits, none\)"):
        GANConfig(data="ring8", preset="ring9")


def test_a_config_is_read_back_as_written_and_old_configs_keep_their_plain_values():
    c = GANConfig(data="grid25", gan_mode="wgangp")
    assert GANConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    old = {k: v for k, v in GANConfig(data="ring8", gan_mode="wgangp", preset=NO_PRESET).to_dict().items()
           if k not in ("preset", "batch_size", "ema_decay")}  # a config.json of before presets, missing fields
    read = GANConfig.from_dict(old)
    assert (read.preset, read.batch_size, read.ema_decay, read.lr) == (NO_PRESET, 64, 0.0, 1e-4)


def test_built_in_image_sets_bring_the_demos_settings(tmp_path):
    maps = make_dataset("maps", tmp_path / "maps", count=3, size=32, progress=False)
    assert maps["kind"] == "maps"
    c = Pix2PixConfig(data=str(tmp_path / "maps"))
    assert (c.preset, c.size, c.netG, c.ngf, c.ndf, c.norm, c.batch_size) == ("maps", 128, "unet_128", 32, 32,
                                                                             "instance", 4)
    assert c.load_size == 143 and c.n_critic == 1  # what follows from them, and what the preset leaves alone
    assert c.lr == c.lr_d == 1.6e-3  # measured with the paper's objective at these networks: 8x its rate
    assert Pix2PixConfig(data=str(tmp_path / "maps"), gan_mode="wgangp").lr == 1e-4  # other objectives: their own
    assert Pix2PixConfig(data=str(tmp_path / "maps"), lr=2e-4).lr == 2e-4  # the user's word first
    plain = Pix2PixConfig(data=str(tmp_path))  # any other folder: the paper's settings
    assert (plain.preset, plain.size, plain.netG, plain.ngf, plain.norm, plain.batch_size) == (
        NO_PRESET, 256, "unet_256", 64, "batch", 1)
    # photos paired by their edges are drawn like the sketches set: its preset, asked for by name
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 120, 60)).save(photos / "a.png")
    pair_photos("edges", photos, tmp_path / "pairs", PairOptions(size=32, progress=False))
    assert Pix2PixConfig(data=str(tmp_path / "pairs")).preset == NO_PRESET
    assert Pix2PixConfig(data=str(tmp_path / "pairs"), preset="sketches").netG == "unet_128"
    # CycleGAN has no tested settings for these sets: its own defaults, whatever the folder
    cg = CycleGANConfig(data=str(tmp_path / "maps"))
    assert (cg.preset, cg.netG, cg.norm, cg.size) == (NO_PRESET, "resnet_9blocks", "instance", 256)
    assert TrainConfig(data="x").preset == NO_PRESET


def test_help_shows_each_presets_values(capsys):
    with pytest.raises(SystemExit):
        main(["train", "gan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "samples per step (default: 64; preset ring8, grid25: 256)" in text
    assert "preset ring8, grid25: minimax, nonsaturating, lsgan, hinge, contrastive, mmd 0.001, wgangp 0.002" in text
    assert "(default: 5000; preset ring8: 15000; preset grid25: 20000; preset digits: 3000)" in text
    assert "presets: ring8, grid25, digits" in text
    with pytest.raises(SystemExit):
        main(["train", "pix2pix", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "generator filters in the last conv layer (default: 64; preset maps, sketches: 32)" in text
    assert set(GAN_PRESETS) == {"ring8", "grid25", "digits"}


def test_the_readme_command_records_the_preset_in_config_json(tmp_path, capsys):
    out = tmp_path / "ring"
    # `translate train gan --data ring8 --gan-mode wgangp` as the README shows it, shortened to a few steps
    main(["train", "gan", "--data", "ring8", "--gan-mode", "wgangp", "--out", str(out), "--steps", "4",
          "--points", "2000", "--eval-samples", "200", "--no-progress"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["preset"] == "ring8" and cfg["steps"] == 4
    assert {k: cfg[k] for k in WGANGP_TOY} == WGANGP_TOY


def test_an_objective_s_alias_reads_the_settings_tested_with_that_objective():
    # vanilla is nonsaturating by another name (translate.losses.ALIASES): the presets key it by the objective
    assert GANConfig(data="digits", gan_mode="vanilla").lr == GANConfig(data="digits", gan_mode="nonsaturating").lr == 5e-4
