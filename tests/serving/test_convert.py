"""Batch conversion on Ray Data: names kept, corrupt files reported, resumable, same pixels as predict."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from .conftest import tiny_onnx

ray = pytest.importorskip("ray")

OLD = 1_000_000_000  # an mtime no conversion run can produce


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for this module (reused if the session already has one)."""
    own = not ray.is_initialized()
    if own:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if own:
        ray.shutdown()


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


def test_interrupted_run_resumes_without_redoing_files_and_matches_predict(local_ray, model, folder, tmp_path):
    from serving.convert import SUMMARY_NAME, convert

    out = tmp_path / "out"
    seen = []

    def stop_after_first(path, error):
        seen.append(path)
        raise KeyboardInterrupt  # as Ctrl-C in the middle of the run

    with pytest.raises(KeyboardInterrupt):
        convert(model, folder, out, workers=2, progress=False, on_result=stop_after_first, batch_size=1)
    assert len(seen) == 1
    first = _outputs(out)
    assert first and set(first) < set(GOOD)  # stopped before the end
    left = out / next(n for n in GOOD if n not in first)  # a killed writer's half file next to an output to do
    left.parent.mkdir(parents=True, exist_ok=True)
    (left.parent / f".{left.stem}.x1y2.tmp.png").write_bytes(b"half a file")
    for name in first:  # mark what the interrupted run finished
        os.utime(out / name, (OLD, OLD))

    summary = convert(model, folder, out, workers=2, progress=False)
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


def test_bad_arguments_are_typed_errors(model, folder, tmp_path):
    from serving.convert import convert
    from translate.errors import ConfigError, DataError, ModelError

    with pytest.raises(DataError, match="no such folder"):
        convert(model, tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ConfigError, match="--format"):
        convert(model, folder, tmp_path / "out", fmt="gif")
    with pytest.raises(ModelError, match="nope.onnx"):
        convert(tmp_path / "nope.onnx", folder, tmp_path / "out")
