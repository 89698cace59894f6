"""The object-storage store against a real S3-compatible server (moto's, in its own process): outages,
corrupted objects, lost responses, the local cache, store URLs, and the CLI as a new user runs it.
(The behaviour both backends share is tested in test_store.py, on a folder and on S3.)"""
import json
import os
import time
from types import SimpleNamespace

import pytest

from serving.store import ModelStore, StoreError, object_storage
from serving.store.cache import BlobCache
from translate.errors import ConfigError, ModelError
from translate_cli.main import main

from .conftest import S3_BUCKET, leftovers, stored
from .test_store import assert_slim_copy_of, fake_checkpoint


@pytest.fixture
def s3_url(s3_server):
    return s3_server.new_url(S3_BUCKET)


def test_an_outage_mid_upload_leaves_no_version_and_a_retry_completes(s3_server, s3_url, onnx_a, tmp_path,
                                                                     monkeypatch):
    from tests.s3_server import TcpProxy

    direct = ModelStore(s3_url)
    assert direct.names() == []  # its client exists now, with the server's own address
    proxy = TcpProxy(s3_server.port)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # this store reaches the server through the proxy
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore's own retries, kept short
        store = ModelStore(s3_url)
        ckpt = fake_checkpoint(tmp_path / "latest.pt")
        proxy.cut_when(b"checkpoint.pt")  # the server goes away once the model is up, before the checkpoint
        with pytest.raises(StoreError, match="cannot upload maps checkpoint.pt"):
            store.register("maps", onnx_a, checkpoint=ckpt)
        assert proxy.cut.is_set()
        # nobody sees a version: the manifest is written last and never was
        assert direct.names() == [] and direct.versions("maps") == [] and direct.current("maps") is None
        orphan = leftovers(direct, "maps")
        assert len(orphan) == 1 and stored(direct, "maps") == [f"files/{orphan[0]}/model.onnx"]

        proxy.up()  # the server is back: the same call completes
        assert store.register("maps", onnx_a, checkpoint=ckpt) == "v0001"
        assert direct.versions("maps") == ["v0001"] and direct.current("maps") == "v0001"
        assert direct.model_path("maps").read_bytes() == onnx_a
        assert_slim_copy_of(direct.checkpoint_path("maps"), ckpt)
        # what the failed attempt uploaded is swept once it is old enough; the version's files stay
        assert direct.backend.sweep("maps", older_than_s=3600) == 0
        assert direct.backend.sweep("maps", older_than_s=0) == 1
        assert leftovers(direct, "maps") == [] and direct.model_path("maps").read_bytes() == onnx_a
    finally:
        proxy.close()


def test_a_corrupted_object_is_refused_by_its_checksum_and_never_cached(s3_url, onnx_a, onnx_b, tmp_path):
    store = ModelStore(s3_url)
    store.register("maps", onnx_a)
    store.register("maps", onnx_b)
    backend = store.backend
    entry = backend.manifest("maps", "v0002")["files"]["model.onnx"]
    key = f"{backend.base}/maps/{entry['key']}"
    backend.fs.pipe_file(key, onnx_b[:-16] + bytes(16))  # same size, other bytes: a bit rot or an overwrite
    reader = ModelStore(s3_url)  # another node: nothing cached from the registration
    reader.backend.cache = BlobCache(tmp_path / "node-cache")
    with pytest.raises(ModelError, match="checksum mismatch") as e:
        reader.model_path("maps", "v0002")
    assert "maps/files/" in str(e.value) and "refused" in str(e.value)
    assert reader.backend.cache.files() == []  # nothing of it kept
    with pytest.raises(ModelError, match="checksum mismatch"):  # remembered: not downloaded again at once
        reader.model_path("maps", "v0002")
    assert reader.model_path("maps", "v0001").read_bytes() == onnx_a  # the other version still loads
    backend.fs.rm_file(key)
    reader.backend.cache = BlobCache(tmp_path / "node-cache")
    with pytest.raises(ModelError, match="missing from the store"):
        reader.model_path("maps", "v0002")


def test_a_manifest_write_whose_response_was_lost_keeps_its_number(s3_url, onnx_a, monkeypatch):
    """The manifest PUT lands, the response is lost, the client retries: the retry's If-None-Match fails
    on our own manifest. That is our version, not a number someone else took."""
    store = ModelStore(s3_url)
    fs = store.backend.fs
    real = fs.pipe_file

    def lost_response_then_retry(path, data, **kw):
        if "/versions/" in path:
            real(path, data, **kw)  # it landed ...
        return real(path, data, **kw)  # ... and the retried request finds it there

    monkeypatch.setattr(fs, "pipe_file", lost_response_then_retry)
    assert store.register("maps", onnx_a) == "v0001"
    assert store.register("maps", onnx_a) == "v0002"
    assert store.versions("maps") == ["v0001", "v0002"] and leftovers(store, "maps") == []


def test_promotion_history_is_kept_short(s3_url, onnx_a, onnx_b, monkeypatch):
    monkeypatch.setattr(object_storage, "KEEP_PROMOTIONS", 3)
    store = ModelStore(s3_url)
    store.register("maps", onnx_a)
    store.register("maps", onnx_b)
    for version in ("v0002", "v0001", "v0002", "v0001", "v0002"):
        store.promote("maps", version)
    assert store.backend.promotion_numbers("maps") == [4, 5, 6]
    assert ModelStore(s3_url).current("maps") == "v0002"


def test_a_server_that_ignores_conditional_writes_is_refused(s3_url, onnx_a, monkeypatch):
    store = ModelStore(s3_url)
    fs = store.backend.fs
    real = fs.pipe_file
    monkeypatch.setattr(fs, "pipe_file", lambda path, data, mode="overwrite", **kw: real(path, data, **kw))
    with pytest.raises(StoreError, match="does not support conditional writes"):
        store.register("maps", onnx_a)
    assert store.names() == [] and stored(store, "maps") == []


def test_readers_poll_the_pointer_at_most_as_often_as_allowed(s3_url, onnx_a, onnx_b, monkeypatch):
    from serving.store import model_store

    now = [1000.0]  # the reader's clock, moved by hand: the test cannot be slower than the window
    monkeypatch.setattr(model_store, "time", SimpleNamespace(monotonic=lambda: now[0]))
    writer, reader = ModelStore(s3_url), ModelStore(s3_url, max_staleness_s=0.5)
    writer.register("maps", onnx_a)
    writer.register("maps", onnx_b)
    assert reader.current("maps") == "v0001"
    writer.promote("maps", "v0002")
    now[0] += 0.4
    assert reader.current("maps") == "v0001"  # a read less than max_staleness_s old
    now[0] += 0.2
    assert reader.current("maps") == "v0002"
    assert ModelStore(s3_url, max_staleness_s=5).current("maps") == "v0002"  # a new reader reads afresh


def test_a_nodes_cache_holds_at_most_TRANSLATE_CACHE_MAX_BYTES(s3_url, onnx_a, onnx_b, tmp_path, monkeypatch):
    """As the README tells an operator: $TRANSLATE_CACHE is the node's cache, $TRANSLATE_CACHE_MAX_BYTES its bound,
    least recently used files removed first."""
    writer = ModelStore(s3_url)
    writer.register("maps", onnx_a)
    writer.register("maps", onnx_b)
    monkeypatch.setenv("TRANSLATE_CACHE", str(tmp_path / "node"))
    monkeypatch.setenv("TRANSLATE_CACHE_MAX_BYTES", str(max(len(onnx_a), len(onnx_b)) + 1000))  # room for one
    node = ModelStore(s3_url)  # a replica on another node
    first = node.model_path("maps", "v0001")
    assert first.is_relative_to(tmp_path / "node") and first.read_bytes() == onnx_a
    os.utime(first, (time.time() - 3600,) * 2)  # last used an hour ago
    second = node.model_path("maps", "v0002")
    assert node.backend.cache.files() == [second] and second.read_bytes() == onnx_b  # v0001's file went
    assert node.model_path("maps", "v0001").read_bytes() == onnx_a  # downloaded again when asked for
    assert node.backend.cache.files() == [first]
    monkeypatch.setenv("TRANSLATE_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match="TRANSLATE_CACHE_MAX_BYTES"):
        ModelStore(s3_url)


def test_the_cache_is_bounded_verified_and_shared(tmp_path):
    import hashlib

    blobs = [bytes([i]) * 400 for i in range(3)]
    cache = BlobCache(tmp_path / "c", max_bytes=1000)
    calls = []

    def source(data):
        def download(dst):
            calls.append(data[:1])
            dst.write_bytes(data)
        return download

    paths = [cache.get(hashlib.sha256(b).hexdigest(), len(b), source(b), f"blob{i}") for i, b in enumerate(blobs)]
    assert cache.size() <= 1000 and not paths[0].exists() and paths[1].exists() and paths[2].exists()
    again = BlobCache(tmp_path / "c", max_bytes=1000)  # another replica on the node: no second download
    assert again.get(hashlib.sha256(blobs[2]).hexdigest(), 400, source(b"never"), "blob2") == paths[2]
    assert calls == [b"\x00", b"\x01", b"\x02"]
    with pytest.raises(ModelError, match="checksum mismatch"):
        cache.get(hashlib.sha256(b"expected").hexdigest(), 8, source(b"tampered"), "blob9")
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file() and p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("url,message", [
    ("s3://AKIAXXXX:secret@bucket/models", "credentials do not belong in the store URL"),
    ("s3://bucket/models?endpoint=http://x", "takes no query"),
    ("s3://", "expected s3://BUCKET"),
    ("s3://bucket/../models", "expected s3://BUCKET"),
])
def test_store_urls_are_checked(url, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        ModelStore(url)


def test_a_mistyped_bucket_is_named(s3_server):
    with pytest.raises(StoreError, match="there is no bucket 'no-such-bucket'"):
        ModelStore("s3://no-such-bucket/models").names()


def test_a_missing_storage_package_is_named(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"gs:// object stores need the package gcsfs \(pip install gcsfs\)"):
        ModelStore("gs://bucket/models")


def test_folders_and_file_urls_use_the_folder_store(tmp_path):
    assert ModelStore(f"file://{tmp_path}").url == str(tmp_path.resolve())
    assert ModelStore(tmp_path).url == str(tmp_path.resolve())


def test_cli_on_s3_as_a_new_user_runs_it(s3_url, tmp_path, capsys, monkeypatch):
    ckpt = fake_checkpoint(tmp_path / "latest.pt")
    main(["export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--register", "maps", "--store", s3_url])
    main(["models", "register", "maps", str(tmp_path / "m.onnx"), "--checkpoint", str(ckpt), "--store", s3_url])
    out = capsys.readouterr().out
    assert f"registered maps v0001 in {s3_url} (promoted)" in out and "registered maps v0002" in out
    monkeypatch.setenv("TRANSLATE_STORE", s3_url)  # the same store from the environment
    main(["models", "promote", "maps", "v0002"])
    main(["models", "list", "--json"])
    listing = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert listing[0]["current"] == "v0002" and [v["version"] for v in listing[0]["versions"]] == ["v0001", "v0002"]
    assert listing[0]["versions"][1]["has_checkpoint"] is True
    with pytest.raises(SystemExit) as e:
        main(["models", "delete", "maps", "v0002"])
    assert e.value.code == 2 and "promote another" in capsys.readouterr().err
    main(["models", "delete", "maps", "v0001"])
    main(["models", "list"])
    assert "* v0002" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # an unreachable store is one line and exit status 2
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        main(["models", "list"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"error: {s3_url}: cannot list the models") and err.count("\n") == 1
