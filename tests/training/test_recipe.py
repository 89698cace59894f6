"""The training recipe's flags in Pix2Pix and CycleGAN (--ema-decay, --diffaugment, --num-d, --feature-matching,
--gan-mode hinge, --spectral-norm, --lr-d): each changes training as it says, a run with all of them on resumes
to the bit, and the exported model is the weight average."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from tests.training.shared_checks import check_exact_resume
from training.cyclegan import CycleGAN
from training.loop import Trainer
from training.pix2pix import Pix2Pix
from translate.checkpoint import load_checkpoint
from translate.ema import decay_at
from translate.errors import ConfigError
from translate.networks import MultiscaleDiscriminator, define_G, to_inference

# every part on, at sizes the tiny 32 px configs take (two scales need a shallower PatchGAN)
RECIPE = dict(ema_decay=0.9, diffaugment="color,translation,cutout", num_d=2, netD="n_layers", n_layers_D=2,
              feature_matching=10.0, gan_mode="hinge", spectral_norm=True, lr_d=4e-4)


def _built(cls, data, tmp, **flags):
    """The method on CPU in float32 (the formulas below are exact there; bf16 autocast is the default on CPUs with
    avx512_bf16), built as the loop builds it, and a function giving its k-th training batch."""
    cfg = cls.tiny_config(data, tmp, **{"amp": False, **flags})
    cfg.validate()
    torch.manual_seed(0)
    m = cls(cfg, torch.device("cpu"))
    train, _ = m.datasets()
    bs = cfg.batch_size

    def batch(k: int) -> dict:
        return torch.utils.data.default_collate([train[i] for i in range(k * bs, (k + 1) * bs)])
    return m, batch


def _steps(m, batch, n: int) -> list[dict]:
    out = []
    for k in range(n):
        m.steps_done = k
        out.append(m.step(batch(k)))
    return out


def test_ema_is_the_closed_form_average_of_the_generators_weights(tiny_pairs, tmp_path):
    m, batch = _built(Pix2Pix, tiny_pairs, tmp_path, ema_decay=0.5)
    w = [m.G.state_dict()["model.model.0.weight"].clone()]
    for k in range(4):
        m.steps_done = k
        m.step(batch(k))
        w.append(m.G.state_dict()["model.model.0.weight"].clone())
    expected = w[0]
    for k in range(4):
        d = decay_at(0.5, k)
        expected = d * expected + (1 - d) * w[k + 1]
    ema = m.networks["G_ema"].state_dict()["model.model.0.weight"]
    assert torch.allclose(ema, expected, atol=1e-7)
    assert not torch.allclose(ema, w[-1], atol=1e-5)
    # validation, samples and export take the average
    assert m.generators()["AtoB"].network == "G_ema"
    assert torch.equal(m.eval_generators()["AtoB"].state_dict()["model.model.0.weight"], ema)


def test_cyclegan_averages_both_generators(tiny_pairs, tmp_path):
    m, batch = _built(CycleGAN, tiny_pairs, tmp_path, ema_decay=0.9)
    _steps(m, batch, 2)
    assert {"G_A_ema", "G_B_ema"} <= set(m.networks)
    assert {s.network for s in m.generators().values()} == {"G_A_ema", "G_B_ema"}
    ema, raw = m.networks["G_B_ema"].state_dict(), m.G_B.state_dict()
    assert any(not torch.equal(ema[k], raw[k]) for k in raw if raw[k].is_floating_point())


def _d_inputs(D: nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    D.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen


@pytest.mark.parametrize("policy", ["", "translation"])
def test_diffaugment_moves_what_the_discriminator_sees(tiny_pairs, tmp_path, policy):
    m, batch = _built(Pix2Pix, tiny_pairs, tmp_path, diffaugment=policy)
    seen = _d_inputs(m.D)
    b = batch(0)
    m.step(b)
    real_AB = torch.cat((b["A"], b["B"]), 1)
    assert len(seen) == 3  # D step: fake pair, real pair; G step: fake pair
    assert torch.equal(seen[1], real_AB) == (not policy)


def test_cyclegan_augments_each_domain_apart(tiny_pairs, tmp_path):
    m, batch = _built(CycleGAN, tiny_pairs, tmp_path, diffaugment="cutout")
    seen = _d_inputs(m.D_A)  # judges B images
    b = batch(0)
    m.step(b)
    real_B = seen[1]
    assert real_B.shape == b["B"].shape and not torch.equal(real_B, b["B"])
    assert ((real_B == 0) & (b["B"] != 0)).any()  # a cut-out square


def test_multiscale_hinge_loss_is_the_sum_of_each_scales_formula(tiny_pairs, tmp_path):
    m, batch = _built(Pix2Pix, tiny_pairs, tmp_path, num_d=2, netD="n_layers", n_layers_D=2, gan_mode="hinge",
                      norm="instance")
    assert isinstance(m.D, MultiscaleDiscriminator) and len(m.D.scales) == 2
    b = batch(0)
    with torch.no_grad():
        outs = m.D(torch.cat((b["A"], b["B"]), 1))
    assert [o.shape[-1] for o in outs] == [6, 2]  # 32 px and 16 px through two stride-2 layers and two of stride 1
    expected = sum(torch.relu(1 - o).mean().item() for o in outs)
    assert m.step(b)["D_real"] == pytest.approx(expected, rel=1e-5)


def test_feature_matching_adds_a_generator_loss(tiny_pairs, tmp_path):
    p2p, batch = _built(Pix2Pix, tiny_pairs, tmp_path / "p", feature_matching=10.0)
    assert p2p.step(batch(0))["G_FM"] > 0
    cyc, batch = _built(CycleGAN, tiny_pairs, tmp_path / "c", feature_matching=10.0)
    losses = cyc.step(batch(0))
    assert losses["FM_A"] > 0 and losses["FM_B"] > 0
    plain, batch = _built(Pix2Pix, tiny_pairs, tmp_path / "n")
    assert "G_FM" not in plain.step(batch(0))


def test_spectral_norm_bounds_every_layer_of_the_discriminator(tiny_pairs, tmp_path):
    m, batch = _built(Pix2Pix, tiny_pairs, tmp_path, spectral_norm=True)
    _steps(m, batch, 3)
    convs = [x for x in m.D.modules() if isinstance(x, nn.Conv2d)]
    sigmas = [torch.linalg.matrix_norm(c.weight.detach().flatten(1), ord=2).item() for c in convs]
    assert len(sigmas) == 5 and all(0.9 < s < 1.1 for s in sigmas), sigmas
    assert not any(parametrize.is_parametrized(x) for x in m.G.modules())  # D only


@pytest.mark.parametrize("cls", [Pix2Pix, CycleGAN])
def test_lr_d_is_the_discriminators_rate(tiny_pairs, tmp_path, cls):
    m, _ = _built(cls, tiny_pairs, tmp_path / "ttur", lr_d=4e-4)
    assert m.optimizers["D"].param_groups[0]["lr"] == 4e-4 and m.optimizers["G"].param_groups[0]["lr"] == 2e-4
    plain, _ = _built(cls, tiny_pairs, tmp_path / "plain")
    assert plain.config.lr_d == plain.config.lr == plain.optimizers["D"].param_groups[0]["lr"]


@pytest.mark.parametrize("cls", [Pix2Pix, CycleGAN])
def test_a_resumed_run_with_every_flag_is_the_run_that_never_stopped(cls, tiny_pairs, tmp_path):
    check_exact_resume(cls, tiny_pairs, tmp_path, **RECIPE)


def test_the_exported_model_is_the_weight_average(tiny_pairs, tmp_path):
    import onnxruntime as ort

    run = Trainer(Pix2Pix, Pix2Pix.tiny_config(tiny_pairs, tmp_path / "run", steps=3, ema_decay=0.9, lr=5e-3,
                                               export=True, val_every=0, sample_every=100)).fit()
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    networks, arch = ckpt["networks"], ckpt["generators"]["AtoB"]["arch"]
    G, G_ema = define_G(**arch), define_G(**arch)  # the checkpoint's generator, rebuilt both ways
    G.load_state_dict(networks["G"])
    G_ema.load_state_dict(networks["G_ema"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    sess = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        ema_out = to_inference(G_ema, batch_stats=False)(x)
        raw_out = to_inference(G, batch_stats=False)(x)
    off_ema, off_raw = (onnx_out - ema_out).abs().max().item(), (onnx_out - raw_out).abs().max().item()
    assert off_ema < 1e-5 and off_raw > 100 * max(off_ema, 1e-7), (off_ema, off_raw)


def test_fine_tuning_a_run_without_an_average_starts_it_from_the_generator(tiny_pairs, tmp_path):
    source = Trainer(Pix2Pix, Pix2Pix.tiny_config(tiny_pairs, tmp_path / "src", steps=1, val_every=0,
                                                  sample_every=100)).fit()
    tuned = Trainer(Pix2Pix, Pix2Pix.tiny_config(tiny_pairs, tmp_path / "tuned", ema_decay=0.9,
                                                 init_from=str(source)))
    G = load_checkpoint(source / "checkpoints" / "latest.pt")["networks"]["G"]
    for k, v in G.items():
        assert torch.equal(tuned.method.networks["G_ema"].state_dict()[k], v), k


@pytest.mark.parametrize("flags, field", [
    (dict(num_d=0), "num_d"),
    (dict(num_d=3), "num_d"),  # 32 px -> 8 px: too small for the 70x70 PatchGAN
    (dict(feature_matching=-1.0), "feature_matching"),
    (dict(diffaugment="color,rotate"), "diffaugment"),
    (dict(ema_decay=1.0), "ema_decay"),
    (dict(lr_d=0.0), "lr_d"),
])
def test_bad_recipe_values_are_named(tiny_pairs, tmp_path, flags, field):
    with pytest.raises(ConfigError) as e:
        Trainer(Pix2Pix, Pix2Pix.tiny_config(tiny_pairs, tmp_path / "bad", **flags))
    assert e.value.field == field
