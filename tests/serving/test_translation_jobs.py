"""The translation jobs' folder (no Ray): bounded in number, expired after their time, a job whose replica
stopped reported failed, results whole or absent, visible to every store over the same folder."""
import json
import os
import time

import numpy as np
import pytest

from serving.store import NotFoundError
from serving.translation_jobs import STALE_S, JobGone, JobsFull, JobStore, public_view

RECORD = {"model": "maps", "version": "v0001", "width": 5, "height": 4, "format": "PNG"}


def image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)


def age(store: JobStore, job_id: str, field: str, seconds: float) -> None:
    """Move a job's recorded time ``field`` back by ``seconds`` (instead of waiting for it)."""
    path = store.folder(job_id) / "job.json"
    job = json.loads(path.read_text())
    job[field] -= seconds
    path.write_text(json.dumps(job))


def test_a_job_goes_from_queued_to_done_with_its_input_and_result(tmp_path):
    store = JobStore(tmp_path, max_jobs=4, ttl_s=60)
    alpha = np.full((4, 5), 7, np.uint8)
    job = store.create(RECORD, image(), alpha)
    other = JobStore(tmp_path, max_jobs=4, ttl_s=60)  # another ingress replica over the same folder
    assert other.get(job["id"])["state"] == "queued"
    got, got_alpha = other.load_input(job["id"])
    np.testing.assert_array_equal(got, image())
    np.testing.assert_array_equal(got_alpha, alpha)
    store.update(job["id"], state="running", done=3, total=12)
    view = public_view(other.get(job["id"]), 60)
    assert (view["status"], view["progress"], view["tiles_done"], view["tiles_total"]) == ("running", 0.25, 3, 12)
    assert "result" not in view and view["url"] == f"/v1/translations/{job['id']}"
    store.finish(job["id"], b"\x89PNG...", "png", media_type="image/png")
    done = other.get(job["id"])
    assert done["state"] == "done" and (other.folder(job["id"]) / "result.png").read_bytes() == b"\x89PNG..."
    assert not (other.folder(job["id"]) / "input.npy").exists()  # the upload goes once translated
    view = public_view(done, 60, "/prefix")
    assert view["result"] == f"/prefix/v1/translations/{job['id']}/result" and view["expires"] == done["finished"] + 60


def test_the_count_is_bounded_and_full_says_when_the_oldest_result_expires(tmp_path):
    store = JobStore(tmp_path, max_jobs=2, ttl_s=100)
    first = store.create(RECORD, image())
    store.finish(first["id"], b"x", "png")
    age(store, first["id"], "finished", 40)  # expires in about 60 s
    store.create(RECORD, image(1))
    with pytest.raises(JobsFull) as full:
        store.create(RECORD, image(2))
    assert 55 <= full.value.retry_after <= 61
    assert len(store.ids()) == 2 and not [p for p in tmp_path.iterdir() if p.name.startswith(".new-")]


def test_finished_jobs_expire_and_running_ones_stay(tmp_path):
    store = JobStore(tmp_path, max_jobs=4, ttl_s=100)
    old, recent, running = (store.create(RECORD, image(i)) for i in range(3))
    for job in (old, recent):
        store.finish(job["id"], b"x", "png")
    age(store, old["id"], "finished", 101)
    assert store.sweep() == [old["id"]]
    with pytest.raises(NotFoundError, match="kept for 100 s"):
        store.get(old["id"])
    assert {recent["id"], running["id"]} == set(store.ids())
    store.create(RECORD, image(4))  # the expired one's place is free


def test_a_job_whose_replica_stopped_is_reported_failed(tmp_path):
    store = JobStore(tmp_path, max_jobs=4, ttl_s=100)
    job = store.create(RECORD, image())
    store.update(job["id"], state="running")
    store.touch([job["id"]])
    assert store.get(job["id"])["state"] == "running"  # alive
    silent = time.time() - STALE_S - 1
    os.utime(store.folder(job["id"]) / "alive", (silent, silent))
    lost = store.get(job["id"])
    assert lost["state"] == "failed" and lost["error"] == "job_lost" and "send the image again" in lost["detail"]


def test_a_deleted_job_stops_its_writer_and_ids_are_allow_listed(tmp_path):
    store = JobStore(tmp_path, max_jobs=4, ttl_s=100)
    job = store.create(RECORD, image())
    store.delete(job["id"])
    for write in (lambda: store.update(job["id"], done=1, total=2), lambda: store.finish(job["id"], b"x", "png"),
                  lambda: store.load_input(job["id"])):
        with pytest.raises(JobGone):
            write()
    assert not list(tmp_path.glob("*/result.png"))
    for bad in ("../etc", "0" * 31, job["id"].upper()):
        with pytest.raises(NotFoundError):
            store.get(bad)
