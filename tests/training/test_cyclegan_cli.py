"""`translate train cyclegan` as a user runs it, then export / predict / evaluate by direction."""
import json

import numpy as np
import pytest
from PIL import Image

import translate
from tests.training.test_cyclegan import tiny_unpaired  # noqa: F401  (fixture)
from translate_cli.main import main


@pytest.fixture(scope="module")
def run_dir(tiny_unpaired, tmp_path_factory):  # noqa: F811
    run = tmp_path_factory.mktemp("cli") / "run"
    main(["train", "cyclegan", "--data", str(tiny_unpaired), "--out", str(run), "--steps", "3", "--size", "32",
          "--load-size", "36", "--netG", "resnet_2blocks", "--ngf", "8", "--ndf", "8", "--pool-size", "4",
          "--workers", "0", "--no-progress", "--val-every", "3", "--sample-every", "3"])
    return run


def test_train_writes_both_directions(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["method"] == "cyclegan" and cfg["pool_size"] == 4 and cfg["lambda_identity"] == 0.5
    assert (run_dir / "AtoB.onnx").exists() and (run_dir / "BtoA.onnx").exists()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"val/cycle_A_l1", "val/cycle_B_l1"} <= set(rows[-1])


def test_predict_by_direction_keeps_the_size(run_dir, tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (97, 130, 3), dtype=np.uint8)).save(src)
    main(["predict", str(run_dir), str(src), "--direction", "BtoA", "--out", str(tmp_path / "out")])
    out = Image.open(tmp_path / "out" / "in.png")
    assert out.size == (130, 97)
    expected = translate.load(run_dir / "BtoA.onnx")(Image.open(src))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    # a run with two generators needs the direction
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["predict", str(run_dir / "checkpoints" / "latest.pt"), str(src), "--out", str(tmp_path / "o2")])
    assert e.value.code == 2 and "--direction" in capsys.readouterr().err


def test_export_and_evaluate_by_direction(run_dir, tiny_pairs, tmp_path, capsys):
    main(["export", str(run_dir), "--direction", "BtoA", "--out", str(tmp_path / "x.onnx")])
    assert "max abs diff" in capsys.readouterr().out
    assert translate.load(tmp_path / "x.onnx").metadata["direction"] == "BtoA"
    results = {}
    for direction in ("AtoB", "BtoA"):
        main(["evaluate", str(run_dir), "--direction", direction, "--data", str(tiny_pairs), "--split", "test",
              "--quiet", "--compact"])
        results[direction] = json.loads(capsys.readouterr().out)
    assert results["AtoB"]["count"] == 4 and results["AtoB"]["direction"] == "AtoB"
    assert results["AtoB"]["l1"] != results["BtoA"]["l1"]
