"""Checkpoints written before generator specs had a kind and objectives were one table still load,
predict, sample, export and resume (tests/fixtures/*_v1.pt were written by that version, with the
outputs it gave in v1_outputs.npz)."""
import shutil
from pathlib import Path

import numpy as np
import torch

import translate
from tests.conftest import make_pairs
from tests.fp32 import FP32
from translate.export import export_model
from translate.generators import generator_kind, load_generator

FIXTURES = Path(__file__).parent.parent / "fixtures"
PIX2PIX, GAN = FIXTURES / "pix2pix_unet32_v1.pt", FIXTURES / "gan_ring8_v1.pt"


def test_a_v1_pix2pix_checkpoint_predicts_the_same_pixels(tmp_path):
    ref = np.load(FIXTURES / "v1_outputs.npz")
    assert generator_kind(PIX2PIX) == "translation"
    # fp32, as the v1 pixels were computed (auto is OpenVINO bf16 on CPUs with avx512_bf16)
    assert np.array_equal(translate.load(PIX2PIX, device="cpu", runtime=FP32)(ref["pix2pix_in"]), ref["pix2pix_out"])
    assert export_model(PIX2PIX, tmp_path / "m.onnx") < 1e-3
    assert np.array_equal(translate.load(tmp_path / "m.onnx", device="cpu", runtime=FP32)(ref["pix2pix_in"]),
                          ref["pix2pix_out"])


def test_a_v1_gan_checkpoint_samples_the_same_points(tmp_path):
    ref = np.load(FIXTURES / "v1_outputs.npz")
    assert generator_kind(GAN) == "gan"
    G, meta = load_generator(GAN)  # its spec is rebuilt from what the run kept in extra["gan"]
    assert meta["kind"] == "gan" and meta["ema"] and meta["data_kind"] == "points" and meta["name"] == "ring8"
    with torch.no_grad():
        out = G(torch.from_numpy(ref["gan_z"]), None).numpy()
    assert np.allclose(out, ref["gan_out"], atol=1e-6)
    raw, _ = load_generator(GAN, use_ema=False)
    assert not all(torch.equal(a, b) for a, b in zip(raw.parameters(), G.parameters(), strict=True))  # the raw weights differ
    assert export_model(GAN, tmp_path / "g.onnx") < 1e-3


def test_v1_runs_resume_under_this_version(tmp_path, monkeypatch):
    from training.gan import GAN as GANMethod
    from training.gan import GANConfig
    from training.loop import Trainer
    from training.pix2pix import Pix2Pix, Pix2PixConfig

    monkeypatch.chdir(tmp_path)
    make_pairs(tmp_path / "pairs", n_train=8, n_val=2)  # the v1 run trained on ./pairs
    for name, src in (("p2p", PIX2PIX), ("gan", GAN)):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        shutil.copy(src, tmp_path / name / "checkpoints" / "latest.pt")
    t = Trainer(Pix2Pix, Pix2PixConfig(), resume="p2p", overrides={"steps": 3, "progress": False})
    assert t.step == 2 and (t.config.n_critic, t.config.optimizer, t.config.lambda_gp) == (1, "adam", 0.0)
    t.fit()
    assert t.step == 3
    g = Trainer(GANMethod, GANConfig(), resume="gan", overrides={"steps": 6, "progress": False})
    ema = [p.detach().clone() for p in g.method.G_ema.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(ema, load_generator(GAN)[0].parameters(), strict=True))  # EMA restored
    assert (g.config.clip, g.config.lambda_gp, g.config.nz) == (0.0, 0.0, 16)
    g.fit()
    assert g.step == 6 and load_generator("gan")[1]["ema"]
