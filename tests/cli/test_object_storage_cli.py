"""`translate data pair` and `translate evaluate` on data in object storage (the tests' S3 server): the same set and
the same scores as from a folder."""
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import S3_BUCKET
from translate import object_storage
from translate_cli.main import main


def _photos(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")


def test_pair_and_evaluate_from_a_bucket_as_from_a_folder(s3_server, tmp_path, capsys):
    from tests.serving.conftest import tiny_onnx

    photos, url = tmp_path / "photos", s3_server.new_url(S3_BUCKET, "photos")
    _photos(photos)
    for p in sorted(photos.iterdir()):
        object_storage.put_file(p, f"{url}/{p.name}")
    pairs_url = s3_server.new_url(S3_BUCKET, "pairs")
    main(["data", "pair", "edges", str(photos), str(tmp_path / "pairs"), "--size", "32", "--no-progress"])
    main(["data", "pair", "edges", url, pairs_url, "--size", "32", "--no-progress"])
    assert f"{url}/broken.jpg" in capsys.readouterr().err  # named, skipped
    local = sorted(p.relative_to(tmp_path / "pairs").as_posix() for p in (tmp_path / "pairs").rglob("*.png"))
    assert sorted(k for k in object_storage.list_files(pairs_url) if k.endswith(".png")) == local
    for rel in local:
        assert object_storage.read_bytes(f"{pairs_url}/{rel}") == (tmp_path / "pairs" / rel).read_bytes(), rel
    summary = json.loads(object_storage.read_bytes(f"{pairs_url}/dataset.json"))
    assert summary["out"] == pairs_url and summary["kind"] == "edges" and summary["photos"] == url
    # written again: allowed (ours); a prefix holding something else is refused
    main(["data", "pair", "edges", url, pairs_url, "--size", "32", "--no-progress"])
    other = s3_server.new_url(S3_BUCKET, "other")
    object_storage.put_bytes(f"{other}/notes.txt", b"not ours")
    with pytest.raises(SystemExit) as e:
        main(["data", "pair", "edges", url, other, "--size", "32", "--no-progress"])
    assert e.value.code == 2 and f"already holds objects ({other}/notes.txt)" in capsys.readouterr().err
    assert object_storage.list_files(other) == {"notes.txt": 8}

    model = tmp_path / "model.onnx"
    model.write_bytes(tiny_onnx())
    object_storage.put_file(model, f"{pairs_url}/model.onnx")
    capsys.readouterr()
    main(["evaluate", str(model), "--data", str(tmp_path / "pairs"), "--split", "train", "--quiet", "--compact"])
    from_disk = json.loads(capsys.readouterr().out)
    main(["evaluate", f"{pairs_url}/model.onnx", "--data", pairs_url, "--split", "train", "--quiet", "--compact"])
    from_bucket = json.loads(capsys.readouterr().out)
    assert from_bucket["count"] == from_disk["count"] > 0
    assert from_bucket["per_image"] == from_disk["per_image"]
