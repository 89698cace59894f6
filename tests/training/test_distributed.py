"""Data-parallel training on Ray Train (CPU, gloo, a local Ray of 2 CPUs): for every registered method, two
processes at batch b train the run of one process at batch 2b (tests/training/shared_checks.py), and a
killed run resumes, exactly on as many processes and re-split on another number."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import training
from tests.training.shared_checks import check_data_parallel, cli_flags, parallel_config, registered
from training.loop import Trainer
from training.pix2pix import Pix2Pix

ray = pytest.importorskip("ray")


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]


def _weights(run, net="G"):
    from translate.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoints" / "latest.pt")["networks"][net]


@pytest.fixture(scope="module")
def two_processes(local_ray, tiny_pairs, tmp_path_factory):
    """Each method's tiny run on two processes (shared_checks.parallel_config), made once, on first use."""
    runs = {}

    def run(name):
        if name not in runs:
            out = tmp_path_factory.mktemp("ddp") / name
            method = training.method(name)
            runs[name] = Trainer(method, parallel_config(method, tiny_pairs, out)).fit()
        return runs[name]

    return run


# one pair of processes per method: pix2pix and cyclegan (exact settings: instance norm, no dropout, no pools,
# float32) are held to one process at twice the batch; the GAN family (each process draws its own latents, the
# gradient penalty differentiates twice, G waits for n_critic D updates) has to complete its run on two
@pytest.mark.parametrize("name", registered())
def test_two_processes_train_the_run_of_one_at_twice_the_batch(name, two_processes, tiny_pairs, tmp_path):
    check_data_parallel(training.method(name), two_processes(name), tiny_pairs, tmp_path)


def test_a_run_killed_mid_way_resumes_exactly_and_on_another_process_count(two_processes, tiny_pairs, tmp_path):
    run = tmp_path / "killed"
    flags = cli_flags(parallel_config(Pix2Pix, tiny_pairs, run))  # the run two_processes("pix2pix") made
    env = {**os.environ, "RAY_ADDRESS": ""}  # its own local Ray, as a user's command would start
    proc = subprocess.Popen([sys.executable, "-m", "translate_cli.main", "train", "pix2pix", *flags], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    ckpt = run / "checkpoints" / "step_00000002.pt"
    deadline = time.monotonic() + 600
    while not ckpt.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray and both processes, at once
    proc.wait()
    done = max(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("step_*.pt"))
    assert 2 <= done < 6
    resumed = Trainer(Pix2Pix, Pix2Pix.config_class(), resume=run)
    assert resumed.step == done and resumed.launcher  # the run's own 2 processes
    resumed.fit()
    wa, wb = _weights(two_processes("pix2pix")), _weights(run)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the same weights as the uninterrupted run
    assert [r["step"] for r in _rows(run)] == list(range(1, 7))
    # and once more from step 2 on one process: the order of samples is re-split, the run completes
    again = tmp_path / "again"
    (again / "checkpoints").mkdir(parents=True)
    (again / "checkpoints" / "latest.pt").write_bytes(ckpt.read_bytes())
    t = Trainer(Pix2Pix, Pix2Pix.config_class(), resume=again, overrides={"processes": 1, "progress": False})
    batch = Pix2Pix.tiny_config(tiny_pairs, run).batch_size
    assert t.samples_seen == 2 * 2 * batch  # 2 steps of 2 processes
    t.fit()
    assert t.step == 6


@pytest.mark.parametrize("bar", [True, False])
def test_the_drivers_progress_follows_the_run_and_no_progress_hides_the_bar(tmp_path, capsys, bar):
    """--no-progress hides the driver's bar of a multi-process run (it showed it regardless); the validation
    lines print either way, as a one-process run prints them."""
    from training.distributed import _Progress

    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 2, "lr": 2e-4, "G_L1": 9.5}) + "\n"
                                            + json.dumps({"step": 4, "val/l1": 0.25}) + "\n")
    progress = _Progress(tmp_path, total=4, start=0, bar=bar)
    progress.update()
    progress.close()
    out = capsys.readouterr()
    assert "step 4: val/l1 0.25" in out.out + out.err  # as a one-process run writes it
    assert ("4/4" in out.err) == bar, out.err
