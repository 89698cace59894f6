"""The GAN family: objectives on hand-made inputs, the WGAN constraints, a short ring8 run that
finds the modes, and a short conditional digits run (conditional accuracy, truncation, z-edit,
export). The gradient penalty's formula is tested in tests/translate/test_losses.py
(test_gradient_penalty_linear_critic); here only that wgangp adds it."""
import json

import numpy as np
import pytest
import torch

from training.classifier import classifier_for_run, edit_toward
from training.gan import GAN, GANConfig
from training.loop import Trainer
from translate.errors import ConfigError
from translate.gan.metrics import predict
from translate.gan.networks import sample_labels, sample_latents
from translate.generators import load_generator


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These networks are tiny: one thread is 3x faster than two, and kinder to a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _method(**kw):
    base = dict(data="ring8", out="", points=2000, batch_size=32, mlp_width=16, mlp_layers=2, progress=False,
                preset="none")
    base.update(kw)
    torch.manual_seed(0)
    return GAN(GANConfig(**base), torch.device("cpu"))


def _step(m, batch):
    """One loop step, as the Trainer makes it (it tells the method how many steps came before)."""
    out = m.step(batch)
    m.steps_done += 1
    return out


def _batch(m, n=32, offset=0):
    return {"x": m.data.train.x[offset:offset + n], "label": m.data.train.labels[offset:offset + n]}


def test_wgangp_step_adds_the_gradient_penalty(monkeypatch):
    m = _method(gan_mode="wgangp", lambda_gp=10.0)
    seen = {}
    import training.adversarial as gan_module

    real_gp = gan_module.gradient_penalty

    def spy(D, real, fake, lambda_gp, **kw):
        out = real_gp(D, real, fake, lambda_gp=lambda_gp, **kw)
        seen["lambda"], seen["gp"] = lambda_gp, out[0].item()
        return out

    monkeypatch.setattr(gan_module, "gradient_penalty", spy)
    out = _step(m, _batch(m))
    assert seen["lambda"] == 10.0 and out["GP"] == pytest.approx(seen["gp"]) and out["GP"] > 0
    # and the critic it penalises is the conditional one when labels are given
    mc = _method(gan_mode="wgangp", conditional=True)
    assert "GP" in _step(mc, _batch(mc))


def test_per_objective_defaults_and_overrides():
    # without a preset (ring8 has one: tests/training/test_presets.py), each objective brings its paper's settings
    w = GANConfig(data="ring8", gan_mode="wgan", preset="none")
    assert (w.optimizer, w.lr, w.n_critic, w.clip) == ("rmsprop", 5e-5, 5, 0.01)
    gp = GANConfig(data="ring8", gan_mode="wgangp", preset="none")
    assert (gp.optimizer, gp.lr, gp.beta1, gp.beta2, gp.n_critic, gp.lambda_gp) == ("adam", 1e-4, 0.0, 0.9, 5, 10.0)
    ns = GANConfig(data="ring8", gan_mode="vanilla", preset="none")
    assert (ns.gan_mode, ns.lr, ns.beta1, ns.beta2, ns.n_critic) == ("nonsaturating", 2e-4, 0.5, 0.999, 1)
    mine = GANConfig(data="ring8", gan_mode="wgangp", lr=1e-3, n_critic=2, preset="none")
    assert (mine.lr, mine.n_critic, mine.beta1) == (1e-3, 2, 0.0)
    assert isinstance(_method(gan_mode="wgan").optimizers["D"], torch.optim.RMSprop)
    adam = GANConfig(data="ring8", gan_mode="wgan", optimizer="adam", preset="none")  # Adam asked for: usable betas
    assert (adam.lr, adam.beta1, adam.beta2) == (5e-5, 0.5, 0.999)
    with pytest.raises(ConfigError, match="d_norm"):
        GANConfig(data="digits", gan_mode="wgangp", d_norm="batch").validate()
    with pytest.raises(ConfigError, match="data"):
        GANConfig(gan_mode="hinge").validate()


def test_weight_clipping_keeps_every_critic_weight_in_range():
    m = _method(gan_mode="wgan", lr=0.5)  # a huge step: every update would leave [-c, c]
    for i in range(6):
        _step(m, _batch(m, offset=32 * i))
    params = torch.cat([p.detach().flatten() for p in m.D.parameters()])
    assert params.abs().max() <= 0.01 + 1e-7
    assert (params.abs() > 0.0099).float().mean() > 0.5  # the clip was active


def test_generator_is_updated_every_n_critic_steps():
    m = _method(gan_mode="wgangp", n_critic=3)
    before = [p.detach().clone() for p in m.G.parameters()]
    for i in range(2):
        _step(m, _batch(m, offset=32 * i))
    assert all(torch.equal(a, b) for a, b in zip(before, m.G.parameters(), strict=True))
    _step(m, _batch(m, offset=64))
    assert not all(torch.equal(a, b) for a, b in zip(before, m.G.parameters(), strict=True))
    assert m.optimizers["D"].state[next(iter(m.D.parameters()))]["step"] == 3


def test_resume_gives_the_same_weights_and_ema(tmp_path):
    kw = dict(data="ring8", points=2000, batch_size=32, mlp_width=16, mlp_layers=2, steps=9, n_critic=2,
              gan_mode="wgangp", ema_decay=0.9, progress=False, export=False, val_every=0, sample_every=100,
              checkpoint_every=100, eval_samples=200)
    a = Trainer(GAN, GANConfig(out=str(tmp_path / "a"), **kw))
    a.fit()
    b = Trainer(GAN, GANConfig(out=str(tmp_path / "b"), **kw))
    b.fit(stop_after=4)
    b = Trainer(GAN, GANConfig(), resume=tmp_path / "b")
    assert b.step == 4 and b.method.steps_done == 4
    b.fit()
    for name in ("G", "D"):
        for k, v in a.method.networks[name].state_dict().items():
            assert torch.equal(v, b.method.networks[name].state_dict()[k]), (name, k)
    for k, v in a.method.G_ema.state_dict().items():
        assert torch.equal(v, b.method.G_ema.state_dict()[k]), k


# ------------------------------------------------------------------ ring8
def test_short_wgangp_run_finds_the_ring8_modes(tmp_path):
    # the WGAN-GP authors' toy setting (lambda 0.1 for 2-D data) with a faster Adam, 2 critic steps,
    # a small MLP, learning-rate decay over the second half and an EMA of G
    cfg = GANConfig(data="ring8", out=str(tmp_path / "ring"), gan_mode="wgangp", lambda_gp=0.1, lr=2e-3, beta1=0.5,
                    n_critic=2, mlp_width=64, batch_size=128, steps=3000, decay_fraction=0.5, ema_decay=0.999,
                    seed=0, progress=False, val_every=0, sample_every=3000, checkpoint_every=3000, export=True)
    run = Trainer(GAN, cfg).fit()
    last = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "val/modes" in x][-1]
    assert last["val/modes"] >= 7, last
    # far more than a diffuse cloud would put within 3 std of the centres (about 1 % per mode)
    assert last["val/high_quality"] > 40.0, last
    assert (run / "samples" / "step_00003000.png").exists() and (run / "model.onnx").exists()
    assert json.loads((run / "config.json").read_text())["beta2"] == 0.9  # the objective's default was kept


# ------------------------------------------------------------------ digits
@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "digits"
    cfg = GANConfig(data="digits", out=str(out), size=16, ngf=16, ndf=16, nz=32, batch_size=64, steps=240,
                    conditional=True, gan_mode="nonsaturating", lr=5e-4, ema_decay=0.99, progress=False,
                    val_every=0, sample_every=240, checkpoint_every=240, eval_samples=500, classifier_steps=250)
    torch.manual_seed(0)
    Trainer(GAN, cfg).fit()
    return out


def test_conditional_samples_are_the_asked_class(digits_run):
    rows = [json.loads(x) for x in (digits_run / "metrics.jsonl").read_text().splitlines() if "val/" in x]
    assert rows[-1]["val/classes_covered"] == 10 and "val/fid_digits_classifier" in rows[-1]
    G, meta = load_generator(digits_run)
    C, info = classifier_for_run(digits_run)
    assert info["val_accuracy"] > 0.9
    g = torch.Generator().manual_seed(1)
    acc = []
    for k in range(10):
        with torch.no_grad():
            x = G(sample_latents(50, G.nz, generator=g), sample_labels(50, 10, k))
        acc.append(float((predict(C, x)[0] == k).float().mean()))
    assert np.mean(acc) > 0.5, acc  # chance is 0.1


def test_truncation_lowers_sample_spread(digits_run):
    G, _ = load_generator(digits_run)
    y = sample_labels(400, 10)
    spread = {}
    for t in (0.0, 0.5):
        with torch.no_grad():
            x = G(sample_latents(400, G.nz, t, generator=torch.Generator().manual_seed(2)), y).flatten(1)
        spread[t] = float(torch.stack([(x[y == k] - x[y == k].mean(0)).norm(dim=1).mean() for k in range(10)]).mean())
    assert spread[0.5] < 0.9 * spread[0.0], spread


def test_latent_edit_raises_the_classifier_score(digits_run):
    G, _ = load_generator(digits_run)
    C, _ = classifier_for_run(digits_run)
    z = sample_latents(16, G.nz, generator=torch.Generator().manual_seed(3))
    y = torch.full((16,), 1)  # drawn as 1s, steered toward 7
    outs, scores = edit_toward(G, C, z, target=7, steps=15, eta=0.5, y=y)
    assert len(outs) == 16 and outs[0].shape == (16, 1, 16, 16)
    assert scores[-1].mean() > scores[0].mean() + 0.1, (scores[0].mean(), scores[-1].mean())
    with pytest.raises(ConfigError, match="toward"):
        edit_toward(G, C, z, target=10)


def test_exported_generator_matches_pytorch(digits_run):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(digits_run / "model.onnx"), providers=["CPUExecutionProvider"])
    G, meta = load_generator(digits_run)
    assert meta["ema"]
    z = torch.randn(6, G.nz)
    y = torch.arange(6)
    got = sess.run(None, {"z": z.numpy(), "label": y.numpy()})[0]
    np.testing.assert_allclose(got, G(z, y).detach().numpy(), atol=1e-4)
