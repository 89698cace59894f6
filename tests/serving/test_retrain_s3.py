"""Retraining against an S3 store (moto's server): the job fine-tunes from the checkpoint it downloads
from the bucket, and registers and promotes the new version there, where every node sees it."""
from serving.retraining import jobs as retrain
from serving.store import ModelStore

from .conftest import S3_BUCKET, stored
from .test_retrain import NAME, assert_checkpoint_is_the_model


def test_retrain_and_promote_through_an_s3_store(s3_server, pairs, base_run):
    url = s3_server.new_url(S3_BUCKET, "retrain")
    store = ModelStore(url)
    assert store.register(NAME, base_run / "model.onnx", checkpoint=base_run / "checkpoints" / "latest.pt") == "v0001"
    status = retrain.run_retrain(store, NAME, pairs / "train", steps=30, progress=False)
    assert status["state"] == "succeeded", status["error"]
    out = status["outcome"]
    assert out["promoted"] and out["new_version"] == "v0002" and out["new_metric"] < out["current_metric"], out

    other_node = ModelStore(url)  # reads only the bucket
    assert other_node.current(NAME) == "v0002" and other_node.versions(NAME) == ["v0001", "v0002"]
    meta = other_node.meta(NAME, "v0002")
    assert meta["source"] == "retrain" and meta["evaluation"]["compared_with"]["version"] == "v0001"
    assert meta["has_checkpoint"]
    assert_checkpoint_is_the_model(other_node, NAME, "v0002")
    # the job's own files (upload, run, record) are in the store's local work folder, not in the bucket
    assert not [k for k in stored(other_node, NAME) if not k.startswith(("files/", "versions/", "promotions/"))]
    assert (store.root / ".jobs" / f"{status['id']}.json").is_file()
    assert retrain.job_status(status["id"], store)["outcome"] == out
