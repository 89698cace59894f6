"""Data-parallel training on Ray Train (CPU, gloo, a local Ray of 2 CPUs): N processes at batch b
train the same run as one process at batch N * b, and a killed run resumes, exactly on as many
processes and re-split on another number."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import tiny_pix2pix_config
from training.cyclegan import CycleGAN, CycleGANConfig
from training.gan import GAN, GANConfig
from training.loop import Trainer
from training.pix2pix import Pix2Pix

ray = pytest.importorskip("ray")


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]


def _weights(run, net="G"):
    from translate.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoints" / "latest.pt")["networks"][net]


# deterministic pix2pix: instance norm (per sample), no dropout: one process at batch 4 and two at 2 compute
# the same gradients, up to the order of float sums; in float32 (bf16 autocast, the default on CPUs with bf16,
# would round each split differently at 1e-3 and hide what is compared)
PIX2PIX = dict(steps=6, norm="instance", dropout=False, log_every=1, val_every=100, sample_every=100,
               checkpoint_every=2, netG="unet_32", ngf=8, ndf=8, progress=False, amp=False)


@pytest.fixture(scope="module")
def pix2pix_two(local_ray, tiny_pairs, tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp") / "two"
    Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, run, batch_size=2, processes=2, export=True, **PIX2PIX)).fit()
    return run


def test_two_processes_train_the_run_of_one_at_twice_the_batch(pix2pix_two, tiny_pairs, tmp_path):
    one = tmp_path / "one"
    Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, one, batch_size=4, **PIX2PIX)).fit()
    a, b = _rows(one), _rows(pix2pix_two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b, strict=True):
        for k in ("G_L1", "G_GAN", "D_real", "D_fake"):
            assert rb[k] == pytest.approx(ra[k], rel=1e-4, abs=1e-5), (ra["step"], k)
        assert rb["lr"] == ra["lr"]
    # the weights agree as closely as float sums in another order allow: Adam turns the noise on a gradient
    # that is zero in theory (a conv bias before instance norm) into steps of +-lr, nothing else moves
    wa, wb = _weights(one), _weights(pix2pix_two)
    flat_a = torch.cat([v.float().flatten() for v in wa.values()])
    flat_b = torch.cat([v.float().flatten() for v in wb.values()])
    assert (flat_a - flat_b).norm() < 1e-3 * flat_a.norm()
    val = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines() if "val/l1" in x][-1]
    val2 = [json.loads(x) for x in (pix2pix_two / "metrics.jsonl").read_text().splitlines() if "val/l1" in x][-1]
    assert val2["val/l1"] == pytest.approx(val["val/l1"], rel=1e-3)
    # one run directory, written once: the config says how it ran, the model was exported at the end
    config = json.loads((pix2pix_two / "config.json").read_text())
    assert config["processes"] == 2 and config["batch_size"] == 2
    assert (pix2pix_two / "model.onnx").exists() and not (pix2pix_two / ".ray_train").exists()


def test_a_run_killed_mid_way_resumes_exactly_and_on_another_process_count(pix2pix_two, tiny_pairs, tmp_path):
    run = tmp_path / "killed"
    flags = ["--data", str(tiny_pairs), "--out", str(run), "--size", "32", "--load-size", "36", "--batch-size", "2",
             "--processes", "2", "--steps", "6", "--norm", "instance", "--no-dropout", "--log-every", "1",
             "--val-every", "100", "--sample-every", "100", "--checkpoint-every", "2", "--netG", "unet_32",
             "--ngf", "8", "--ndf", "8", "--workers", "0", "--no-progress", "--no-amp"]  # as PIX2PIX
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
    resumed = Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, run), resume=run)
    assert resumed.step == done and resumed.launcher  # the run's own 2 processes
    resumed.fit()
    wa, wb = _weights(pix2pix_two), _weights(run)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)  # the uninterrupted run's weights
    assert [r["step"] for r in _rows(run)] == list(range(1, 7))
    # and once more from step 2 on one process: the order of samples is re-split, the run completes
    again = tmp_path / "again"
    (again / "checkpoints").mkdir(parents=True)
    (again / "checkpoints" / "latest.pt").write_bytes(ckpt.read_bytes())
    t = Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, again), resume=again, overrides={"processes": 1,
                                                                                          "progress": False})
    assert t.samples_seen == 2 * 2 * 2  # 2 steps of 2 processes at batch 2
    t.fit()
    assert t.step == 6


def test_cyclegan_and_gan_under_two_processes(local_ray, tiny_pairs, tmp_path):
    """CycleGAN (two optimizers over two networks each, its pools per process) and the GAN family
    (D several times before a backward, the gradient penalty's double backward, G every n_critic)."""
    common = dict(size=32, load_size=36, netG="resnet_1blocks", ngf=4, ndf=4, steps=4, workers=0, log_every=1,
                  val_every=100, sample_every=100, checkpoint_every=2, progress=False, pool_size=0,
                  lambda_identity=0.5, amp=False)  # float32, as PIX2PIX above
    one, two = tmp_path / "cg1", tmp_path / "cg2"
    Trainer(CycleGAN, CycleGANConfig(data=str(tiny_pairs), out=str(one), batch_size=4, **common)).fit()
    Trainer(CycleGAN, CycleGANConfig(data=str(tiny_pairs), out=str(two), batch_size=2, processes=2, **common)).fit()
    rows_one, rows_two = _rows(one), _rows(two)
    assert [r["step"] for r in rows_one] == [r["step"] for r in rows_two] == list(range(1, 5))
    for ra, rb in zip(rows_one, rows_two, strict=True):
        for k in ("G_A", "cycle_A", "idt_B", "D_A", "D_B"):
            assert rb[k] == pytest.approx(ra[k], rel=1e-4, abs=1e-5), (ra["step"], k)
    pooled = tmp_path / "pooled"  # with pools: one per process, both kept by the checkpoint
    Trainer(CycleGAN, CycleGANConfig(data=str(tiny_pairs), out=str(pooled), batch_size=1, processes=2,
                                     **{**common, "pool_size": 3, "steps": 2})).fit()
    from translate.checkpoint import load_checkpoint

    ckpt = load_checkpoint(pooled / "checkpoints" / "latest.pt")
    assert len(ckpt["extra"]["fake_A_pool"]["images"]) == 2 and len(ckpt["extra_ranks"]) == 1
    assert len(ckpt["extra_ranks"][0]["fake_B_pool"]["images"]) == 2 and len(ckpt["rng_ranks"]) == 1

    gan = tmp_path / "gan"
    Trainer(GAN, GANConfig(data="ring8", out=str(gan), points=1024, batch_size=32, mlp_width=32, mlp_layers=2,
                           gan_mode="wgangp", n_critic=2, steps=8, processes=2, log_every=1, val_every=8,
                           sample_every=100, checkpoint_every=100, eval_samples=200, progress=False)).fit()
    rows = _rows(gan)
    assert len(rows) == 8 and all(r["GP"] > 0 for r in rows)
    g_updates = [r.get("G") for r in rows]
    assert g_updates[0] is None and g_updates[1] is not None  # G's first update after n_critic = 2 D updates
    assert (gan / "model.onnx").exists()


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
