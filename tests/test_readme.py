"""Every command README.md shows runs here as written, in the README's order in one folder, as a new user types them:
the README cannot drift from the code.

The commands are read from the README's ``bash`` and ``python`` code blocks. :data:`TABLE` says how each one runs:

- :class:`Run`: a `translate` command, in this process, shortened only by flags the README shows as optional (fewer
  steps, smaller images and networks, on the built-in data sets);
- :class:`Serve`: a `translate serve` line, started as its own process as a user starts it (on a free port: the
  suite cannot own port 8000 on a shared machine); it serves the lines after it until its block ends, then is
  stopped with Ctrl-C and must exit 0. :class:`Serving`: a serve line whose service that one is;
- :class:`Curl`: a curl line, run with curl itself against that service and the README's own files, real-sized (a
  256 x 256 aerial photo of the built-in maps set, a 4096 x 4096 one, a zip of 80 pairs). What changes is the
  address (the served port), the job ids the README elides (from the answers of the lines before) and
  `--silent --show-error --write-out` to read the status;
- :class:`NotRun`: not run here, and why (a cluster's address, a file of the user's, a tool that is not this
  project's); :class:`Shell`: a line that only sets up the user's shell.

A README command the table does not know fails the test, and so does an entry for a command the README no longer
shows, or a runnable entry that did not run.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.serving.conftest import aerial_photo, free_port, tiny_onnx
from tests.serving.serve_process import ServeProcess
from translate.engines import cpu_has_bf16
from translate_cli.main import main

ROOT = Path(__file__).resolve().parents[1]
# tiny networks and images for every trainer: what "shortened" means for the image-to-image commands
TINY_PIX2PIX = ("--size", "32", "--netG", "unet_32", "--ngf", "8", "--ndf", "8", "--workers", "0", "--no-progress",
                "--val-every", "2", "--sample-every", "2")
TINY_GAN = ("--points", "2000", "--eval-samples", "200", "--no-progress")
TINY_CUT = ("--steps", "2", "--size", "32", "--load-size", "36", "--netG", "resnet_1blocks", "--ngf", "4", "--ndf", "4",
            "--netF-nc", "8", "--num-patches", "16", "--workers", "0", "--no-progress")
README_URL = "http://127.0.0.1:8000"  # where the README's curl lines find the service
PORT = "{port}"  # in a Serve entry: the free port the service is started on
S3_STORE = "s3://my-models/translate"


@dataclass(frozen=True)
class Run:
    """Run the command with these flags' values replaced (each must be in the README's command) and these added;
    ``before``: commands the README assumes already happened; ``exit``: the status it must exit with, if any."""

    set: dict[str, str] = field(default_factory=dict)
    add: tuple[str, ...] = ()
    before: tuple[tuple[str, ...], ...] = ()
    exit: int | None = None


@dataclass(frozen=True)
class Serve:
    """Start the `translate serve` line as its own process, flags replaced and added as in :class:`Run` (``PORT``:
    the free port), with ``env`` added to its environment; ``current``: the promoted versions it must list."""

    set: dict[str, str] = field(default_factory=dict)
    add: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Serving:
    """A serve line the service started by ``by`` (a :class:`Serve` line of the same block) already is: the same
    flags (the README's ``...``), and this line's environment, which that entry sets."""

    by: str


@dataclass(frozen=True)
class Curl:
    """Run with curl against the served process: ``status`` is the answer's; ``until``: (JSON field, the value that
    ends, the value that fails) to run it again until then, as the README's user does ("once done");
    ``sets``: (the placeholder the README writes for an id, the JSON field of this answer that gives it)."""

    status: int
    until: tuple[str, str, str] | None = None
    sets: tuple[str, str] | None = None


@dataclass(frozen=True)
class NotRun:
    """Not run here: ``why``."""

    why: str


@dataclass(frozen=True)
class Shell:
    """A shell line that only sets things up for the commands after it."""

    why: str


TABLE: dict[str, Run | Serve | Serving | Curl | NotRun | Shell] = {
    "make demo": NotRun("creates .venv with pip (from the network), then trains both demo models for 4 minutes on 2 "
                        "CPUs and serves them until Ctrl-C: beyond this suite's time; `translate demo` is its last "
                        "step"),
    "make test": NotRun("it is this suite (after creating .venv with pip, from the network)"),
    "translate data make maps maps/ --count 400 --size 256 --seed 0": Run({"--count": "12", "--size": "32"}),
    "translate data make sketches sketches/": Run(add=("--count", "12", "--size", "32")),
    "translate data pair edges photos/ pairs/ --size 256": Run({"--size": "32"}),
    "translate train pix2pix --data maps/ --out runs/maps --steps 20000 --batch-size 1": Run(
        {"--steps": "2"}, TINY_PIX2PIX),
    "translate train pix2pix --resume runs/maps": Run(add=("--steps", "3", "--no-progress")),
    "translate train pix2pix --help": Run(exit=0),
    "translate export runs/maps --out maps.onnx": Run(),
    "translate export runs/maps --out maps-latest.onnx --checkpoint latest": Run(),
    "translate export runs/maps --out maps-u8.onnx --input uint8-nhwc": Run(),
    "translate predict maps.onnx aerial1.png photos/ --out translated/": Run(),
    # bf16 where this CPU has it (avx512_bf16 or AMX); elsewhere the same command in fp32, which it would refuse
    "translate predict maps.onnx photos/ --out translated/ --engine openvino --precision bf16": Run(
        {} if cpu_has_bf16() else {"--precision": "fp32"}),
    "translate evaluate maps.onnx --data maps/ --split test": Run(add=("--quiet",)),
    "translate train cyclegan --data horse2zebra/ --out runs/h2z": Run(add=(
        "--steps", "2", "--size", "32", "--load-size", "36", "--netG", "resnet_1blocks", "--ngf", "4", "--ndf", "4",
        "--pool-size", "2", "--workers", "0", "--no-progress")),
    "translate predict runs/h2z --direction BtoA zebra.jpg --out out/": Run(),
    "translate train cut --data horse2zebra/ --out runs/h2z-cut": Run(add=TINY_CUT),
    "translate train cut --mode fastcut --data horse2zebra/ --out runs/h2z-fastcut": Run(add=TINY_CUT),
    "translate predict runs/h2z-fastcut horse.jpg --out out/": Run(),
    "translate data pair edges my_photos/ my_pairs/ --size 128": Run({"--size": "32"}),
    "translate train pix2pix --data my_pairs/ --preset sketches --steps 3000 --out runs/my-sketches": Run(
        {"--steps": "2"}, TINY_PIX2PIX),
    "translate export runs/my-sketches --out my-sketches.onnx --register sketches --store demo/models": Run(),
    "translate models promote sketches v0002 --store demo/models": Run(),
    "translate serve --store demo/models": Serve(add=("--port", PORT), current={"sketches": "v0002"}),
    "translate train bicyclegan --data sketches/ --out runs/bicycle --steps 3000": Run(
        {"--steps": "2"}, (*TINY_PIX2PIX, "--nef", "4", "--e-blocks", "3")),
    "translate predict runs/bicycle drawing.png --out variants/ --samples 4 --seed 7": Run(),
    "translate predict runs/bicycle drawings/ --out one-code/ --z 0.5,-1,0,0,1,0,0.3,-0.2": Run(),
    "translate convert runs/bicycle/model.onnx drawings/ variants_out/ --samples 4": Run(),
    "translate data pair gray photos/ colourise/": Run(add=("--size", "32")),
    "translate data pair downscale photos/ superres/ --factor 4": Run(add=("--size", "32")),
    "translate data pair mask photos/ inpaint/": Run(add=("--size", "32")),
    # two scales of a 32 px image need a shallower PatchGAN than the 70x70 one
    "translate train pix2pix --data maps/ --out runs/maps-recipe --ema-decay 0.999 --diffaugment "
    "color,translation,cutout --num-d 2 --feature-matching 10 --gan-mode hinge --spectral-norm --lr-d 4e-4": Run(
        add=("--steps", "2", *TINY_PIX2PIX, "--netD", "n_layers", "--n-layers-D", "2")),
    "translate train pix2pix --data maps/ --out runs/maps2 --batch-size 2 --processes 2": Run(
        add=("--steps", "2", *TINY_PIX2PIX)),
    "translate train pix2pix --resume runs/maps2 --processes 1": Run(add=("--steps", "3", "--no-progress")),
    "export RAY_ADDRESS=HEAD:6379": Shell("points the commands after it at a Ray cluster; here they run on this "
                                          "machine, against the test's S3 server"),
    "translate data pair edges s3://my-data/photos/ s3://my-data/pairs/ --size 256": Run({"--size": "32"}),
    "translate train pix2pix --data s3://my-data/pairs --out s3://my-data/runs/edges --processes 8 --steps 20000": Run(
        {"--processes": "1", "--steps": "2"}, TINY_PIX2PIX),
    "translate train pix2pix --resume s3://my-data/runs/edges": Run(add=("--steps", "3", "--no-progress")),
    "translate evaluate s3://my-data/runs/edges/model.onnx --data s3://my-data/pairs --split test": Run(
        add=("--quiet",)),
    "translate convert s3://my-data/runs/edges/model.onnx s3://my-data/photos/ s3://my-data/edges/ --workers 8": Run(
        {"--workers": "1"}),
    "ray start --head --port 6379 ...; translate train cyclegan --data h2z/ --processes 8 --address HEAD:6379": NotRun(
        "needs a Ray cluster (its head's address) with 8 CPUs"),
    "translate train pix2pix --data maps/ --out runs/maps-fp32 --steps 20000 --no-amp": Run(
        {"--steps": "2"}, TINY_PIX2PIX),
    "translate predict maps.onnx photos/ --out translated/ --threads 1 --no-spinning": Run(),
    "translate convert maps.onnx aerials/ maps_out/ --workers 2": Run(),
    "translate train gan --data ring8 --gan-mode wgangp": Run(add=("--steps", "20", *TINY_GAN)),
    "translate train gan --data grid25 --gan-mode wgangp": Run(add=("--steps", "20", *TINY_GAN)),
    "translate train gan --data digits --conditional": Run(add=(
        "--steps", "6", "--ngf", "8", "--ndf", "8", "--classifier-steps", "30", *TINY_GAN)),
    "translate train gan --help": Run(exit=0),
    "translate evaluate runs/gan-digits-001": Run(add=("--samples", "200")),
    "translate evaluate runs/gan-faces-001 --inception weights-inception-2015-12-05-6726825d.pth": NotRun(
        "needs the user's Inception weights file (nothing downloads) and a run on their face images"),
    "translate sample runs/gan-digits-001 --n 64 --class 3 --truncation 0.7 --out threes.png": Run(),
    "translate edit runs/gan-digits-001 --toward 7 --out toward7.png": Run(),
    "translate train gan --data ring8 --gan-mode contrastive --contrastive-n 8": Run(add=("--steps", "20", *TINY_GAN)),
    "translate train vae --data digits --latent-dim 2 --out runs/vae-digits": Run(add=(
        "--steps", "20", "--size", "8", "--ngf", "8", "--ndf", "8", "--no-progress")),
    "translate sample runs/vae-digits --grid --out plane.png": Run(),
    "translate evaluate runs/vae-digits": Run(),
    "translate export runs/maps --out maps.onnx --register maps": Run(),
    "translate models list": Run(),
    # the README's user has registered a second version by then
    "translate models promote maps v0002": Run(before=(
        ("models", "register", "maps", "maps.onnx", "--checkpoint", "runs/maps"),)),
    # with the token of the block's second serve line (`...` = these flags): one start serves every curl line
    "translate serve --store models --port 8000": Serve(
        {"--port": PORT}, env={"TRANSLATE_RETRAIN_TOKEN": "secret"}, current={"maps": "v0002"}),
    "curl -F image=@aerial.png http://127.0.0.1:8000/v1/models/maps/translate -o map.png": Curl(200),
    "curl -H Accept: image/jpeg --data-binary @aerial.png "
    "http://127.0.0.1:8000/v1/models/maps/translate?version=v0001 -o map.jpg": Curl(200),
    "curl -F image=@aerial-4096.jpg http://127.0.0.1:8000/v1/models/maps/translate": Curl(202, sets=("4f0c...", "id")),
    "curl http://127.0.0.1:8000/v1/translations/4f0c...": Curl(200, until=("status", "done", "failed")),
    "curl http://127.0.0.1:8000/v1/translations/4f0c.../result -o map-4096.png": Curl(200),
    "curl -X DELETE http://127.0.0.1:8000/v1/translations/4f0c...": Curl(204),
    "translate retrain maps --data new_pairs/ --steps 200": Run({"--steps": "2"}, ("--quiet",)),
    "TRANSLATE_RETRAIN_TOKEN=secret translate serve ...": Serving("translate serve --store models --port 8000"),
    "curl -H Authorization: Bearer secret --data-binary @pairs.zip "
    "http://127.0.0.1:8000/v1/models/maps/retrain": Curl(202, sets=("<job id>", "job_id")),
    "curl http://127.0.0.1:8000/v1/jobs/<job id>": Curl(200, until=("state", "succeeded", "failed")),
    "translate predict maps.onnx scene.tif --out maps/ --bands 3,2,1": Run(),
    "translate predict maps.onnx ortho.tif --out maps/ --cog": Run(),
    "translate convert maps.onnx tiles/ maps_out/": Run(),
    "gdalinfo maps/scene.tif": NotRun("GDAL's own tool (gdal-bin), not installed with this project; the test reads "
                                      "what it would show with rasterio"),
    "export AWS_PROFILE=models": Shell("the user's credentials; here the S3 server's test credentials are in the "
                                       "environment instead"),
    f"translate export runs/maps --out maps.onnx --register maps --store {S3_STORE}": Run(),
    f"translate serve --store {S3_STORE}": Serve(add=("--port", PORT), current={"maps": "v0001"}),
    # the README's user has registered a second version by then
    f"translate models promote maps v0002 --store {S3_STORE}": Run(before=(
        ("models", "register", "maps", "maps.onnx", "--checkpoint", "runs/maps", "--store", S3_STORE),)),
    f"translate convert maps aerials/ maps_out/ --store {S3_STORE}": Run(),
    f"translate retrain maps --data new_pairs/ --store {S3_STORE}": Run(add=("--steps", "2", "--quiet")),
}

# the README's Python blocks, by their first line: replacements that shorten them (each must apply)
PYTHON: dict[str, list[tuple[str, str]]] = {
    "import numpy as np": [
        ('Pix2PixConfig(data="maps", out="runs/maps", steps=2000)',
         'Pix2PixConfig(data="maps", out="runs/maps-api", steps=2, size=32, netG="unet_32", ngf=8, ndf=8, '
         'workers=0, progress=False)'),
    ],
}
RUNS = (Run, Serve, Serving, Curl)  # the entries whose command runs here


def readme_blocks(text: str) -> list[list[tuple[str, list[str]]]]:
    """The README's bash blocks, each a list of (command, its words) (continued lines joined, comments dropped);
    the command is its words joined by spaces (quotes gone), as :data:`TABLE` knows it."""
    blocks = []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, re.S):
        if lang == "bash":
            lines = (shlex.split(line, comments=True) for line in re.sub(r"\\\n\s*", " ", body).splitlines())
            blocks.append([(" ".join(tokens), tokens) for tokens in lines if tokens])
    return blocks


def readme_commands(text: str) -> list[str]:
    return [command for block in readme_blocks(text) for command, _ in block]


def readme_python(text: str) -> list[str]:
    return [body for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, re.S) if lang == "python"]


README = (ROOT / "README.md").read_text()


def test_the_table_knows_every_readme_command_and_no_other():
    commands = readme_commands(README)
    unknown = [c for c in commands if c not in TABLE]
    assert not unknown, f"README.md commands this test does not know how to run (add them to TABLE): {unknown}"
    gone = set(TABLE) - set(commands)
    assert not gone, f"TABLE lists commands README.md no longer shows: {gone}"
    assert sorted(b.splitlines()[0] for b in readme_python(README)) == sorted(PYTHON)
    assert len(commands) > 40  # the parser found the README's blocks
    for block in readme_blocks(README):  # a Serving line names a Serve line before it in its block
        serves = [c for c, _ in block if isinstance(TABLE[c], Serve)]
        for command, _ in block:
            entry = TABLE[command]
            if isinstance(entry, Serving):
                assert entry.by in serves[:1] and serves.index(entry.by) < [c for c, _ in block].index(command)


def shortened(tokens: list[str], set_: dict[str, str], add: tuple[str, ...]) -> list[str]:
    command = " ".join(tokens)
    assert tokens[0] == "translate", command
    argv = tokens[1:]
    for flag, value in set_.items():
        assert flag in argv, f"{command!r} has no {flag} to shorten"
        argv[argv.index(flag) + 1] = value
    return argv + list(add)


def run_cli(argv: list[str], expected: int, capsys) -> None:
    """``translate ARGV`` in this process; the exit status must be ``expected``."""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    assert code == expected, f"translate {' '.join(argv)}: exit {code}\n{capsys.readouterr().err[-2000:]}"


class Served:
    """A README serve line, running as its own process (ServeProcess) in the workspace until its block ends."""

    def __init__(self, command: str, tokens: list[str], entry: Serve, stack: contextlib.ExitStack, log: Path):
        import requests

        self.command, self.env = command, entry.env
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        args = [a.replace(PORT, str(port)) for a in shortened(tokens, entry.set, entry.add)]
        assert args[0] == "serve", command
        self.process = stack.enter_context(ServeProcess(args[1:], log, env={**os.environ, **entry.env},
                                                        cwd=Path.cwd()))
        self.process.wait_started()
        listing = requests.get(self.url + "/v1/models", timeout=120).json()["models"]
        assert {m["name"]: m["current"] for m in listing if m["name"] in entry.current} == entry.current, listing

    def stop(self) -> None:
        assert self.process.stop() == 0, self.process.text()  # Ctrl-C


def run_curl(command: str, tokens: list[str], entry: Curl, served: Served | None, ids: dict[str, str]) -> dict:
    """The curl line, run with curl (again until its ``until``); its last answer's JSON ({} when it has none)."""
    assert served is not None, f"{command!r}: no service is running (a Serve line before it in its block)"
    words = "\0".join(tokens).replace(README_URL, served.url)
    for placeholder, value in ids.items():  # a placeholder may be two words ("<job id>")
        words = words.replace(placeholder.replace(" ", "\0"), value)
    argv = words.split("\0")
    assert argv[0] == "curl" and not [t for t in argv if "8000" in t or "..." in t or "<" in t], argv
    argv[1:1] = ["--silent", "--show-error", "--write-out", "\n%{http_code}"]
    deadline = time.monotonic() + 900  # a hang bound for the lines run until a job ends, not a speed check
    while True:
        done = subprocess.run(argv, capture_output=True, timeout=300)
        assert done.returncode == 0, (argv, done.stderr)
        body, _, status = done.stdout.rpartition(b"\n")
        assert int(status) == entry.status, (command, status, body[-2000:])
        answer = json.loads(body) if body.strip() else {}
        if entry.until is None:
            break
        key, end, failed = entry.until
        assert answer[key] != failed, (command, answer)
        if answer[key] == end:
            break
        assert time.monotonic() < deadline, (command, answer)
        time.sleep(0.5)
    if entry.sets is not None:
        placeholder, key = entry.sets
        ids[placeholder] = answer[key]
    return answer


def write_geotiff(path: Path, bands: np.ndarray, **kw) -> None:
    import rasterio
    from rasterio.transform import from_origin

    count, height, width = bands.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=bands.dtype,
                       crs="EPSG:32633", transform=from_origin(500000, 4100000, 0.5, 0.5), **kw) as ds:
        ds.write(bands)


def pairs_zip() -> bytes:
    """80 aligned A | B pairs of the built-in maps set (128 px sides, JPEG), zipped: about 1.2 MB."""
    from translate.datasets import make_pair

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(80):
            pair = Image.fromarray(np.concatenate(make_pair("maps", i, size=128, seed=11), axis=1))
            jpeg = io.BytesIO()
            pair.save(jpeg, "JPEG", quality=90)
            zf.writestr(f"new-maps/{i:03d}.jpg", jpeg.getvalue())
    return buf.getvalue()


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder holding what the README's user has before typing its commands: photos, drawings, aerial photos (one 256 x 256,
    one 4096 x 4096), GeoTIFFs, an unpaired horse2zebra set, new pairs (a folder and a zip), the demo's model
    store; and an S3-compatible server with the bucket `my-models` (AWS_ENDPOINT_URL, as for any such server)."""
    pytest.importorskip("moto.server")
    from serving.store import ModelStore
    from tests.s3_server import s3_environment
    from translate.datasets import make_dataset, make_pair

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRANSLATE_STORE", raising=False)
    monkeypatch.delenv("TRANSLATE_RETRAIN_TOKEN", raising=False)
    for folder in ("photos", "my_photos"):
        Path(folder).mkdir()
        for i in range(5):
            Image.fromarray(make_pair("sketches", i, size=48, seed=1)[1]).save(f"{folder}/photo{i}.png")
        Image.fromarray(make_pair("sketches", 9, size=60, seed=1)[1]).save(f"{folder}/photo9.jpg")
    Path("drawings").mkdir()
    for i in range(2):
        Image.fromarray(make_pair("sketches", i, size=48, seed=4)[0]).save(f"drawings/drawing{i}.png")
    Image.fromarray(make_pair("sketches", 2, size=48, seed=4)[0]).save("drawing.png")
    aerial = make_pair("maps", 0, size=256, seed=2)[0]
    Image.fromarray(aerial).save("aerial.png")  # what the curl lines upload
    for name in ("aerial1.png", "x.png"):
        Image.fromarray(aerial).resize((40, 40)).save(name)
    aerial_photo(4096).save("aerial-4096.jpg", "JPEG", quality=92)
    Path("pairs.zip").write_bytes(pairs_zip())
    Path("aerials", "sub").mkdir(parents=True)
    for i, name in enumerate(("a.png", "b.jpg", "sub/c.png")):
        Image.fromarray(make_pair("maps", i, size=48, seed=3)[0]).save(f"aerials/{name}")
    rng = np.random.default_rng(3)
    scene = rng.integers(200, 4000, (4, 40, 56), dtype=np.uint16)  # 4 bands of 12-bit values in 16 bits
    scene[:, :, :6] = 0  # a nodata collar
    write_geotiff(Path("scene.tif"), scene, nodata=0)
    write_geotiff(Path("ortho.tif"), np.moveaxis(make_pair("maps", 5, size=64, seed=3)[0], 2, 0))
    Path("tiles").mkdir()
    for i in range(2):
        write_geotiff(Path(f"tiles/t{i}.tif"), np.moveaxis(make_pair("maps", 6 + i, size=40, seed=3)[0], 2, 0))
    for side, colour in (("trainA", (150, 110, 60)), ("trainB", (40, 40, 40))):
        Path("horse2zebra", side).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (40, 40), tuple(c + 10 * i for c in colour)).save(f"horse2zebra/{side}/{i}.jpg")
    Image.new("RGB", (30, 20), (240, 240, 240)).save("zebra.jpg")
    Image.new("RGB", (30, 20), (150, 100, 60)).save("horse.jpg")
    make_dataset("maps", "new_pairs", count=10, size=32, seed=5, progress=False)
    ModelStore("demo/models").register("sketches", tiny_onnx())  # what `make demo` left: sketches v0001
    before = torch.get_num_threads()
    with s3_environment(tmp_path / "node-cache", "my-models", "my-data"):
        from translate import object_storage

        for photo in sorted(Path("photos").iterdir()):  # the photos of the cluster section, in their bucket
            object_storage.put_file(photo, f"s3://my-data/photos/{photo.name}")
        yield tmp_path
    torch.set_num_threads(before)  # the mixtures' preset trains on one thread


def test_every_readme_command_runs_as_written(workspace, capsys):
    ran, answers, ids = [], {}, {}
    logs = workspace / "logs"
    logs.mkdir()
    for block in readme_blocks(README):
        with contextlib.ExitStack() as stack:
            served: Served | None = None
            for command, tokens in block:
                entry = TABLE[command]
                if isinstance(entry, Run):
                    for argv in entry.before:
                        main(list(argv))
                    run_cli(shortened(tokens, entry.set, entry.add), 0 if entry.exit is None else entry.exit, capsys)
                elif isinstance(entry, Serve):
                    assert served is None, f"{command!r}: a second service in one block"
                    served = Served(command, tokens, entry, stack, logs / f"serve-{len(ran)}.log")
                elif isinstance(entry, Serving):
                    assert served is not None and served.command == entry.by, command
                    assign = tokens[:tokens.index("translate")]  # VAR=value ... before the command
                    assert dict(a.split("=", 1) for a in assign) == served.env and tokens[-1] == "...", command
                elif isinstance(entry, Curl):
                    answers[command] = run_curl(command, tokens, entry, served, ids)
                else:
                    continue
                capsys.readouterr()
                ran.append(command)
            if served is not None:
                served.stop()
    for body in readme_python(README):
        code = body
        for old, new in PYTHON[body.splitlines()[0]]:
            assert old in code, f"the README's Python block no longer has {old!r}"
            code = code.replace(old, new)
        exec(compile(code, "README.md", "exec"), {})
    assert sorted(ran) == sorted(c for c, e in TABLE.items() if isinstance(e, RUNS))  # each ran, once

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
    assert json.loads(Path("runs/maps2/config.json").read_text())["processes"] == 1  # resumed on one
    for name, size, fmt in (("map.png", 256, "PNG"), ("map.jpg", 256, "JPEG"), ("map-4096.png", 4096, "PNG")):
        with Image.open(name) as img:
            assert img.size == (size, size) and img.format == fmt, name
    retrained = answers["curl http://127.0.0.1:8000/v1/jobs/<job id>"]
    assert retrained["data"]["train"] + retrained["data"]["val"] == 80
    import rasterio

    with rasterio.open("maps/scene.tif") as ds:  # what gdalinfo shows: CRS, geotransform, alpha for the nodata
        assert ds.crs.to_epsg() == 32633 and ds.transform.a == 0.5 and ds.count == 4
        assert (ds.read(4)[:, :6] == 0).all() and (ds.read(4)[:, 6:] == 255).all()
    with rasterio.open("maps/ortho.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.crs.to_epsg() == 32633
    assert sorted(p.name for p in Path("maps_out").rglob("*") if p.is_file() and p.name != "convert_summary.json") \
        == ["a.png", "b.png", "c.png", "t0.tif", "t1.tif"]
    from serving.store import ModelStore

    assert ModelStore("demo/models").current("sketches") == "v0002"
    assert ModelStore("models").current("maps") == retrained["outcome"]["current_version"]
    assert ModelStore(S3_STORE).current("maps") in ("v0002", "v0003")  # promoted; retrained, kept if no worse
