"""One registry of trainers (training/__init__.py) that the CLI, retraining and tests read; adding a
trainer is one module and one registry line (DESIGN.md's recipe, followed by tests/training/toy_trainer.py)."""
import json

import numpy as np
import pytest
from PIL import Image

import training
from translate.errors import ConfigError


def test_every_registered_trainer_names_itself_once():
    methods = training.methods()
    assert list(methods) == ["pix2pix", "cyclegan", "gan"]
    for name, method in methods.items():
        assert method.name == name and method.config_class.method == name  # the config takes the method's name
        config = method.config_class(data="ring8" if name == "gan" else "x")
        assert config.to_dict()["method"] == name
        assert method.config_class.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="known: pix2pix, cyclegan, gan"):
        training.method("pix2pixhd")


def test_retraining_offers_the_trainers_that_say_they_can(tmp_path):
    from serving.retraining.promotion import trainer

    assert trainer("pix2pix") is training.method("pix2pix")
    with pytest.raises(ConfigError, match=r"retraining supports \['pix2pix'\] models, not cyclegan"):
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
