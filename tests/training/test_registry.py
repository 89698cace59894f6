"""One registry of trainers (training/__init__.py) that the CLI, retraining and tests read; adding a
trainer is one module and one registry line (DESIGN.md's recipe, followed by tests/training/toy_trainer.py
and, for a method sized by its data, tests/training/toy_sized_trainer.py)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import training
from tests.training.shared_checks import adversarial, check_exact_resume, check_export, registered
from training.loop import Trainer
from translate.errors import ConfigError

SIZED_TOY = "tests.training.toy_sized_trainer:SizedToy"


def test_every_registered_trainer_names_itself_once():
    methods = training.methods()
    assert list(methods) == ["pix2pix", "cyclegan", "cut", "gan", "segmenter", "bicyclegan", "vae"]
    for name, method in methods.items():
        assert method.name == name and method.config_class.method == name  # the config takes the method's name
        config = method.config_class(data="ring8" if name == "gan" else "x")
        assert config.to_dict()["method"] == name
        assert method.config_class.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="known: pix2pix, cyclegan, cut, gan, segmenter, bicyclegan, vae"):
        training.method("pix2pixhd")


def test_retraining_offers_the_trainers_that_say_they_can(tmp_path):
    from serving.retraining.promotion import trainer

    assert trainer("pix2pix") is training.method("pix2pix")
    with pytest.raises(ConfigError, match=r"retraining supports \['cut', 'pix2pix'\] models, not cyclegan"):
        trainer("cyclegan")


def test_a_new_trainer_is_one_module_and_one_registry_line(tiny_pairs, tmp_path, monkeypatch, capsys):
    from translate_cli.main import main

    monkeypatch.setattr(training, "TRAINERS", (*training.TRAINERS, "tests.training.toy_trainer:Toy"))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "toy" in capsys.readouterr().out
    run = tmp_path / "toy-run"
    main(["train", "toy", "--data", str(tiny_pairs), "--out", str(run), "--steps", "4", "--workers", "0",
          "--no-progress"])
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "toy" and config["steps"] == 4 and config["ngf"] == 4
    assert (run / "model.onnx").exists() and (run / "samples").is_dir()  # exported by the loop, by the spec's kind
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(img)
    main(["predict", str(run), str(img), "--out", str(tmp_path / "out")])
    assert Image.open(tmp_path / "out" / "a.png").size == (28, 20)
    main(["train", "toy", "--resume", str(run), "--steps", "6", "--no-progress"])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 6


def test_a_new_method_is_held_to_the_shared_checks_by_its_registry_line(tiny_pairs, tmp_path, monkeypatch):
    """The shared tests (tests/training/test_every_method.py, test_objectives.py, test_distributed.py) are
    parametrized over the registry: its line puts a method in them, with its own tiny config. Here the checks
    that need no Ray run for the toy sized by its data (not adversarial: no objective to check); the first toy
    goes through the command line above."""
    monkeypatch.setattr(training, "TRAINERS", (*training.TRAINERS, SIZED_TOY))
    assert "sized_toy" in registered() and "sized_toy" not in adversarial()
    method = training.method("sized_toy")
    check_exact_resume(method, tiny_pairs, tmp_path / "resume")
    check_export(method, tiny_pairs, tmp_path / "export")


def test_a_method_sized_by_its_first_batch_is_built_before_weights_load(tiny_pairs, tmp_path, monkeypatch):
    """The loop calls size_networks once, with a first training batch, before it restores a checkpoint (the
    resume above) or loads --init-from weights; the network takes the data's channels (grey in, colour out)."""
    monkeypatch.setattr(training, "TRAINERS", (*training.TRAINERS, SIZED_TOY))
    method = training.method("sized_toy")
    base = Trainer(method, method.tiny_config(tiny_pairs, tmp_path / "base", steps=2)).fit()
    calls = []
    size_networks = method.size_networks
    monkeypatch.setattr(method, "size_networks", lambda self, batch: calls.append(batch) or size_networks(self, batch))
    tuned = Trainer(method, method.tiny_config(tiny_pairs, tmp_path / "tuned", init_from=str(base), seed=5))
    assert len(calls) == 1 and calls[0]["A"].shape == (2, 1, 32, 32) and calls[0]["B"].shape == (2, 3, 32, 32)
    assert tuned.method.arch["input_nc"] == 1 and tuned.method.arch["output_nc"] == 3
    weights = torch.load(base / "checkpoints" / "latest.pt", weights_only=False)["networks"]["G"]
    assert all(torch.equal(v, weights[k]) for k, v in tuned.method.networks["G"].state_dict().items())
