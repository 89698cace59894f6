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
    assert cfg["netG"] == "unet_32" and cfg["steps"] == 4 and cfg["lr"] == 1.6e-3  # the maps preset's rate


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
    # the same pixels through the checkpoint the export took (a run directory's best, by default) and the ONNX file
    run(capsys, "predict", trained / "run" / "checkpoints" / "best.pt", src / "a.png", "--out", trained / "out2")
    np.testing.assert_array_equal(np.asarray(a), np.asarray(Image.open(trained / "out2" / "a.png")))


def test_predicting_with_an_onnx_file_loads_no_torch(trained):
    """An exported model needs its engine only (auto's, by this CPU's flags): `translate predict model.onnx` starts
    without torch's 2 s and half a gigabyte (on a machine with no NVIDIA driver; with one, torch says whether CUDA
    works)."""
    import os
    import subprocess
    import sys

    from translate.engines import choose
    from translate.predictor import NVIDIA_DEVICE_NODES

    if any(os.path.exists(n) for n in NVIDIA_DEVICE_NODES):
        pytest.skip("an NVIDIA driver is present: asking torch whether CUDA works is the point there")
    Image.new("RGB", (20, 12), (90, 120, 60)).save(trained / "lone.png")
    argv = ["predict", str(trained / "m.onnx"), str(trained / "lone.png"), "--out", str(trained / "out-no-torch")]
    code = (f"import sys; from translate_cli.main import main; main({argv!r}); "
            "print('torch' in sys.modules, 'onnxruntime' in sys.modules, 'openvino' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    engine = choose("auto", device="cpu").engine  # no GPU here
    assert out.split()[-3:] == ["False", str(engine == "onnxruntime"), str(engine == "openvino")]
    assert Image.open(trained / "out-no-torch" / "lone.png").size == (20, 12)


def test_predict_a_multiband_16_bit_geotiff_keeps_its_position(trained, capsys):
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(5)
    bands = rng.integers(200, 4000, (4, 70, 90)).astype(np.uint16)
    bands[:, :, :6] = 0  # a nodata collar
    transform = from_origin(447000.0, 5411000.0, 0.3, 0.3)
    src = trained / "geo" / "scene.tif"
    src.parent.mkdir()
    with rasterio.open(src, "w", driver="GTiff", width=90, height=70, count=4, dtype="uint16", crs="EPSG:25832",
                       transform=transform, nodata=0, photometric="MINISBLACK") as ds:
        ds.write(bands)
    Image.new("RGB", (20, 20), (9, 9, 9)).save(src.parent / "photo.png")
    out = run(capsys, "predict", trained / "m.onnx", src.parent, "--out", trained / "geo_out", "--bands", "3,2,1")
    assert "wrote 2 images" in out.out and (trained / "geo_out" / "photo.png").exists()
    with rasterio.open(trained / "geo_out" / "scene.tif") as ds:  # as a GIS tool would open it
        assert ds.crs.to_epsg() == 25832 and ds.transform == transform and ds.shape == (70, 90)
        assert ds.count == 4 and (ds.read(4)[:, :6] == 0).all() and (ds.read(4)[:, 6:] == 255).all()
        tags = ds.tags()
    assert tags["TRANSLATE_BANDS"] == "3,2,1" and tags["TRANSLATE_MODEL"] == str(trained / "m.onnx")
    assert json.loads(tags["TRANSLATE_STRETCH"])["percentiles"] == [2.0, 98.0]


def test_evaluate_prints_json(trained, capsys):
    out = run(capsys, "evaluate", trained / "m.onnx", "--data", trained / "maps", "--split", "test", "--quiet")
    res = json.loads(out.out)
    assert res["count"] == len(res["per_image"]) >= 1 and {"l1", "psnr", "ssim"} <= set(res)


@pytest.mark.parametrize("argv,needle", [
    (["train", "pix2pix", "--data", "/nonexistent", "--steps", "1"], "/nonexistent"),
    (["predict", "/nonexistent.onnx", "x.png", "--out", "o"], "/nonexistent.onnx"),
    (["predict", "/nonexistent.onnx", "x.tif", "--out", "o", "--bands", "4,3"], "--bands"),
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


def test_help_loads_no_torch_runtime_gdal_or_ray():
    """translate_cli/main.py's promise: the parser (--help, a mistyped flag) imports no torch, ONNX
    Runtime, GDAL or Ray; they load in the handlers that use them, and torch for the parsers of the
    commands whose flags are its options classes (train, export), only when the command line names them."""
    import subprocess
    import sys

    heavy = "('torch', 'onnxruntime', 'ray', 'osgeo', 'rasterio')"
    code = ("import sys; from translate_cli.main import build_parser; "
            "[build_parser(c) for c in ('', 'data', 'predict', 'serve', 'models', 'convert', 'sample', 'retrain')]; "
            f"print(sorted(m for m in {heavy} if m in sys.modules)); "
            "build_parser('train'); "
            f"print(sorted(m for m in {heavy} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "['torch']"]


def test_the_short_parser_lists_every_command_as_the_whole_one_does():
    """Built for one command, the parser still offers every command with the same help."""
    from translate_cli.main import build_parser

    assert build_parser("").format_help() == build_parser().format_help()
    assert build_parser("data").format_help() == build_parser().format_help()
