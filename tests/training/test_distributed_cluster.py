"""`translate train --processes 2 --address HOST:PORT` on a Ray cluster of two nodes (each with its own
CPU, both on this machine), and a clean stop of such a run on SIGTERM (a checkpoint, then exit 0)."""
import json
import signal
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def two_nodes():
    """A head and a second node, one CPU each, as `ray start --head` and `ray start --address` make them."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_training_on_a_two_node_cluster_stops_cleanly_on_sigterm(two_nodes, tiny_pairs, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "translate_cli.main", "train", "pix2pix", "--data", str(tiny_pairs),
           "--out", str(run), "--size", "32", "--load-size", "36", "--netG", "unet_32", "--ngf", "8", "--ndf", "8",
           "--batch-size", "2", "--processes", "2", "--address", two_nodes.address, "--steps", "100000",
           "--checkpoint-every", "3", "--val-every", "100000", "--sample-every", "100000", "--workers", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    first = run / "checkpoints" / "step_00000003.pt"
    deadline = time.monotonic() + 600
    while not first.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # what docker stop and systemd send
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "interrupted" in err and f"run directory: {run}" in out
    from translate.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert 3 <= ckpt["step"] < 100000 and len(ckpt["rng_ranks"]) == 1  # both processes' state kept
    assert "training on 2 processes (1 CPU each, gloo)" in out  # one per node: each node has one CPU
    config = json.loads((run / "config.json").read_text())
    assert config["processes"] == 2 and config["address"] == two_nodes.address
    assert not (run / ".stop").exists()
