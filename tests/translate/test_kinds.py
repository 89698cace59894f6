"""The registry of generator kinds (translate/kinds.py): every tool asks it, and a new kind is one module
and one entry. The toy kind (tests/translate/toy_kind.py) is added here with one line and nothing else."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

import translate
from serving.store import ModelStore
from translate import kinds
from translate.checkpoint import CHECKPOINT_FORMAT, GeneratorSpec
from translate.errors import ModelError
from translate.export import export_model
from translate.generators import generator_kind, load_generator
from translate.onnx_meta import read_metadata
from translate_cli.main import main

from .toy_kind import KIND, Decoder


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(kinds.KINDS, "toy", KIND)  # the one registry line


@pytest.fixture
def toy_checkpoint(tmp_path):
    G = Decoder(nz=2, size=4)
    spec = GeneratorSpec(network="G", arch={"nz": 2, "size": 4}, direction="", method="toyvae", kind="toy")
    path = tmp_path / "toy.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "step": 3, "config": {}, "networks": {"G": G.state_dict()},
                "generators": {"G": spec.to_dict()}}, path)
    return path, G


def test_an_unregistered_kind_is_named_with_the_known_ones(toy_checkpoint):
    path, _ = toy_checkpoint
    with pytest.raises(ModelError, match=r"unknown generator kind 'toy' \(this version knows \['gan', 'multimodal', 'segmenter', 'translation', 'vae'\]"):
        load_generator(path)


def test_a_new_kind_is_loaded_exported_and_refused_by_the_translators(toy, toy_checkpoint, tmp_path, capsys):
    path, G = toy_checkpoint
    assert generator_kind(path) == "toy"
    loaded, meta = load_generator(path)
    z = torch.randn(5, 2)
    assert meta["kind"] == "toy" and torch.equal(loaded(z), G.eval()(z))

    out = tmp_path / "toy.onnx"
    export_model(path, out)
    assert read_metadata(out)["kind"] == "toy_decoder"
    got = ort.InferenceSession(str(out)).run(None, {"z": z.numpy()})[0]
    np.testing.assert_allclose(got, G(z).detach().numpy(), atol=1e-5)

    # refused by the predictor from the ONNX file's own metadata, and before export from a checkpoint
    with pytest.raises(ModelError, match=r"toy.onnx: a toy model \(a latent in, an image out\), not an image "
                                         r"translator, which the predictor needs; use `toy-sample` with the run"):
        translate.load(out)
    with pytest.raises(ModelError, match="a toy model"):
        translate.load(path)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ModelError, match=r"toy.onnx: a toy model .* which the model store needs; use `toy-sample`"):
        store.register("toy", out)
    assert store.list() == []
    with pytest.raises(SystemExit):
        main(["export", str(path), "--out", str(tmp_path / "again.onnx"), "--register", "toy", "--store", str(tmp_path / "store")])
    assert "the model store (--register)" in capsys.readouterr().err
    assert not (tmp_path / "again.onnx").exists()

    main(["evaluate", str(path)])  # `translate evaluate` runs the kind's own handler
    assert json.loads(capsys.readouterr().out) == {"toy": str(path)}


def test_gan_models_are_refused_by_the_predictor_from_their_onnx_kind(tmp_path):
    from translate.export import export_gan_generator
    from translate.gan.networks import build_generator

    G = build_generator("mlp", 2, out_dim=2, width=8, layers=2)
    out = tmp_path / "gan.onnx"
    export_gan_generator(G, {}, out)
    with pytest.raises(ModelError, match=r"a gan model \(latents in, samples out\).*use `translate sample`"):
        translate.load(out)
    with pytest.raises(ModelError, match=r"a gan model .* which the model store needs"):
        ModelStore(tmp_path / "store").register("gan", out.read_bytes())


def test_an_unreadable_model_is_named(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="bad.onnx: not a readable ONNX model"):
        read_metadata(bad)


def test_translation_models_say_their_kind_and_older_ones_read_as_translation(tmp_path):
    from translate.export import export_generator
    from translate.networks import define_G, to_inference

    arch = dict(name="unet_32", input_nc=3, output_nc=3, ngf=4, norm="instance", use_dropout=False)
    data, _ = export_generator(to_inference(define_G(**arch), batch_stats=False), {"arch": arch})
    assert read_metadata(data)["kind"] == "translation"
    assert kinds.onnx_kind({}).name == "translation"  # exported before kinds were written
    with pytest.raises(ModelError, match="a model of kind 'diffusion_decoder', which this version cannot run"):
        kinds.onnx_kind({"kind": "diffusion_decoder"})
