"""The `translate` command as a user runs it: data -> train -> export -> predict -> evaluate."""
import json

import numpy as np
import pytest
from PIL import Image

from translate_cli.main import main


def run(capsys, *argv):
    main([str(a) for a in argv])
    return capsys.readouterr()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    main(["data", "make", "maps", str(root / "maps"), "--count", "12", "--size", "32", "--seed", "1"])
    main(["train", "pix2pix", "--data", str(root / "maps"), "--out", str(root / "run"), "--steps", "4",
          "--size", "32", "--load-size", "36", "--netG", "unet_32", "--ngf", "8", "--ndf", "8",
          "--workers", "0", "--no-progress", "--val-every", "2", "--sample-every", "2"])
    return root


def test_train_writes_a_complete_run(trained):
    run_dir = trained / "run"
    assert (run_dir / "model.onnx").exists() and (run_dir / "checkpoints" / "latest.pt").exists()
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["netG"] == "unet_32" and cfg["steps"] == 4 and cfg["lr"] == 2e-4


def test_resume_extends_a_finished_run(trained, capsys):
    out = run(capsys, "train", "pix2pix", "--resume", trained / "run", "--steps", "6", "--no-progress")
    assert "run directory" in out.out
    rows = [json.loads(x) for x in (trained / "run" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 6


def test_export_prints_the_parity(trained, capsys):
    out = run(capsys, "export", trained / "run", "--out", trained / "m.onnx")
    assert "max abs diff" in out.out and (trained / "m.onnx").exists()


def test_predict_keeps_names_and_sizes(trained, capsys):
    src = trained / "in"
    (src / "sub").mkdir(parents=True)
    Image.new("RGB", (45, 31), (90, 120, 60)).save(src / "a.png")
    Image.new("L", (17, 40), 128).save(src / "sub" / "b.jpg")
    run(capsys, "predict", trained / "m.onnx", src, "--out", trained / "out")
    a, b = Image.open(trained / "out" / "a.png"), Image.open(trained / "out" / "sub" / "b.png")
    assert a.size == (45, 31) and b.size == (17, 40)
    # the same pixels through a checkpoint, a run directory and the ONNX file
    run(capsys, "predict", trained / "run" / "checkpoints" / "latest.pt", src / "a.png", "--out", trained / "out2")
    np.testing.assert_array_equal(np.asarray(a), np.asarray(Image.open(trained / "out2" / "a.png")))


def test_evaluate_prints_json(trained, capsys):
    out = run(capsys, "evaluate", trained / "m.onnx", "--data", trained / "maps", "--split", "test", "--quiet")
    res = json.loads(out.out)
    assert res["count"] == len(res["per_image"]) >= 1 and {"l1", "psnr", "ssim"} <= set(res)


@pytest.mark.parametrize("argv,needle", [
    (["train", "pix2pix", "--data", "/nonexistent", "--steps", "1"], "/nonexistent"),
    (["predict", "/nonexistent.onnx", "x.png", "--out", "o"], "/nonexistent.onnx"),
    (["train", "pix2pix", "--data", "DATA", "--steps", "1", "--netG", "unet_30"], "netG"),
])
def test_bad_input_is_one_line_and_exit_2(trained, capsys, argv, needle):
    argv = [str(trained / "maps") if a == "DATA" else a for a in argv]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error:") and needle in err and len(err.splitlines()) == 1


def test_data_make_offers_the_registered_kinds(tmp_path, monkeypatch, capsys):
    from translate.datasets import KINDS, DatasetKind

    def flat_pair(rng, size):
        return np.full((size, size, 3), 10, np.uint8), np.full((size, size, 3), 240, np.uint8)

    # one registry line is all a new set needs to be offered by `translate data make`
    monkeypatch.setitem(KINDS, "flat", DatasetKind("flat", a="dark", b="light", pair=flat_pair))
    with pytest.raises(SystemExit) as e:
        main(["data", "make", "--help"])
    assert e.value.code == 0 and "{maps,sketches,flat}" in capsys.readouterr().out
    summary = json.loads(run(capsys, "data", "make", "flat", tmp_path / "flat", "--count", "3", "--size", "16").out)
    assert summary["kind"] == "flat" and (summary["A"], summary["B"]) == ("dark", "light")
    assert np.asarray(Image.open(tmp_path / "flat" / "train" / "00000.png"))[0, :, 0].tolist() == [10] * 16 + [240] * 16
    monkeypatch.delitem(KINDS, "flat")
    with pytest.raises(SystemExit) as e:
        main(["data", "make", "flat", str(tmp_path / "again")])
    assert e.value.code == 2 and "invalid choice: 'flat'" in capsys.readouterr().err


def test_every_commands_help_prints(capsys):
    """--help of every command and sub-command (argparse formats help texts with %: a "95 %" must not break it)."""
    import argparse

    from translate_cli.main import build_parser

    def commands(parser, prefix=()):
        yield prefix
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from commands(sub, (*prefix, name))

    seen = list(commands(build_parser()))
    assert ("data", "pair") in seen and ("train", "gan") in seen and ("demo",) in seen
    for argv in seen:
        with pytest.raises(SystemExit) as e:
            main([*argv, "--help"])
        assert e.value.code == 0, argv
        assert capsys.readouterr().out.startswith("usage: translate"), argv
