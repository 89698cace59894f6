"""`translate train cut` as a user runs it, then the model as any translation model: predict, register, serve's
store, retrain."""
import json

import numpy as np
import pytest
from PIL import Image

import translate
from tests.training.test_cyclegan import tiny_unpaired  # noqa: F401  (fixture)
from translate_cli.main import main

TINY = ["--size", "32", "--load-size", "36", "--netG", "resnet_1blocks", "--ngf", "4", "--ndf", "4", "--netF-nc", "8",
        "--num-patches", "16", "--workers", "0", "--no-progress", "--val-every", "3", "--sample-every", "3"]


@pytest.fixture(scope="module")
def run_dir(tiny_unpaired, tmp_path_factory):  # noqa: F811
    run = tmp_path_factory.mktemp("cli") / "run"
    main(["train", "cut", "--mode", "fastcut", "--data", str(tiny_unpaired), "--out", str(run), "--steps", "3", *TINY])
    return run


def test_train_exports_one_translation_model(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["method"] == "cut" and cfg["mode"] == "fastcut"
    assert (cfg["lambda_NCE"], cfg["nce_idt"], cfg["flip_equivariance"]) == (10.0, False, True)
    assert sorted(p.name for p in run_dir.glob("*.onnx")) == ["model.onnx"]
    p = translate.load(run_dir / "model.onnx")
    assert p.metadata["method"] == "cut" and p.metadata["direction"] == "AtoB"
    assert p.metadata.get("kind", "translation") == "translation"


def test_predict_keeps_the_size(run_dir, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (97, 130, 3), dtype=np.uint8)).save(src)
    main(["predict", str(run_dir), str(src), "--out", str(tmp_path / "out")])
    out = Image.open(tmp_path / "out" / "in.png")
    assert out.size == (130, 97)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(translate.load(run_dir / "model.onnx")(Image.open(src))))


def test_registered_and_retrained_like_pix2pix(run_dir, tiny_pairs, tmp_path, capsys):
    store = tmp_path / "store"
    main(["export", str(run_dir), "--out", str(tmp_path / "cut.onnx"), "--register", "h2z", "--store", str(store)])
    capsys.readouterr()
    main(["retrain", "h2z", "--data", str(tiny_pairs), "--store", str(store), "--steps", "2", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert out["new_version"] == "v0002" and out["metric"] == "l1" and np.isfinite(out["new_metric"])


def test_different_channels_are_one_line_naming_the_folders(tiny_unpaired, tmp_path, capsys):  # noqa: F811
    with pytest.raises(SystemExit) as e:
        main(["train", "cut", "--data", str(tiny_unpaired), "--out", str(tmp_path / "r"), "--output-nc", "1", *TINY])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert str(tiny_unpaired / "trainA") in err and str(tiny_unpaired / "trainB") in err and "--output-nc" in err
