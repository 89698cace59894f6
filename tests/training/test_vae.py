"""`translate train vae`, `translate sample --grid`, `translate evaluate` and the export of its decoder, as a user
runs them, on a tiny digits VAE."""
import json
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from translate.errors import ModelError
from translate.generators import load_generator
from translate.onnx_meta import decode_metadata
from translate_cli.main import main

TINY = ["--size", "8", "--ngf", "8", "--ndf", "8", "--batch-size", "32", "--workers", "0", "--no-progress",
        "--lr", "3e-3"]


def run(capsys, *argv):
    main([str(a) for a in argv])
    return capsys.readouterr()


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "run"
    main(["train", "vae", "--data", "digits", "--out", str(out), "--steps", "80", "--val-every", "10",
          "--log-every", "10", "--sample-every", "80", "--checkpoint-every", "80", *TINY])
    return out


def _rows(run_dir, key):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if key in r]


def test_the_elbo_rises_on_held_out_digits(vae_run):
    val = _rows(vae_run, "val/elbo")
    assert [r["step"] for r in val] == list(range(10, 81, 10))
    assert val[-1]["val/elbo"] > val[0]["val/elbo"] + 50  # nats per 8 x 8 image
    train = _rows(vae_run, "elbo")
    assert train[-1]["elbo"] > train[0]["elbo"]
    for r in val:  # its bits per dimension are the same number
        assert r["val/bits_per_dim"] == pytest.approx(-r["val/elbo"] / (64 * math.log(2)), rel=1e-6)
        assert r["val/elbo"] == pytest.approx(r["val/log_likelihood"] - r["val/kl"], rel=1e-5)
    assert list((vae_run / "samples").glob("*.png"))  # the latent grid


def test_sample_grid_draws_the_latent_plane(vae_run, tmp_path, capsys):
    out = json.loads(run(capsys, "sample", vae_run, "--grid", "6", "--out", tmp_path / "plane.png").out)
    assert out["grid"] == 6
    img = np.asarray(Image.open(tmp_path / "plane.png"))
    assert img.shape[:2] == (6 * (8 + 2) + 2, 6 * (8 + 2) + 2)  # 6 x 6 tiles of 8 px, 2 px padding
    tiles = [img[2 + 10 * i:10 + 10 * i, 2 + 10 * j:10 + 10 * j] for i in range(6) for j in range(6)]
    assert img.std() > 10 and len({t.tobytes() for t in tiles}) > 18  # not constant: the decoder varies over z
    run(capsys, "sample", vae_run, "--grid", "--out", tmp_path / "plane20.png")
    assert Image.open(tmp_path / "plane20.png").size == (20 * 10 + 2, 20 * 10 + 2)


def test_evaluate_reports_the_elbo_and_bits_per_dimension(vae_run, capsys):
    result = json.loads(run(capsys, "evaluate", vae_run, "--samples", "3", "--compact").out)
    assert result["dims"] == 64 and result["samples_per_image"] == 3 and result["images"] > 50
    assert result["bits_per_dim"] == pytest.approx(-result["elbo"] / (64 * math.log(2)), rel=1e-9)
    assert result["elbo"] == pytest.approx(result["log_likelihood"] - result["kl"], rel=1e-6)
    last_val = _rows(vae_run, "val/elbo")[-1]  # the same held-out images as the run's validation at its end
    assert result["elbo"] == pytest.approx(last_val["val/elbo"], rel=0.05)


def test_the_decoder_exports_as_a_latent_to_image_model(vae_run):
    sess = ort.InferenceSession(str(vae_run / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = decode_metadata(sess.get_modelmeta().custom_metadata_map)
    assert meta["kind"] == "vae_decoder" and meta["nz"] == 2 and [i.name for i in sess.get_inputs()] == ["z"]
    decoder, info = load_generator(vae_run)
    assert info["kind"] == "vae" and info["method"] == "vae"
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = decoder(z).numpy()
    got = sess.run(None, {"z": z.numpy()})[0]
    assert got.shape == (5, 1, 8, 8) and np.abs(got - expected).max() < 1e-4
    import translate

    with pytest.raises(ModelError, match="vae"):  # not an image translator: the predictor says what runs it
        translate.load(vae_run / "model.onnx")


def test_bad_input_names_the_flag(tmp_path, capsys):
    for flags, said in ((["--data", "digits", "--latent-dim", "0"], "latent_dim: must be >= 1"),
                        (["--data", "ring8"], "2-D points: the VAE takes images")):
        with pytest.raises(SystemExit):
            main(["train", "vae", "--out", str(tmp_path / "r"), *flags, *TINY])
        assert said in capsys.readouterr().err


def test_it_trains_on_an_image_folder_and_evaluates_another(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for folder in ("photos", "others"):
        (tmp_path / folder).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / folder / f"{i}.png")
    out = tmp_path / "run"
    main(["train", "vae", "--data", str(tmp_path / "photos"), "--out", str(out), "--steps", "3", "--latent-dim", "4",
          "--val-every", "3", "--sample-every", "3", *TINY])
    capsys.readouterr()  # training's own lines (validation, the run directory)
    result = json.loads(run(capsys, "evaluate", out, "--data", tmp_path / "others", "--compact").out)
    assert result["images"] == 6 and result["dims"] == 3 * 8 * 8 and result["latent_dim"] == 4
    assert result["bits_per_dim"] == pytest.approx(-result["elbo"] / (192 * math.log(2)), rel=1e-9)
    with pytest.raises(SystemExit):  # no latent plane to draw with 4 latents
        main(["sample", str(out), "--grid", "--out", str(tmp_path / "p.png")])
    assert "--grid draws a 2-D latent plane" in capsys.readouterr().err
