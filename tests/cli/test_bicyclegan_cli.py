"""BicycleGAN through the `translate` command: one drawing, several results (--samples, --seed, --z), and the
one-line errors for a sample count over the cap, a code of the wrong size and samples of a one-answer model."""
import numpy as np
import pytest
import torch
from PIL import Image

from translate.export import export_generator
from translate.networks import define_G, to_inference
from translate.predictor import MAX_SAMPLES
from translate_cli.main import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bicycle")
    main(["data", "make", "sketches", str(root / "sketches"), "--count", "8", "--size", "32", "--seed", "1"])
    main(["train", "bicyclegan", "--data", str(root / "sketches"), "--out", str(root / "run"), "--steps", "2",
          "--size", "32", "--load-size", "36", "--netG", "unet_32", "--ngf", "4", "--ndf", "4", "--nef", "4",
          "--e-blocks", "3", "--nz", "4", "--workers", "0", "--no-progress", "--val-every", "2",
          "--sample-every", "2"])
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "a.png")
    return root


def _pixels(path):
    return np.asarray(Image.open(path)).astype(int)


def test_samples_are_written_by_index_and_a_seed_gives_the_same_ones(trained, capsys):
    model = trained / "run" / "model.onnx"
    main(["predict", str(model), str(trained / "a.png"), "--out", str(trained / "s7"), "--samples", "4", "--seed", "7"])
    assert "wrote 4 images" in capsys.readouterr().out
    outs = [_pixels(trained / "s7" / f"a_{i}.png") for i in range(4)]
    assert all(o.shape == (40, 48, 3) for o in outs) and not (trained / "s7" / "a.png").exists()
    assert any(np.abs(outs[0] - o).max() > 0 for o in outs[1:])  # different codes, different images
    main(["predict", str(trained / "run"), str(trained / "a.png"), "--out", str(trained / "again"), "--samples", "4",
          "--seed", "7"])  # the run directory: the same model, the same codes
    for i in range(4):
        np.testing.assert_array_equal(_pixels(trained / "again" / f"a_{i}.png"), outs[i])


def test_a_given_code_is_reused_for_every_input(trained, capsys):
    model = str(trained / "run" / "model.onnx")
    main(["predict", model, str(trained / "a.png"), "--out", str(trained / "plain")])
    main(["predict", model, str(trained / "a.png"), "--out", str(trained / "zero"), "--z", "0,0,0,0"])
    np.testing.assert_array_equal(_pixels(trained / "plain" / "a.png"), _pixels(trained / "zero" / "a.png"))
    codes = np.random.default_rng(7).standard_normal((4, 4)).astype(np.float32)  # what --seed 7 draws
    np.save(trained / "codes.npy", codes[2])
    main(["predict", model, str(trained / "a.png"), "--out", str(trained / "z2"), "--z", str(trained / "codes.npy")])
    np.testing.assert_array_equal(_pixels(trained / "z2" / "a.png"), _pixels(trained / "s7" / "a_2.png"))


@pytest.fixture(scope="module")
def one_answer(tmp_path_factory):
    path = tmp_path_factory.mktemp("pix2pix") / "m.onnx"
    torch.manual_seed(0)
    arch = dict(name="unet_32", ngf=4, norm="instance")
    export_generator(to_inference(define_G(**arch), False), {"arch": arch}, out=path)
    return path


@pytest.mark.parametrize("args,needle", [
    (["--samples", str(MAX_SAMPLES + 1)], f"--samples: must be a whole number from 1 to {MAX_SAMPLES}, got 17"),
    (["--z", "0.5,1"], "--z: "),  # and: takes a latent code of 4 numbers, got 2
    (["--z", "0,0,0,0", "--samples", "2"], "--samples: --z gives the codes"),
    (["--samples", "2", "ONE"], "--samples: "),  # and: a one-answer model ... ask for 1 sample
])
def test_bad_samples_and_codes_are_one_line_errors(trained, one_answer, capsys, args, needle):
    model = str(one_answer) if "ONE" in args else str(trained / "run" / "model.onnx")
    args = [a for a in args if a != "ONE"]
    with pytest.raises(SystemExit) as e:
        main(["predict", model, str(trained / "a.png"), "--out", str(trained / "bad"), *args])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error:") and needle in err and len(err.splitlines()) == 1
    if args == ["--z", "0.5,1"]:
        assert "takes a latent code of 4 numbers, got 2" in err
    if model == str(one_answer):
        assert "one-answer model" in err and "ask for 1 sample" in err
    assert not (trained / "bad").exists()
