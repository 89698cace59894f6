"""Retraining: upload validation, fine-tuning jobs, the promotion rule, job records, the CLI."""
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serving.retraining import jobs, upload
from serving.retraining.jobs import job_status, submit_from_zip
from serving.retraining.upload import UploadLimits
from serving.store import ModelStore
from translate.errors import ConfigError, DataError

NAME = "maps"


def new_store(root, base_run) -> ModelStore:
    store = ModelStore(root)
    assert store.register(NAME, base_run / "model.onnx", checkpoint=base_run / "checkpoints" / "latest.pt") == "v0001"
    return store


@pytest.fixture(scope="module")
def shared_store(base_run, tmp_path_factory):
    """A store for the refusals: they must leave it exactly as it was."""
    return new_store(tmp_path_factory.mktemp("shared") / "store", base_run)


def zip_of(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_folder(folder, prefix="") -> bytes:
    return zip_of({prefix + p.relative_to(folder).as_posix(): p.read_bytes()
                   for p in sorted(folder.rglob("*.png"))})


def png(w=64, h=32, value=128) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (value, 60, 200)).save(buf, "PNG")
    return buf.getvalue()


def assert_checkpoint_is_the_model(store, name, version, base="v0001"):
    """The version's checkpoint holds its model's weights (exported again, it translates as the model does), and
    they are new ones (not the base version's)."""
    import translate
    from translate.predictor import Predictor

    x = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    from_checkpoint = translate.load(store.checkpoint_path(name, version))(x).astype(int)
    assert np.abs(from_checkpoint - Predictor(store.model_path(name, version))(x).astype(int)).max() <= 1
    assert not np.array_equal(from_checkpoint, Predictor(store.model_path(name, base))(x))


def assert_nothing_imported(store):
    hidden = [p for d in (".data", ".runs", ".jobs") if (store.root / d).is_dir() for p in (store.root / d).iterdir()]
    assert hidden == []
    assert store.versions(NAME) == ["v0001"] and store.current(NAME) == "v0001"


def _symlink_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("train/a.png", png())
        link = zipfile.ZipInfo("train/b.png")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    return buf.getvalue()


GOOD = {f"train/{i}.png": png(value=10 * i) for i in range(3)}
BAD_UPLOADS = {
    "zip-slip": (zip_of({**GOOD, "../evil.png": png()}), {}, "../evil.png: unsafe path"),
    "zip-slip inside": (zip_of({**GOOD, "train/../../evil.png": png()}), {}, "evil.png: unsafe path"),
    "absolute path": (zip_of({**GOOD, "/tmp/evil.png": png()}), {}, "/tmp/evil.png: unsafe path"),
    "windows path": (zip_of({**GOOD, "..\\evil.png": png()}), {}, "evil.png: unsafe path"),
    "symbolic link": (_symlink_zip(), {}, "train/b.png: symbolic link"),
    "non-image": (zip_of({**GOOD, "train/notes.txt": b"hello"}), {}, "train/notes.txt: not an image"),
    "image-named text": (zip_of({**GOOD, "train/fake.png": b"hello"}), {}, "train/fake.png: not a readable image"),
    "truncated image": (zip_of({**GOOD, "train/cut.png": png()[:60]}), {}, "train/cut.png: "),
    "corrupt image": (zip_of({**GOOD, "train/bad.png": png()[:40] + b"\0" * 200}), {}, "train/bad.png: "),
    "too narrow": (zip_of({**GOOD, "train/thin.png": png(w=1)}), {}, "train/thin.png: 1x32 is too narrow"),
    "empty zip": (zip_of({}), {}, "upload.zip: no images"),
    "only clutter": (zip_of({"__MACOSX/._a.png": b"x", ".DS_Store": b"x"}), {}, "upload.zip: no images"),
    "not a zip": (b"PK\x03\x04 this is not really a zip", {}, "upload.zip: not a readable zip"),
    "empty upload": (b"", {}, "upload.zip: empty upload"),
    "one pair": (zip_of({"a.png": png()}), {}, "1 pair(s); at least 2"),
    "odd folder": (zip_of({**GOOD, "train/x/y.png": png()}), {}, "train/x/y.png: unexpected location"),
    "mixed layouts": (zip_of({**GOOD, "top.png": png()}), {}, "top.png: images both at the top level"),
    "no train": (zip_of({"val/a.png": png(), "test/b.png": png()}), {}, "without train/"),
    "too many files": (zip_of(GOOD), {"max_files": 2}, "3 files, over the limit of 2"),
    "zip bomb": (zip_of({**GOOD, "train/bomb.png": b"\0" * (4 << 20)}), {"max_bytes": 1 << 20},
                 "bytes uncompressed, over the limit of 1,048,576"),
    "too many pixels": (zip_of({**GOOD, "train/big.png": png(w=200, h=100)}), {"max_pixels": 64 * 32},
                        "train/big.png: image is 200x100"),
}


def test_a_set_made_by_our_data_tools_is_accepted_as_it_is(tmp_path):
    """`translate retrain NAME --data DIR` with DIR from `translate data make` or `translate data pair`."""
    from translate.datasets import make_dataset

    made = make_dataset("maps", tmp_path / "new_pairs", count=10, size=16, progress=False)
    counts = upload.import_pairs(upload.folder_entries(tmp_path / "new_pairs"), tmp_path / "imported", "new_pairs",
                                 upload.FOLDER_LIMITS)
    assert {s: counts[s] for s in ("train", "val", "test")} == made["counts"] and counts["eval_split"] == "test"
    assert not (tmp_path / "imported" / "dataset.json").exists() and not (tmp_path / "imported" / "palette.json").exists()


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_are_refused_and_nothing_is_imported(shared_store, case):
    data, limits, message = BAD_UPLOADS[case]
    with pytest.raises(DataError) as err:
        submit_from_zip(shared_store, NAME, data, token_ok=True, limits=UploadLimits(**limits))
    assert message in str(err.value)
    assert_nothing_imported(shared_store)


def test_token_unknown_model_and_unknown_job_are_refused(shared_store):
    good = zip_of(GOOD)
    with pytest.raises(PermissionError):
        submit_from_zip(shared_store, NAME, good, token_ok=False)
    with pytest.raises(ConfigError, match="no model named 'roads'"):
        submit_from_zip(shared_store, "roads", good, token_ok=True)
    with pytest.raises(ConfigError, match="name"):
        submit_from_zip(shared_store, "../maps", good, token_ok=True)
    with pytest.raises(ConfigError, match="steps"):
        submit_from_zip(shared_store, NAME, good, token_ok=True, steps=0)
    with pytest.raises(ConfigError, match="background"):
        submit_from_zip(shared_store, NAME, good, token_ok=True, background="later")
    assert_nothing_imported(shared_store)
    for job_id in ("0123456789ab", "../../etc/passwd", ""):
        with pytest.raises(KeyError):
            job_status(job_id, shared_store)


def test_retrain_promotes_a_better_version_and_reports_progress(pairs, base_run, tmp_path, monkeypatch):
    from training.pix2pix import Pix2Pix

    store = new_store(tmp_path / "store", base_run)
    seen = []
    step = Pix2Pix.step

    def spying_step(self, batch):  # what a client polling job_status sees before steps 1..6
        if len(seen) < 6:
            seen.append(job_status(next((store.root / ".jobs").iterdir()).stem))
        return step(self, batch)

    monkeypatch.setattr(Pix2Pix, "step", spying_step)
    # a zipped folder (its name is stripped) of flat A|B images: the held-out pairs are split off
    job = submit_from_zip(store, NAME, zip_folder(pairs / "train", prefix="new-maps/"), token_ok=True,
                          steps=30, background="thread")
    assert job["state"] == "queued" and job["base_version"] == "v0001"
    assert job["data"] == {"train": 14, "val": 2, "test": 0, "eval_split": "val", "held_out": "split_holdout"}
    status = jobs.wait(job["job_id"], timeout=300)
    assert status["state"] == "succeeded", status["error"]
    assert [(s["state"], s["phase"], s["progress"]) for s in seen[-1:]] == [
        ("running", "train", {"step": 5, "total": 30})]
    assert status["progress"] == {"step": 30, "total": 30}

    out = status["outcome"]
    assert out["promoted"] and out["new_version"] == "v0002" and out["current_version"] == "v0002"
    assert out["metric"] == "l1" and out["new_metric"] < 0.7 * out["current_metric"], out
    assert out["decided_by"] == "l1 (mean L1 on [-1, 1]; lower is better)" and out["reason"].startswith(
        f"decided by {out['decided_by']}: held-out l1")
    assert store.current(NAME) == "v0002"
    assert_checkpoint_is_the_model(store, NAME, "v0002")
    meta = store.meta(NAME, "v0002")
    assert meta["metrics"]["l1"] == out["new_metric"] and meta["evaluation"]["compared_with"]["version"] == "v0001"
    # the held-out pairs were never trained on, and are the deterministic split of the upload
    data = store.root / ".data" / f"{NAME}-{job['job_id']}"
    held, trained = {p.name for p in (data / "val").iterdir()}, {p.name for p in (data / "train").iterdir()}
    assert len(held) == 2 and not held & trained and held | trained == {p.name for p in (pairs / "train").iterdir()}
    # the run keeps its log, not a second copy of what the version holds
    run = store.root / ".runs" / f"{NAME}-{job['job_id']}"
    assert (run / "metrics.jsonl").exists() and not (run / "checkpoints").exists() and not (run / "model.onnx").exists()
    assert store.checkpoint_path(NAME, "v0002").exists() and store.model_path(NAME, "v0002").exists()
    # the record is on disk: another process (replica) reads the same status
    record = json.loads((store.root / ".jobs" / f"{job['job_id']}.json").read_text())
    assert record["state"] == "succeeded" and record["outcome"] == out


def wrong_pairs(pairs, dest):
    """Training pairs whose targets are inverted, with the right pairs as the held-out test split."""
    shutil.copytree(pairs / "test", dest / "test")
    (dest / "train").mkdir()
    for p in sorted((pairs / "train").glob("*.png")):
        ab = np.asarray(Image.open(p))
        w = ab.shape[1] // 2
        Image.fromarray(np.concatenate([ab[:, :w], 255 - ab[:, w:]], axis=1)).save(dest / "train" / p.name)
    return dest


def test_cli_retrain_refuses_a_worse_version(pairs, base_run, tmp_path, capsys, monkeypatch):
    from translate_cli.main import main

    monkeypatch.setattr(jobs, "KEEP_UPLOADS", 0)  # so this job's own upload goes as it ends
    store = new_store(tmp_path / "store", base_run)
    data = wrong_pairs(pairs, tmp_path / "wrong")
    main(["retrain", NAME, "--data", str(data), "--store", str(store.root), "--steps", "30", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert not out["promoted"] and out["new_version"] == "v0002" and out["current_version"] == "v0001"
    assert out["eval_split"] == "test" and out["new_metric"] > out["current_metric"], out
    assert "not promoted" in out["reason"]
    assert store.versions(NAME) == ["v0001", "v0002"] and store.current(NAME) == "v0001"
    assert job_status(out["job_id"], store)["outcome"] == {k: v for k, v in out.items() if k != "job_id"}
    assert job_status(out["job_id"], store)["data_pruned"] and not list((store.root / ".data").iterdir())
    # a bad folder is one line and exit status 2
    (data / "train" / "notes.txt").write_text("x")
    with pytest.raises(SystemExit) as e:
        main(["retrain", NAME, "--data", str(data), "--store", str(store.root), "--quiet"])
    assert e.value.code == 2 and "notes.txt: not an image" in capsys.readouterr().err


def test_job_runs_as_a_detached_ray_actor(pairs, base_run, tmp_path):
    ray = pytest.importorskip("ray")
    store = new_store(tmp_path / "store", base_run)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        job = submit_from_zip(store, NAME, zip_folder(pairs), token_ok=True, steps=2)  # Ray is up: "auto" uses it
        status = jobs.wait(job["job_id"], timeout=300, store=store)
    finally:
        ray.shutdown()
    assert status["state"] == "succeeded", status["error"]
    assert status["outcome"]["new_version"] == "v0002" and status["outcome"]["eval_split"] == "test"
    run = store.root / ".runs" / f"{NAME}-{job['job_id']}"
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 2


def test_a_job_outlives_the_process_that_submitted_it_dying_at_once(pairs, base_run, tmp_path):
    """A replica killed right after it answered a retraining upload: the job still runs (its detached actor is up
    before the submission returns, and the job starts in its constructor; a method call waited in the caller)."""
    import subprocess
    import sys
    import time

    ray = pytest.importorskip("ray")
    store = new_store(tmp_path / "store", base_run)
    (tmp_path / "pairs.zip").write_bytes(zip_folder(pairs))
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # a second driver on the same Ray submits the job and dies at once, before the actor's process is up
        script = ("import os, sys, ray; from pathlib import Path; from serving.retraining.jobs import submit_from_zip; "
                  "from serving.store import ModelStore; ray.init(address=sys.argv[1], log_to_driver=False); "
                  "job = submit_from_zip(ModelStore(sys.argv[2]), sys.argv[3], Path(sys.argv[4]).read_bytes(), "
                  "token_ok=True, steps=2); Path(sys.argv[5]).write_text(job['job_id']); os._exit(0)")
        # the job id comes back in a file: the suite's environment can send a driver's stdout elsewhere
        out = subprocess.run([sys.executable, "-c", script, context.address_info["address"], str(store.root), NAME,
                              str(tmp_path / "pairs.zip"), str(tmp_path / "job_id")], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        job_id = (tmp_path / "job_id").read_text()
        status = jobs.wait(job_id, timeout=300, store=store)
        deadline = time.monotonic() + 60
        while True:  # the worker ends itself once the job has ended: no idle detached actor left behind
            try:
                ray.get_actor(f"retrain-{job_id}")
            except ValueError:
                break
            assert time.monotonic() < deadline, "the retraining actor is still alive after its job"
            time.sleep(0.5)
    finally:
        ray.shutdown()
    assert status["state"] == "succeeded", status["error"]
    assert store.versions(NAME) == ["v0001", "v0002"]


def test_a_job_whose_worker_dies_is_reported_failed(pairs, base_run, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    store = new_store(tmp_path / "store", base_run)
    job_id = jobs.create_job(store, NAME, lambda: upload.folder_entries(pairs), str(pairs), 5000,
                             upload.FOLDER_LIMITS)["job_id"]
    worker = subprocess.Popen([sys.executable, "-c", "import sys; from serving.retraining.jobs import run_job; "
                               "run_job(sys.argv[1], sys.argv[2], threads=1)", str(store.root), job_id],
                              cwd=os.getcwd(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    alive = store.root / ".jobs" / f"{job_id}.alive"
    deadline = time.monotonic() + 120
    while not (alive.exists() and job_status(job_id, store)["progress"]["step"] > 0):
        assert worker.poll() is None and time.monotonic() < deadline, "the worker did not start training"
        time.sleep(0.2)
    assert job_status(job_id, store)["state"] == "running"
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert job_status(job_id, store)["state"] == "running"  # its last sign of life is recent: not judged yet
    last = time.time() - jobs.STALE_S - 1  # as if STALE_S had passed since (the file's clock, set by hand)
    os.utime(alive, (last, last))
    status = job_status(job_id, store)
    assert status["state"] == "failed" and "worker stopped" in status["error"] and status["finished"]
    assert store.versions(NAME) == ["v0001"] and store.current(NAME) == "v0001"
    os.utime(alive)  # the verdict is recorded: it holds whatever the file says now
    assert job_status(job_id, store)["state"] == "failed"


def test_old_uploads_are_pruned_newest_kept(tmp_path):
    """Uploads (up to 1 GB each) of a model's finished jobs beyond the newest KEEP_UPLOADS are deleted;
    unfinished jobs, other models and data outside the store's .data/ are left alone."""
    root = tmp_path / "store"

    def job(i, name=NAME, state="succeeded", data_dir=None):
        job_id = f"{i:012x}"
        folder = Path(data_dir) if data_dir else root / ".data" / f"{name}-{job_id}"
        (folder / "train").mkdir(parents=True)
        (folder / "train" / "0.png").write_bytes(b"x")
        jobs._write_job(root, {"id": job_id, "name": name, "state": state, "data_dir": str(folder),
                               "progress": {"step": 0, "total": 1}, "phase": "done", "run": str(root / "run"),
                               "created": f"2026-11-30T10:00:{i:02d}+0000",
                               "finished": None if state in ("queued", "running") else f"2026-11-30T11:00:{i:02d}+0000"})
        return folder

    finished = [job(i, state="failed" if i == 3 else "succeeded") for i in range(1, 8)]
    running, queued = job(8, state="running"), job(9, state="queued")
    other = [job(10 + i, name="sketches") for i in range(3)]
    outside = job(0, data_dir=tmp_path / "elsewhere" / "pairs")  # the oldest: beyond keep, but not ours to delete
    removed = jobs.prune_uploads(root, NAME, keep=3)
    assert sorted(removed) == sorted(finished[:4])  # the four oldest finished ones (a failed one too)
    assert all(not f.exists() for f in finished[:4]) and all(f.exists() for f in finished[4:])
    assert running.exists() and queued.exists() and all(f.exists() for f in other) and outside.exists()
    assert [job_status(f"{i:012x}", root)["data_pruned"] for i in range(1, 8)] == [True] * 4 + [False] * 3
    assert jobs.prune_uploads(root, NAME, keep=3) == []  # nothing more to do


def test_a_failed_job_prunes_too(pairs, base_run, tmp_path, monkeypatch):
    """The prune runs however a job ends: here its fine-tuning fails (the base checkpoint vanished)."""
    monkeypatch.setattr(jobs, "KEEP_UPLOADS", 0)
    store = new_store(tmp_path / "store", base_run)
    job = jobs.create_job(store, NAME, lambda: upload.folder_entries(pairs / "train"), "pairs", 5,
                          upload.FOLDER_LIMITS)
    Path(store.checkpoint_path(NAME, "v0001")).unlink()
    status = jobs.run_job(store.root, job["job_id"])
    assert status["state"] == "failed" and status["data_pruned"]
    assert not list((store.root / ".data").iterdir())


def test_a_class_map_model_is_promoted_by_class_iou(tmp_path, capsys):
    """A model trained on class maps (the maps set ships its palette.json) keeps its palette in its checkpoint; its
    retraining validates and promotes by the class IoU of the held-out maps, and says that this score decided."""
    from tests.conftest import tiny_pix2pix_config
    from training.loop import Trainer
    from training.pix2pix import Pix2Pix
    from translate.checkpoint import load_checkpoint
    from translate.datasets import make_dataset
    from translate_cli.main import main

    make_dataset("maps", tmp_path / "maps", count=12, size=32, progress=False)
    base = Trainer(Pix2Pix, tiny_pix2pix_config(tmp_path / "maps", tmp_path / "base", steps=2, export=True)).fit()
    assert load_checkpoint(base / "checkpoints" / "best.pt")["palette"]["side"] == "B"
    store = ModelStore(tmp_path / "store")
    store.register(NAME, base / "model.onnx", checkpoint=base / "checkpoints" / "best.pt")
    capsys.readouterr()
    main(["retrain", NAME, "--data", tmp_path / "maps", "--store", store.root, "--steps", "2", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert out["metric"] == "mean_iou"
    assert out["decided_by"] == "mean_iou (class IoU of the outputs' class maps; higher is better)"
    assert out["promoted"] == (out["new_metric"] >= out["current_metric"])
    for side in ("new", "current"):
        m = out[f"{side}_metrics"]
        assert m["mean_iou"] == out[f"{side}_metric"] and 0 <= m["mean_iou"] <= 1 and {"l1", "pixel_accuracy"} <= set(m)
    # the fine-tuning validated by the same score
    run = store.root / ".runs" / f"{NAME}-{out['job_id']}"
    assert any("val/mean_iou" in json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines())
