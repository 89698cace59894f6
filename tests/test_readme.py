"""Every command README.md shows runs here, shortened (fewer steps, smaller images and networks), in the README's
order in one folder, as a new user would type them: the README cannot drift from the code.

The commands are read from the README's ``bash`` and ``python`` code blocks. :data:`TABLE` says how each one is
shortened (:class:`Run`), or which test covers it when it needs a running service or object storage
(:class:`Covered`), or that it only sets up the shell (:class:`Shell`). A command the table does not know fails
the test: add it to the table when you add it to the README.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from PIL import Image

from translate_cli.main import main

ROOT = Path(__file__).resolve().parents[1]
# tiny networks and images for every trainer: what "shortened" means for the image-to-image commands
TINY_PIX2PIX = ("--size", "32", "--netG", "unet_32", "--ngf", "8", "--ndf", "8", "--workers", "0", "--no-progress",
                "--val-every", "2", "--sample-every", "2")
TINY_GAN = ("--points", "2000", "--eval-samples", "200", "--no-progress")


@dataclass(frozen=True)
class Run:
    """Run the command with these flags' values replaced (each must be in the README's command) and these added;
    ``before``: commands the README assumes already happened; ``exit``: the status it must exit with, if any."""

    set: dict[str, str] = field(default_factory=dict)
    add: tuple[str, ...] = ()
    before: tuple[tuple[str, ...], ...] = ()
    exit: int | None = None


@dataclass(frozen=True)
class Covered:
    """Not run here: ``by`` names the test (file::function) that runs it, and ``why`` says why not here."""

    by: str
    why: str


@dataclass(frozen=True)
class Shell:
    """A shell line that only sets things up for the commands after it."""

    why: str


SERVICE = "needs a running service: the test starts the same app on a local Ray"
S3 = "needs object storage: the test runs it against a moto S3 server"
RASTER = "needs a GeoTIFF: the test writes one with rasterio (CRS, transform, nodata) and reads the result back"
RAY_TRAIN = "starts processes on Ray Train: the test runs the same training on a local Ray"

TABLE: dict[str, Run | Covered | Shell] = {
    "make demo": Covered("tests/cli/test_demo.py::test_the_demo_trains_registers_and_reuses_both_models",
                         "`translate demo` with a tiny budget and tiny sets; `make` only installs first"),
    "make test": Covered("tests/test_layers.py::test_the_layer_contracts_are_kept",
                         "this suite is `make test`; with the layer contracts, which that test checks"),
    "translate data make maps maps/ --count 400 --size 256 --seed 0": Run({"--count": "12", "--size": "32"}),
    "translate data make sketches sketches/": Run(add=("--count", "12", "--size", "32")),
    "translate data pair edges photos/ pairs/ --size 256": Run({"--size": "32"}),
    "translate train pix2pix --data maps/ --out runs/maps --steps 20000 --batch-size 1": Run(
        {"--steps": "2"}, TINY_PIX2PIX),
    "translate train pix2pix --resume runs/maps": Run(add=("--steps", "3", "--no-progress")),
    "translate train pix2pix --help": Run(exit=0),
    "translate export runs/maps --out maps.onnx": Run(),
    "translate predict maps.onnx aerial1.png photos/ --out translated/": Run(),
    "translate evaluate maps.onnx --data maps/ --split test": Run(add=("--quiet",)),
    "translate train cyclegan --data horse2zebra/ --out runs/h2z": Run(add=(
        "--steps", "2", "--size", "32", "--load-size", "36", "--netG", "resnet_1blocks", "--ngf", "4", "--ndf", "4",
        "--pool-size", "2", "--workers", "0", "--no-progress")),
    "translate predict runs/h2z --direction BtoA zebra.jpg --out out/": Run(),
    "translate data pair edges my_photos/ my_pairs/ --size 128": Run({"--size": "32"}),
    "translate train pix2pix --data my_pairs/ --preset sketches --steps 3000 --out runs/my-sketches": Run(
        {"--steps": "2"}, TINY_PIX2PIX),
    "translate export runs/my-sketches --out my-sketches.onnx --register sketches --store demo/models": Run(),
    "translate models promote sketches v0002 --store demo/models": Run(),
    "translate serve --store demo/models": Covered(
        "tests/serving/test_service.py::test_upload_comes_back_equal_to_the_predictor", SERVICE),
    "translate data pair gray photos/ colourise/": Run(add=("--size", "32")),
    "translate data pair downscale photos/ superres/ --factor 4": Run(add=("--size", "32")),
    "translate data pair mask photos/ inpaint/": Run(add=("--size", "32")),
    "translate train pix2pix --data maps/ --out runs/maps2 --batch-size 2 --processes 2": Covered(
        "tests/training/test_distributed.py::test_two_processes_train_the_run_of_one_at_twice_the_batch", RAY_TRAIN),
    "translate train pix2pix --resume runs/maps2 --processes 4": Covered(
        "tests/training/test_distributed.py::test_a_run_killed_mid_way_resumes_exactly_and_on_another_process_count",
        RAY_TRAIN),
    "ray start --head --port 6379 ...; translate train cyclegan --data h2z/ --processes 8 --address HEAD:6379": Covered(
        "tests/training/test_distributed_cluster.py::test_training_on_a_two_node_cluster_stops_cleanly_on_sigterm",
        "needs a Ray cluster: the test starts one of two nodes"),
    "translate train pix2pix --data maps/ --out runs/maps-fp32 --steps 20000 --no-amp": Run(
        {"--steps": "2"}, TINY_PIX2PIX),
    "translate predict maps.onnx photos/ --out translated/ --threads 1 --no-spinning": Run(),
    "translate convert maps.onnx aerials/ maps_out/ --workers 2": Covered(
        "tests/serving/test_convert.py::test_cli_jpg_with_more_workers_than_cpus", "starts Ray Data"),
    "translate train gan --data ring8 --gan-mode wgangp": Run(add=("--steps", "20", *TINY_GAN)),
    "translate train gan --data grid25 --gan-mode wgangp": Run(add=("--steps", "20", *TINY_GAN)),
    "translate train gan --data digits --conditional": Run(add=(
        "--steps", "6", "--ngf", "8", "--ndf", "8", "--classifier-steps", "30", *TINY_GAN)),
    "translate train gan --help": Run(exit=0),
    "translate evaluate runs/gan-digits-001": Run(add=("--samples", "200")),
    "translate evaluate runs/gan-faces-001 --inception weights-inception-2015-12-05-6726825d.pth": Covered(
        "tests/translate/gan/test_networks.py::test_inception_features_load_offline_from_a_weights_file",
        "needs the user's Inception weights file (nothing downloads)"),
    "translate sample runs/gan-digits-001 --n 64 --class 3 --truncation 0.7 --out threes.png": Run(),
    "translate edit runs/gan-digits-001 --toward 7 --out toward7.png": Run(),
    "translate export runs/maps --out maps.onnx --register maps": Run(),
    "translate models list": Run(),
    # the README's user has registered a second version by then
    "translate models promote maps v0002": Run(before=(
        ("models", "register", "maps", "maps.onnx", "--checkpoint", "runs/maps"),)),
    "translate serve --store models --port 8000": Covered(
        "tests/serving/test_service.py::test_upload_comes_back_equal_to_the_predictor", SERVICE),
    "curl -F image=@aerial.png http://127.0.0.1:8000/v1/models/maps/translate -o map.png": Covered(
        "tests/serving/test_service.py::test_upload_comes_back_equal_to_the_predictor", SERVICE),
    "curl -H Accept: image/jpeg --data-binary @aerial.png "
    "http://127.0.0.1:8000/v1/models/maps/translate?version=v0001 -o map.jpg": Covered(
        "tests/serving/test_service.py::test_jpeg_when_the_client_asks_for_it", SERVICE),
    "translate retrain maps --data new_pairs/ --steps 200": Run({"--steps": "2"}, ("--quiet",)),
    "TRANSLATE_RETRAIN_TOKEN=secret translate serve ...": Covered(
        "tests/serving/test_service.py::test_retraining_needs_the_token", SERVICE),
    "curl -H Authorization: Bearer secret --data-binary @pairs.zip "
    "http://127.0.0.1:8000/v1/models/maps/retrain": Covered(
        "tests/serving/test_service.py::test_retraining_needs_the_token", SERVICE),
    "curl http://127.0.0.1:8000/v1/jobs/<job id>": Covered(
        "tests/serving/test_retrain.py::test_retrain_promotes_a_better_version_and_reports_progress",
        "a job's status, as the route answers it"),
    "translate predict maps.onnx scene.tif --out maps/ --bands 3,2,1": Covered(
        "tests/cli/test_cli.py::test_predict_a_multiband_16_bit_geotiff_keeps_its_position", RASTER),
    "translate predict maps.onnx ortho.tif --out maps/ --cog": Covered(
        "tests/translate/test_raster.py::test_cog_output_and_bytes_in_and_out", RASTER),
    "translate convert maps.onnx tiles/ maps_out/": Covered(
        "tests/serving/test_convert.py::test_a_folder_of_rasters_converts_georeferenced_resumably_and_counts_tiles",
        "starts Ray Data on a folder of GeoTIFFs the test writes"),
    "gdalinfo maps/scene.tif": Shell("GDAL's own tool, to look at the result; the tests read it back with rasterio"),
    "curl -F image=@aerial-4096.jpg http://127.0.0.1:8000/v1/models/maps/translate": Covered(
        "tests/serving/test_service.py::test_a_4096_aerial_photo_over_http_is_the_same_size_and_equal_to_translate_predict",
        SERVICE),
    "curl http://127.0.0.1:8000/v1/translations/4f0c...": Covered(
        "tests/serving/test_service.py::test_a_4096_aerial_photo_over_http_is_the_same_size_and_equal_to_translate_predict",
        SERVICE),
    "curl http://127.0.0.1:8000/v1/translations/4f0c.../result -o map-4096.png": Covered(
        "tests/serving/test_service.py::test_a_4096_aerial_photo_over_http_is_the_same_size_and_equal_to_translate_predict",
        SERVICE),
    "curl -X DELETE http://127.0.0.1:8000/v1/translations/4f0c...": Covered(
        "tests/serving/test_service.py::test_a_small_image_as_a_job_gives_the_same_pixels_and_can_be_deleted", SERVICE),
    "export AWS_PROFILE=models": Shell("the credentials of the storage commands below"),
    "translate export runs/maps --out maps.onnx --register maps --store s3://my-models/translate": Covered(
        "tests/serving/test_store_object.py::test_cli_on_s3_as_a_new_user_runs_it", S3),
    "translate serve --store s3://my-models/translate": Covered(
        "tests/serving/test_service_s3.py::test_a_promotion_from_another_process_reaches_the_replicas_without_a_failed_request",
        S3),
    "translate models promote maps v0002 --store s3://my-models/translate": Covered(
        "tests/serving/test_store_object.py::test_cli_on_s3_as_a_new_user_runs_it", S3),
    "translate convert maps aerials/ maps_out/ --store s3://my-models/translate": Covered(
        "tests/serving/test_convert.py::test_a_stored_version_is_converted_from_an_s3_store", S3),
    "translate retrain maps --data new_pairs/ --store s3://my-models/translate": Covered(
        "tests/serving/test_retrain_s3.py::test_retrain_and_promote_through_an_s3_store", S3),
}

# the README's Python blocks, by their first line: replacements that shorten them (each must apply)
PYTHON: dict[str, list[tuple[str, str]]] = {
    "import numpy as np": [
        ('Pix2PixConfig(data="maps", out="runs/maps", steps=2000)',
         'Pix2PixConfig(data="maps", out="runs/maps-api", steps=2, size=32, netG="unet_32", ngf=8, ndf=8, '
         'workers=0, progress=False)'),
    ],
}


def readme_commands(text: str) -> list[str]:
    """The shell commands of the README's bash blocks (continued lines joined, comments dropped), in order."""
    commands = []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, re.S):
        if lang == "bash":
            for line in re.sub(r"\\\n\s*", " ", body).splitlines():
                tokens = shlex.split(line, comments=True)
                if tokens:
                    commands.append(" ".join(tokens))
    return commands


def readme_python(text: str) -> list[str]:
    return [body for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, re.S) if lang == "python"]


README = (ROOT / "README.md").read_text()


def test_the_table_knows_every_readme_command_and_no_other():
    commands = readme_commands(README)
    unknown = [c for c in commands if c not in TABLE]
    assert not unknown, f"README.md commands this test does not know how to shorten (add them to TABLE): {unknown}"
    gone = set(TABLE) - set(commands)
    assert not gone, f"TABLE lists commands README.md no longer shows: {gone}"
    assert sorted(b.splitlines()[0] for b in readme_python(README)) == sorted(PYTHON)
    assert len(commands) > 40  # the parser found the README's blocks


def test_every_covering_test_exists():
    for command, entry in TABLE.items():
        if isinstance(entry, Covered):
            path, name = entry.by.split("::")
            assert f"def {name}(" in (ROOT / path).read_text(), f"{command!r}: {entry.by} does not exist"


def shortened(command: str, run: Run) -> list[str]:
    tokens = shlex.split(command)
    assert tokens[0] == "translate", command
    argv = tokens[1:]
    for flag, value in run.set.items():
        assert flag in argv, f"{command!r} has no {flag} to shorten"
        argv[argv.index(flag) + 1] = value
    return argv + list(run.add)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder holding what the README's user has before typing its commands: photos, an aerial photo, an
    unpaired horse2zebra set, new pairs, and the demo's model store."""
    from tests.serving.conftest import tiny_onnx
    from translate.datasets import make_dataset, make_pair

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRANSLATE_STORE", raising=False)
    for folder in ("photos", "my_photos"):
        Path(folder).mkdir()
        for i in range(5):
            Image.fromarray(make_pair("sketches", i, size=48, seed=1)[1]).save(f"{folder}/photo{i}.png")
        Image.fromarray(make_pair("sketches", 9, size=60, seed=1)[1]).save(f"{folder}/photo9.jpg")
    aerial = Image.fromarray(make_pair("maps", 0, size=40, seed=2)[0])
    for name in ("aerial1.png", "aerial.png", "x.png"):
        aerial.save(name)
    for side, colour in (("trainA", (150, 110, 60)), ("trainB", (40, 40, 40))):
        Path("horse2zebra", side).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (40, 40), tuple(c + 10 * i for c in colour)).save(f"horse2zebra/{side}/{i}.jpg")
    Image.new("RGB", (30, 20), (240, 240, 240)).save("zebra.jpg")
    make_dataset("maps", "new_pairs", count=10, size=32, seed=5, progress=False)
    from serving.store import ModelStore

    ModelStore("demo/models").register("sketches", tiny_onnx())  # what `make demo` left: sketches v0001
    before = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(before)  # the mixtures' preset trains on one thread


def test_every_readme_command_runs_shortened(workspace, capsys):
    ran = []
    for command in readme_commands(README):
        entry = TABLE[command]
        if not isinstance(entry, Run):
            continue
        for argv in entry.before:
            main(list(argv))
        argv = shortened(command, entry)
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code
        captured = capsys.readouterr()
        expected = 0 if entry.exit is None else entry.exit
        assert code == expected, f"{command!r} as {argv}: exit {code}\n{captured.err[-2000:]}"
        ran.append(command)
    for body in readme_python(README):
        code = body
        for old, new in PYTHON[body.splitlines()[0]]:
            assert old in code, f"the README's Python block no longer has {old!r}"
            code = code.replace(old, new)
        exec(compile(code, "README.md", "exec"), {})
    # what the commands made is what the README says they make
    assert Path("maps.onnx").is_file() and Path("translated/aerial1.png").is_file()
    assert len(list(Path("translated").glob("photo*.png"))) == 6 and Path("out/zebra.png").is_file()
    assert json.loads(Path("pairs/dataset.json").read_text())["kind"] == "edges"
    for folder in ("pairs", "my_pairs", "colourise", "superres", "inpaint"):
        assert sum(json.loads(Path(folder, "dataset.json").read_text())["counts"].values()) == 6
    assert json.loads(Path("runs/my-sketches/config.json").read_text())["preset"] == "sketches"
    for data, run in (("ring8", "runs/gan-ring8-001"), ("grid25", "runs/gan-grid25-001")):
        assert json.loads(Path(run, "config.json").read_text())["preset"] == data
    assert Path("threes.png").is_file() and Path("toward7.png").is_file() and Path("runs/maps-api/model.onnx").is_file()
    from serving.store import ModelStore

    assert ModelStore("demo/models").current("sketches") == "v0002"
    assert ModelStore("models").current("maps") in ("v0002", "v0003")  # promoted; retrained, kept if no worse
    assert len(ran) > 25
