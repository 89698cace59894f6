"""Batch conversion on Ray Data: names kept, corrupt files reported, resumable, same pixels as predict."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from .conftest import tiny_multimodal_onnx, tiny_onnx

ray = pytest.importorskip("ray")

OLD = 1_000_000_000  # an mtime no conversion run can produce


@pytest.fixture(scope="module", autouse=True)
def _s3_environment_before_ray(s3_server):
    """moto's AWS environment set before this module's Ray starts: Ray's workers keep the environment they started
    with, and the convert actors of the s3:// tests read and write the bucket through it."""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    path.write_bytes(tiny_onnx("unet_32", seed=3))
    return path


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)).save(src / "sub" / "b.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8), "RGBA").save(src / "sub" / "deeper" / "c.png")
    Image.fromarray(rng.integers(0, 256, (25, 25), dtype=np.uint8), "L").save(src / "sub" / "deeper" / "gray.png")
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16 + i, 24, 3), dtype=np.uint8)).save(src / "sub" / f"m{i}.png")
    (src / "sub" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (src / "notes.txt").write_text("not an image, not converted")
    return src


GOOD = sorted(["a.png", "sub/b.png", "sub/deeper/c.png", "sub/deeper/gray.png"] + [f"sub/m{i}.png" for i in range(4)])


def _outputs(root, suffix=".png"):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*" + suffix))


def _predict(model, src, out, fmt="png"):
    """What `translate predict` writes for the same folder (it exits 1 for the corrupt file)."""
    from translate_cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["predict", str(model), str(src), "--out", str(out), "--format", fmt])
    assert e.value.code == 1


def test_interrupted_run_resumes_without_redoing_files_and_matches_predict(local_ray, model, folder, tmp_path,
                                                                          monkeypatch):
    from serving import convert as convert_module
    from serving import folder_lock
    from serving.convert import SUMMARY_NAME, convert

    out = tmp_path / "out"
    seen, workers = [], []
    real_stop = convert_module.stop_workers

    def stop_and_record(registry, timeout=30.0):  # who ran, to check they are gone
        workers.extend(pid for _, _, pid in ray.get(registry.list.remote()))
        return real_stop(registry, timeout)

    monkeypatch.setattr(convert_module, "stop_workers", stop_and_record)

    def stop_after_first(path, error):
        seen.append(path)
        raise KeyboardInterrupt  # as Ctrl-C in the middle of the run, other files in flight

    with pytest.raises(KeyboardInterrupt):
        convert(model, folder, out, workers=2, progress=False, on_result=stop_after_first, batch_size=1)
    assert len(seen) == 1
    # every worker process of that run has exited before convert returned: nothing of it can write now
    # (an actor that had not registered yet had not started work, and refuses to once it finds the run ended)
    assert workers and not [pid for pid in workers if folder_lock.process_alive(pid)]
    assert not (out / folder_lock.LOCK_NAME).exists()  # the folder is free at once
    assert not list(out.rglob(".*.tmp.*"))  # and the interrupted run's half files are gone
    first = _outputs(out)
    assert first and set(first) <= set(GOOD)
    if first == GOOD:  # a slow driver consumed its first result after the actors had done everything: take one back
        (out / first.pop()).unlink()
    left = out / next(n for n in GOOD if n not in first)  # a killed writer's half file next to an output to do
    left.parent.mkdir(parents=True, exist_ok=True)
    (left.parent / f".{left.stem}.x1y2.tmp.png").write_bytes(b"half a file")
    for name in first:  # mark what the interrupted run finished
        os.utime(out / name, (OLD, OLD))

    summary = convert(model, folder, out, workers=2, progress=False)  # at once, as a user re-running would
    assert _outputs(out) == GOOD and not list(out.rglob(".*.tmp.*"))  # no half files left
    assert all((out / name).stat().st_mtime == OLD for name in first)  # finished files were not redone
    assert summary.total == 9 and summary.skipped == len(first) and summary.written == 8 - len(first)
    assert [f["path"] for f in summary.failed] == [str(folder / "sub" / "bad.png")]
    assert "not a readable image" in summary.failed[0]["reason"]
    on_disk = json.loads((out / SUMMARY_NAME).read_text())
    assert on_disk["failed"] == summary.failed and on_disk["written"] == summary.written

    # the same bytes as `translate predict` on the same folder
    reference = tmp_path / "predicted"
    _predict(model, folder, reference)
    assert _outputs(reference) == GOOD
    for name in GOOD:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert Image.open(out / "sub/deeper/c.png").mode == "RGBA"

    # a third run has nothing left to do
    again = convert(model, folder, out, workers=2, progress=False)
    assert again.written == 0 and again.skipped == 8 and len(again.failed) == 1
    assert all((out / name).stat().st_mtime == OLD for name in first)


def test_a_folder_of_rasters_converts_georeferenced_resumably_and_counts_tiles(local_ray, model, tmp_path, capsys):
    import rasterio
    from rasterio.transform import from_origin

    from serving.convert import convert
    from translate.predictor import Predictor
    from translate.raster import RasterOptions, translate_raster
    from translate.tiling import TileConfig

    rng = np.random.default_rng(7)
    src = tmp_path / "in"
    (src / "north").mkdir(parents=True)
    transforms = {}
    for rel, (h, w) in {"north/n1.tif": (90, 130), "south.tiff": (70, 64)}.items():
        transforms[rel] = from_origin(600000.0 + w, 5200000.0, 0.25, 0.25)
        a = rng.integers(300, 3000, (4, h, w)).astype(np.uint16)
        a[:, :5] = 0
        with rasterio.open(src / rel, "w", driver="GTiff", width=w, height=h, count=4, dtype="uint16",
                           crs="EPSG:32631", transform=transforms[rel], nodata=0, photometric="MINISBLACK") as ds:
            ds.write(a)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(src / "north" / "photo.png")
    tiling = TileConfig(threshold=0, tile=64, overlap=32)  # tile even these small rasters
    options = RasterOptions(bands="3,2,1")
    out = tmp_path / "out"
    summary = convert(model, src, out, workers=1, progress=True, raster=options, tiling=tiling)
    assert summary.written == 3 and not summary.failed
    assert _outputs(out, ".tif") == ["north/n1.tif", "south.tif"] and _outputs(out) == ["north/photo.png"]
    err = capsys.readouterr().err
    predictor = Predictor(model, tiling=tiling)
    tiles = 0
    for rel, name in (("north/n1.tif", "north/n1.tif"), ("south.tiff", "south.tif")):
        translate_raster(predictor, src / rel, tmp_path / "ref.tif", options, model=str(model))
        plan = predictor.tiler.last_plan
        tiles += plan.count * plan.passes
        with rasterio.open(out / name) as got, rasterio.open(tmp_path / "ref.tif") as ref:
            assert got.crs.to_epsg() == 32631 and got.transform == transforms[rel]
            assert got.tags() == ref.tags() and got.tags()["TRANSLATE_BANDS"] == "3,2,1"
            np.testing.assert_array_equal(got.read(), ref.read())  # the same pixels as predict
            assert (got.read(4)[:5] == 0).all()
    assert f"{tiles}/{tiles}" in err  # the tile bar, next to the file bar
    again = convert(model, src, out, workers=1, progress=False, raster=options, tiling=tiling)
    assert again.written == 0 and again.skipped == 3


def test_two_runs_on_one_folder_are_refused(model, folder, tmp_path):
    from serving.convert import convert
    from serving.folder_lock import FolderLock
    from translate.errors import ConfigError

    out = tmp_path / "out"
    other = FolderLock(out)
    other.acquire()  # a live run (this process) owns the folder
    try:
        with pytest.raises(ConfigError, match=rf"being written by another run \(pid {os.getpid()}"):
            convert(model, folder, out, workers=1, progress=False)
        assert not (out / "a.png").exists()
    finally:
        other.release()


def test_cli_jpg_with_more_workers_than_cpus(local_ray, model, folder, tmp_path, capsys):
    from translate_cli.main import main

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:  # 3 actors on 2 CPUs: fractional CPUs, no deadlock
        main(["convert", str(model), str(folder), str(out), "--workers", "3", "--format", "jpg", "--quiet"])
    assert e.value.code == 1  # one file failed
    err = capsys.readouterr()
    assert "bad.png" in err.err and "wrote 8 images" in err.out
    jpgs = [n.replace(".png", ".jpg") for n in GOOD]
    assert _outputs(out, ".jpg") == jpgs
    reference = tmp_path / "predicted"
    _predict(model, folder, reference, fmt="jpg")
    for name in jpgs:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_stored_version_is_converted_from_an_s3_store(local_ray, s3_server, model, folder, tmp_path, capsys):
    """The driver reads the version through the store (verified); the actors get its bytes from Ray."""
    from serving.convert import convert
    from serving.store import ModelStore, NotFoundError
    from translate_cli.main import main

    from .conftest import S3_BUCKET

    url = s3_server.new_url(S3_BUCKET, "convert")
    store = ModelStore(url)
    store.register("maps", model)
    store.register("maps", tiny_onnx("unet_32", seed=4))  # not promoted: NAME alone means v0001
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["convert", "maps", str(folder), str(out), "--store", url, "--workers", "1", "--quiet"])
    assert e.value.code == 1 and "wrote 8 images" in capsys.readouterr().out  # bad.png failed, as from a file
    summary = json.loads((out / "convert_summary.json").read_text())
    assert summary["model"] == f"maps@v0001 in {url}"
    reference = tmp_path / "predicted"
    _predict(model, folder, reference)
    for name in GOOD:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    with pytest.raises(NotFoundError, match="no version 'v0009'"):
        convert("maps@v0009", folder, tmp_path / "out2", store=url)


def test_s3_to_s3_resumes_from_what_the_output_prefix_holds(local_ray, s3_server, model, folder, tmp_path):
    """Input and output prefixes in object storage: an interrupted run leaves whole objects only, the next one
    skips the outputs it finds there, the bad file is named by its URL, and the pixels are predict's."""
    from serving.convert import SUMMARY_NAME, convert
    from translate import object_storage

    from .conftest import S3_BUCKET

    src, out = s3_server.new_url(S3_BUCKET, "convert-in"), s3_server.new_url(S3_BUCKET, "convert-out")
    for path in folder.rglob("*"):
        if path.is_file():
            object_storage.put_file(path, f"{src}/{path.relative_to(folder).as_posix()}")

    def stop_after_first(path, error):
        if not error:  # the first output written (bad.png's error may come first)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(model, src, out, workers=1, progress=False, on_result=stop_after_first, batch_size=1)
    before = {k for k in object_storage.list_files(out) if k != SUMMARY_NAME}
    assert before and before <= set(GOOD)
    if before == set(GOOD):  # a slow driver consumed its first result after the actor had done everything
        gone = sorted(before)[-1]
        object_storage.remove(f"{out}/{gone}")
        before.discard(gone)
    summary = convert(model, src, out, workers=1, progress=False)
    assert summary.skipped == len(before) and summary.written == len(GOOD) - len(before) and summary.total == 9
    assert summary.failed == [{"path": f"{src}/sub/bad.png", "reason": summary.failed[0]["reason"]}]
    assert f"{src}/sub/bad.png" in summary.failed[0]["reason"]
    stored = json.loads(object_storage.read_bytes(f"{out}/{SUMMARY_NAME}"))
    assert stored["written"] == summary.written and stored["out_dir"] == out
    reference = tmp_path / "predicted"
    _predict(model, folder, reference)
    assert sorted(k for k in object_storage.list_files(out) if k != SUMMARY_NAME) == GOOD
    for name in GOOD:
        assert object_storage.read_bytes(f"{out}/{name}") == (reference / name).read_bytes(), name


def test_samples_are_written_by_index_with_the_same_codes_for_every_input(local_ray, folder, tmp_path, capsys):
    from translate.predictor import Predictor
    from translate_cli.main import main

    model = tmp_path / "multimodal.onnx"
    model.write_bytes(tiny_multimodal_onnx(seed=1))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["convert", str(model), str(folder), str(out), "--samples", "3", "--seed", "5", "--workers", "1",
              "--quiet"])
    assert e.value.code == 1  # bad.png
    names = sorted(n.replace(".png", f"_{i}.png") for n in GOOD for i in range(3))
    assert _outputs(out) == names
    p = Predictor(model)  # the same codes as predict draws from the seed, for every input
    a = np.asarray(Image.open(folder / "a.png"))
    for i, expected in enumerate(p.translate_samples(a, p.latents(3, seed=5))):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"a_{i}.png")), expected)
    assert not np.array_equal(np.asarray(Image.open(out / "a_0.png")), np.asarray(Image.open(out / "a_1.png")))


def test_bad_arguments_are_typed_errors(model, folder, tmp_path):
    from serving.convert import convert
    from translate.errors import ConfigError, DataError, ModelError

    with pytest.raises(DataError, match="no such folder"):
        convert(model, tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ConfigError, match="--format"):
        convert(model, folder, tmp_path / "out", fmt="gif")
    with pytest.raises(ModelError, match="nope.onnx"):
        convert(tmp_path / "nope.onnx", folder, tmp_path / "out")
    with pytest.raises(ConfigError, match="--samples: must be a whole number from 1 to 16, got 17"):
        convert(model, folder, tmp_path / "out", samples=17)
    with pytest.raises(ConfigError, match="--samples: .* a one-answer model .* ask for 1 sample"):
        convert(model, folder, tmp_path / "out", samples=2)


def test_sigterm_stops_the_cli_cleanly(model, tmp_path):
    """`docker stop` / systemd send SIGTERM: the run ends as on Ctrl-C, its folder free and clean."""
    import signal
    import subprocess
    import sys
    import time

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(1)
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(src / f"{i:02d}.png")
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "translate_cli.main", "convert", str(model), str(src), str(out),
                             "--workers", "1", "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.png")):  # the run is writing
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert not (out / ".convert.lock").exists() and not list(out.rglob(".*.tmp.*"))
    done = _outputs(out)
    assert 0 < len(done) < 60
    summary = json.loads((out / "convert_summary.json").read_text())
    assert summary["written"] <= len(done) and summary["total"] == 60
