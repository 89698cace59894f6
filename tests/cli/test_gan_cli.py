"""`translate train gan`, `sample`, `edit`, `evaluate` and `export` on GAN runs, as a user runs them."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from translate_cli.main import main

COMMON = ["--workers", "0", "--no-progress", "--threads", "1", "--val-every", "0"]


def run(capsys, *argv):
    main([str(a) for a in argv])
    return capsys.readouterr()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    before = torch.get_num_threads()
    root = tmp_path_factory.mktemp("gancli")
    main(["train", "gan", "--data", "ring8", "--out", str(root / "ring"), "--steps", "40", "--batch-size", "64",
          "--mlp-width", "32", "--points", "5000", "--eval-samples", "500", *COMMON])
    main(["train", "gan", "--data", "digits", "--out", str(root / "digits"), "--steps", "30", "--size", "16",
          "--ngf", "8", "--ndf", "8", "--nz", "16", "--conditional", "--ema-decay", "0.9", "--classifier-steps", "60",
          "--eval-samples", "200", *COMMON])
    yield root
    torch.set_num_threads(before)


def test_train_writes_a_gan_run(runs):
    for name in ("ring", "digits"):
        run_dir = runs / name
        assert (run_dir / "model.onnx").exists() and (run_dir / "checkpoints" / "latest.pt").exists()
        assert list((run_dir / "samples").glob("*.png"))
    cfg = json.loads((runs / "digits" / "config.json").read_text())
    # digits' preset: its tested learning rate for the non-saturating loss, the flags given on the command line
    assert cfg["method"] == "gan" and cfg["conditional"] and cfg["preset"] == "digits" and cfg["lr"] == 5e-4
    assert (cfg["beta1"], cfg["ngf"], cfg["steps"]) == (0.5, 8, 30)
    assert (runs / "digits" / "classifier.pt").exists()  # trained at the final validation


def test_sample_writes_a_grid_and_a_scatter_plot(runs, capsys):
    out = run(capsys, "sample", runs / "digits", "--n", "16", "--class", "3", "--truncation", "0.7",
              "--out", runs / "s.png")
    info = json.loads(out.out)
    assert info["class"] == 3 and info["truncation"] == 0.7 and info["ema"]
    img = Image.open(runs / "s.png")
    assert img.size == (4 * 18 + 2, 4 * 18 + 2)  # 4 x 4 tiles of 16 px, 2 px padding
    run(capsys, "sample", runs / "ring", "--out", runs / "r.png", "--n", "300")
    assert Image.open(runs / "r.png").size == (384, 384)


def test_edit_writes_the_trajectory_strip(runs, capsys):
    out = run(capsys, "edit", runs / "digits", "--toward", "7", "--steps", "6", "--eta", "0.5", "--n", "3",
              "--frames", "4", "--out", runs / "edit.png")
    info = json.loads(out.out)
    assert info["frames"] == [0, 2, 4, 6] and 0 <= info["score_before"] <= 1 and 0 <= info["score_after"] <= 1
    assert Image.open(runs / "edit.png").size == (4 * 18 + 2, 3 * 18 + 2)  # a row per sample, a column per frame


def test_evaluate_a_mixture_run(runs, capsys):
    res = json.loads(run(capsys, "evaluate", runs / "ring", "--compact").out)
    assert res["samples"] == 2500 and res["modes_total"] == 8 and len(res["histogram"]) == 8
    assert {"modes", "high_quality", "reverse_kl"} <= set(res)


def test_evaluate_an_image_run_labels_its_feature_network(runs, capsys):
    res = json.loads(run(capsys, "evaluate", runs / "digits", "--samples", "300", "--compact").out)
    assert res["feature_network"] == "digits_classifier"
    assert {"fid_digits_classifier", "kid_digits_classifier", "kid_digits_classifier_std"} <= set(res)
    assert "fid" not in res and res["fid_digits_classifier"] > 0
    assert len(res["class_histogram"]) == 10 and sum(res["class_histogram"]) == 300
    assert 0 <= res["conditional_accuracy"] <= 1 and res["classifier_val_accuracy"] > 0.5


def test_export_a_gan_run(runs, capsys):
    import onnxruntime as ort

    out = run(capsys, "export", runs / "digits", "--out", runs / "g.onnx")
    assert "max abs diff" in out.out
    sess = ort.InferenceSession(str(runs / "g.onnx"), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"z": np.zeros((2, 16), np.float32), "label": np.array([1, 2])})[0]
    assert y.shape == (2, 1, 16, 16) and np.abs(y).max() <= 1


@pytest.mark.parametrize("argv,needle", [
    (["sample", "DIGITS", "--class", "12", "--out", "x.png"], "class"),
    (["sample", "RING", "--class", "1", "--out", "x.png"], "unconditional"),
    (["edit", "RING", "--toward", "1"], "image GAN"),
    (["edit", "DIGITS", "--toward", "10"], "toward"),
    (["evaluate", "DIGITS", "--inception", "/nonexistent/pt_inception.pth"], "/nonexistent/pt_inception.pth"),
    (["evaluate", "/nonexistent.onnx"], "--data"),
    (["train", "gan", "--data", "ring9", "--steps", "1"], "ring9"),
    (["train", "gan", "--data", "ring8", "--steps", "1", "--arch", "dcgan"], "arch"),
    (["sample", "/nonexistent-run", "--out", "x.png"], "/nonexistent-run"),
])
def test_bad_input_is_one_line_and_exit_2(runs, capsys, argv, needle):
    argv = [str(runs / "digits") if a == "DIGITS" else str(runs / "ring") if a == "RING" else a for a in argv]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error:") and needle in err and len(err.splitlines()) == 1, err
