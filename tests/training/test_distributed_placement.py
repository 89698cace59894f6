"""Where the processes of `translate train --processes N` run, as the README tells it: `--cpus-per-process` and
`--gpus-per-process` are what each process reserves, and a local Ray that cannot hold them all refuses the run
at once, saying what it needs (the command exits 2, nothing trained)."""
import json

import pytest

from translate_cli.main import main

ray = pytest.importorskip("ray")

TINY = ["--size", "32", "--load-size", "36", "--netG", "unet_32", "--ngf", "8", "--ndf", "8", "--batch-size", "1",
        "--workers", "0", "--no-progress", "--val-every", "100", "--sample-every", "100"]


def train(tiny_pairs, run, *flags) -> list[str]:
    return ["train", "pix2pix", "--data", str(tiny_pairs), "--out", str(run), *TINY, *flags]


@pytest.mark.parametrize("flags,message", [
    (["--processes", "4"], "4 processes x 1 CPUs need 4 CPUs; this machine's Ray has 2"),
    (["--processes", "2", "--cpus-per-process", "2"], "2 processes x 2 CPUs need 4 CPUs; this machine's Ray has 2"),
    (["--processes", "2", "--gpus-per-process", "1", "--device", "cpu"], "--device cpu with GPUs per process"),
], ids=["4 processes on 2 CPUs", "2 CPUs each on 2 CPUs", "GPUs on --device cpu"])
def test_a_placement_the_machine_cannot_hold_is_refused_at_once(local_ray, tiny_pairs, tmp_path, capsys, flags,
                                                                 message):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(train(tiny_pairs, run, "--steps", "2", *flags))
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (run / "checkpoints").exists()  # refused before a step


def test_cpus_and_gpus_per_process_are_what_each_process_reserves(local_ray, tiny_pairs, tmp_path, capsys):
    run = tmp_path / "run"
    main(train(tiny_pairs, run, "--steps", "1", "--processes", "2", "--cpus-per-process", "1", "--gpus-per-process",
               "0"))
    assert "training on 2 processes (1 CPU each, gloo)" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert (config["processes"], config["cpus_per_process"], config["gpus_per_process"]) == (2, 1, 0)
    assert (run / "checkpoints" / "latest.pt").is_file()
