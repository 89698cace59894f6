"""One conversion run per output folder, and its write fence (no Ray: threads stand in for actors)."""
import json
import os
import subprocess
import threading

import numpy as np
import pytest
from PIL import Image

from serving import folder_lock
from serving.folder_lock import LOCK_NAME, FolderLock, RunCancelled
from translate.errors import ConfigError

from .conftest import tiny_onnx


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_second_run_is_refused_with_the_owner_named(tmp_path):
    first = FolderLock(tmp_path)
    run = first.acquire()
    owner = json.loads((tmp_path / LOCK_NAME).read_text())
    assert owner["run"] == run and owner["pid"] == os.getpid() and owner["host"]
    with pytest.raises(ConfigError, match=rf"pid {os.getpid()} on .* wait for it"):
        FolderLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    second = FolderLock(tmp_path)
    assert second.acquire() != run  # free again once released
    second.release()


@pytest.mark.parametrize("how", ["dead pid", "reused pid"])
def test_a_stale_lock_is_taken_over(tmp_path, how):
    import socket

    pid, start = (_dead_pid(), None) if how == "dead pid" else (os.getpid(), "0")  # alive, but started at 0: reused
    (tmp_path / LOCK_NAME).write_text(json.dumps({"run": "old", "pid": pid, "pid_start": start,
                                                  "host": socket.gethostname(), "started": "then"}))
    lock = FolderLock(tmp_path)
    run = lock.acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["run"] == run != "old"
    lock.release()


def test_a_lock_held_on_another_host_is_not_guessed_stale(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"run": "x", "pid": _dead_pid(), "host": "elsewhere.example",
                                                  "started": "then"}))
    with pytest.raises(ConfigError, match=r"on elsewhere.example.*delete .*\.convert\.lock"):
        FolderLock(tmp_path).acquire()


@pytest.fixture
def translator(tmp_path):
    """A convert Translator in this process, for a run that owns tmp_path/out, and one input file."""
    from serving.convert import Translator

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(src / "a.png")
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_onnx("unet_32", seed=1))
    lock = FolderLock(out)
    run = lock.acquire()
    t = Translator(str(model), str(src), str(out), "png", "cpu", 1, run=run)
    batch = {"path": np.array([str(src / "a.png")], dtype=object),
             "bytes": np.array([(src / "a.png").read_bytes()], dtype=object)}
    yield t, batch, lock, out
    lock.release()


def test_a_write_after_the_run_ended_is_refused(translator, monkeypatch):
    """An actor still translating when the run is interrupted writes nothing afterwards."""
    t, batch, lock, out = translator
    translating, go = threading.Event(), threading.Event()
    real = t.predictor.__class__.__call__

    def slow_translate(self, image, *args, **kwargs):  # blocks mid-translation until the run has ended
        translating.set()
        assert go.wait(30)
        return real(self, image, *args, **kwargs)

    monkeypatch.setattr(t.predictor.__class__, "__call__", slow_translate)
    result = {}
    worker = threading.Thread(target=lambda: result.update(t(batch)))
    worker.start()
    assert translating.wait(30)
    lock.release()  # the interruption: returns at once, nothing is being written
    go.set()
    worker.join(30)
    assert result["error"][0].startswith("cancelled")
    assert not (out / "a.png").exists() and not list(out.glob(".a.*"))


def test_the_end_of_a_run_waits_for_a_write_in_flight(translator, monkeypatch):
    """release() returns only after a write that had begun is complete: no half file after it."""
    t, batch, lock, out = translator
    writing, go = threading.Event(), threading.Event()
    real = Image.Image.save

    def slow_save(self, fp, *a, **kw):  # the atomic write has begun (temp file made), then blocks
        writing.set()
        assert go.wait(30)
        return real(self, fp, *a, **kw)

    monkeypatch.setattr(Image.Image, "save", slow_save)
    result = {}
    worker = threading.Thread(target=lambda: result.update(t(batch)))
    worker.start()
    assert writing.wait(30)
    assert list(out.glob(".a.*.tmp.png"))  # half a file exists right now
    releaser = threading.Thread(target=lock.release)
    releaser.start()
    releaser.join(1.0)
    assert releaser.is_alive()  # held back by the write in flight (a correct fence never lets it through)
    go.set()
    worker.join(30)
    releaser.join(30)
    assert not releaser.is_alive()
    assert result["error"][0] == "" and (out / "a.png").exists() and not list(out.glob(".a.*"))
    with pytest.raises(RunCancelled):  # and the next write of that run refuses
        with folder_lock.fenced(out, "any-run"):
            pass
