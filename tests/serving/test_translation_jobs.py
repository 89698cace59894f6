"""The translation jobs' store (no Ray), in a folder and on S3: what runs and waits bounded by slots that
replicas over the same jobs_dir share, finished jobs not counted, expired after their time and evicted beyond the
disk budget (least recently fetched first), a job whose replica stopped reported failed and its slot taken back,
results whole or absent."""
import os
import threading

import numpy as np
import pytest

from serving.store import NotFoundError
from serving.translation_jobs import RETRY_WHEN_BUSY_S, STALE_S, JobGone, JobsFull, JobStore, public_view
from tests.conftest import S3_BUCKET

RECORD = {"model": "maps", "version": "v0001", "width": 5, "height": 4, "format": "PNG"}


def image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)


class Clock:
    """Unix time that moves only when told (the storage's own times stay real)."""

    def __init__(self):
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["folder", "s3"])
def jobs_dir(request, tmp_path):
    if request.param == "s3":
        return request.getfixturevalue("s3_server").new_url(S3_BUCKET, "jobs")
    return str(tmp_path / "jobs")


@pytest.fixture
def clock():
    return Clock()


def read_result(store: JobStore, job_id: str, **kw) -> bytes:
    with store.open_result(store.get(job_id), **kw) as f:
        return f.read()


def test_a_job_goes_from_queued_to_done_with_its_input_and_result(jobs_dir, clock):
    store = JobStore(jobs_dir, max_jobs=4, ttl_s=60, clock=clock)
    alpha = np.full((4, 5), 7, np.uint8)
    job = store.create(RECORD, image(), alpha)
    other = JobStore(jobs_dir, max_jobs=4, ttl_s=60, clock=clock)  # another ingress replica over the same jobs_dir
    assert other.get(job["id"])["state"] == "queued" and other.ids() == [job["id"]]
    got, got_alpha = store.load_input(job["id"])  # the replica that took the upload runs it
    np.testing.assert_array_equal(got, image())
    np.testing.assert_array_equal(got_alpha, alpha)
    store.update(job["id"], state="running", done=3, total=12)
    view = public_view(other.get(job["id"]), 60)
    assert (view["status"], view["progress"], view["tiles_done"], view["tiles_total"]) == ("running", 0.25, 3, 12)
    assert "result" not in view and view["url"] == f"/v1/translations/{job['id']}"
    store.finish(job["id"], b"\x89PNG...", "png", media_type="image/png")
    done = other.get(job["id"])
    assert done["state"] == "done" and done["result_bytes"] == 7 and read_result(other, job["id"]) == b"\x89PNG..."
    assert not (store.files.input_folder(job["id"]) / "input.npy").exists()  # the upload goes once translated
    view = public_view(done, 60, "/prefix")
    assert view["result"] == f"/prefix/v1/translations/{job['id']}/result" and view["expires"] == done["finished"] + 60


def test_finished_jobs_do_not_count_and_a_full_store_says_when_a_running_job_should_end(jobs_dir, clock):
    store = JobStore(jobs_dir, max_jobs=2, ttl_s=100, clock=clock)
    finished = store.create(RECORD, image())
    store.finish(finished["id"], b"x", "png")
    queued, running = store.create(RECORD, image(1)), store.create(RECORD, image(2))  # the finished one takes no slot
    with pytest.raises(JobsFull) as full:
        store.create(RECORD, image(3))
    assert full.value.retry_after == RETRY_WHEN_BUSY_S  # nothing running says how far it is
    store.update(running["id"], state="running", started=clock.now - 30, done=1, total=4)
    with pytest.raises(JobsFull, match="2 translation jobs are queued or running") as full:
        store.create(RECORD, image(3))
    assert full.value.retry_after == 90  # 30 s for a quarter of its tiles: 90 s for the rest
    store.delete(queued["id"])  # a deleted job gives its slot back
    waiting = store.create(RECORD, image(3))
    store.fail(waiting["id"], 500, "internal_error", "a bug")  # so does one that ended, failed or done
    store.finish(running["id"], b"y", "png")
    store.create(RECORD, image(4))
    store.create(RECORD, image(5))
    assert len(store.ids()) == 5 and store.get(finished["id"])["state"] == "done"


def test_replicas_over_the_same_jobs_dir_admit_no_more_than_max_jobs_together(jobs_dir, clock):
    stores = [JobStore(jobs_dir, max_jobs=3, ttl_s=100, clock=clock) for _ in range(4)]
    made, refused, go = [], [], threading.Barrier(8)

    def create(store):
        go.wait()
        try:
            made.append(store.create(RECORD, image())["id"])
        except JobsFull:
            refused.append(store)

    threads = [threading.Thread(target=create, args=(stores[i % 4],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 3 and len(refused) == 5
    assert sorted(stores[0].get(i)["slot"] for i in made) == [0, 1, 2]


def test_a_lost_job_is_reported_failed_and_its_slot_taken_back(jobs_dir, clock):
    store = JobStore(jobs_dir, max_jobs=1, ttl_s=100, clock=clock)
    lost = store.create(RECORD, image())
    store.update(lost["id"], state="running")
    store.touch([lost["id"]])
    with pytest.raises(JobsFull):
        store.create(RECORD, image(1))  # alive: it keeps its slot
    assert store.get(lost["id"])["state"] == "running"
    clock.now += STALE_S + 2  # its replica stopped touching it
    replacement = store.create(RECORD, image(1))
    assert replacement["slot"] == 0
    failed = store.get(lost["id"])
    assert failed["state"] == "failed" and failed["error"] == "job_lost" and "send the image again" in failed["detail"]
    clock.now -= STALE_S + 2  # back to the replacement's own time (its heartbeat is the storage's real time)
    assert store.get(replacement["id"])["state"] == "queued"
    assert store.files.read(".slots/0").decode() == replacement["id"]  # the lost job's end left the slot to it
    with pytest.raises(JobsFull):
        store.create(RECORD, image(2))


def age(folder, seconds: float) -> None:
    """Move back the times of a job's files in a folder jobs_dir by ``seconds`` (a bucket's are its clock's)."""
    for f in folder.iterdir():
        stamp = f.stat().st_mtime - seconds
        os.utime(f, (stamp, stamp))


def test_finished_jobs_expire_and_running_ones_stay(tmp_path):
    store = JobStore(tmp_path, max_jobs=4, ttl_s=100)
    old, recent, running = (store.create(RECORD, image(i)) for i in range(3))
    for job in (old, recent):
        store.finish(job["id"], b"x", "png")
    age(tmp_path / old["id"], 101)
    age(tmp_path / recent["id"], 99)
    assert store.sweep() == [old["id"]]
    with pytest.raises(NotFoundError, match="kept for 100 s"):
        store.get(old["id"])
    assert {recent["id"], running["id"]} == set(store.ids())


def test_every_finished_job_expires_on_object_storage_too(jobs_dir, clock):
    store = JobStore(jobs_dir, max_jobs=4, ttl_s=100, clock=clock)
    done, failed = store.create(RECORD, image(0)), store.create(RECORD, image(1))
    store.finish(done["id"], b"x", "png")
    store.fail(failed["id"], 500, "internal_error", "a bug")
    assert store.sweep() == []
    clock.now += 102
    assert sorted(store.sweep()) == sorted([done["id"], failed["id"]]) and store.ids() == []


def test_results_beyond_the_disk_budget_go_fetched_first_and_the_newest_stays(jobs_dir, clock):
    store = JobStore(jobs_dir, max_jobs=8, ttl_s=1000, disk_budget_bytes=250, clock=clock)
    jobs = [store.create(RECORD, image(i)) for i in range(3)]
    store.finish(jobs[0]["id"], b"0" * 100, "png")
    store.finish(jobs[1]["id"], b"1" * 100, "png")
    assert read_result(store, jobs[1]["id"]) == b"1" * 100  # fetched: the first to go
    assert read_result(store, jobs[0]["id"], fetched=False) == b"0" * 100  # read, not a client's fetch
    store.finish(jobs[2]["id"], b"2" * 100, "png")  # 300 bytes: over the budget
    assert store.ids() == sorted([jobs[0]["id"], jobs[2]["id"]])
    with pytest.raises(NotFoundError, match="disk budget"):
        store.get(jobs[1]["id"])
    big = store.create(RECORD, image(4))
    store.finish(big["id"], b"B" * 400, "jpg")  # alone over the budget: kept (nobody has it yet), the rest go
    assert store.ids() == [big["id"]] and read_result(store, big["id"]) == b"B" * 400


def test_the_oldest_unfetched_result_goes_before_newer_ones(tmp_path, clock):
    """Finish order by the files' times (a folder's, set here; a bucket's are its clock's, to the second)."""
    store = JobStore(tmp_path, max_jobs=8, ttl_s=1000, disk_budget_bytes=250, clock=clock)
    jobs = [store.create(RECORD, image(i)) for i in range(3)]
    for seconds, job in zip((10, 30), jobs[:2], strict=True):
        store.finish(job["id"], b"r" * 100, "png")
        age(tmp_path / job["id"], seconds)
    store.finish(jobs[2]["id"], b"r" * 100, "png")  # over the budget: the one finished 30 s ago goes
    assert store.ids() == sorted([jobs[0]["id"], jobs[2]["id"]])


def test_a_deleted_job_stops_its_writer_and_ids_are_allow_listed(jobs_dir, clock):
    store = JobStore(jobs_dir, max_jobs=1, ttl_s=100, clock=clock)
    job = store.create(RECORD, image())
    store.delete(job["id"])
    for write in (lambda: store.update(job["id"], done=1, total=2), lambda: store.finish(job["id"], b"x", "png"),
                  lambda: store.load_input(job["id"])):
        with pytest.raises(JobGone):
            write()
    assert store.ids() == [] and not store.files.listing()
    store.delete(job["id"], missing_ok=True)
    with pytest.raises(NotFoundError):
        store.delete(job["id"])
    for bad in ("../etc", "0" * 31, job["id"].upper()):
        with pytest.raises(NotFoundError):
            store.get(bad)


def test_half_made_jobs_are_swept_once_nobody_writes_them(tmp_path, clock):
    store = JobStore(tmp_path, max_jobs=2, ttl_s=100, clock=clock)
    job = store.create(RECORD, image())
    (tmp_path / job["id"] / "job.json").unlink()  # a replica that died while it created the job
    store.sweep()
    assert (tmp_path / job["id"]).is_dir()  # maybe still being written
    clock.now += STALE_S + 1
    store.sweep()
    assert not (tmp_path / job["id"]).exists()
    assert set(store.files.listing()) == {".slots/0"}
