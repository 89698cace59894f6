import json

import numpy as np
import pytest
import torch
from torch import nn

from translate.errors import ConfigError
from translate.export import export_gan_generator
from translate.gan.networks import (
    Classifier,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
    build_discriminator,
    build_generator,
    sample_labels,
    sample_latents,
    spectral_normalize,
)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_dcgan_shapes_and_range(size):
    G = build_generator("dcgan", nz=10, nc=3, size=size, ngf=8)
    D = build_discriminator("dcgan", nc=3, size=size, ndf=8)
    x = G(torch.randn(5, 10))
    assert x.shape == (5, 3, size, size) and x.abs().max() <= 1
    assert D(x).shape == (5,)
    assert any(isinstance(m, nn.BatchNorm2d) for m in G.modules())


def test_dcgan_rejects_sizes_that_are_not_powers_of_two():
    with pytest.raises(ConfigError, match="size"):
        DCGANGenerator(nz=4, size=24)


@pytest.mark.parametrize("norm", ["none", "layer", "instance"])
def test_critic_norms_have_no_batch_norm(norm):
    D = build_discriminator("dcgan", nc=1, size=16, ndf=8, norm=norm)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    x = torch.randn(4, 1, 16, 16)
    # without batch norm each critic value depends on its own sample only
    torch.testing.assert_close(D(x)[:1], D(x[:1]))


def test_class_conditioning_concatenates_one_hots():
    G = DCGANGenerator(nz=6, nc=1, size=16, ngf=8, num_classes=10)
    D = DCGANDiscriminator(nc=1, size=16, ndf=8, num_classes=10)
    assert G.main[0].in_channels == 6 + 10 and D.main[0].in_channels == 1 + 10
    G.eval()
    z = torch.randn(1, 6).repeat(2, 1)
    a = G(z, torch.tensor([3, 7]))
    assert not torch.allclose(a[0], a[1])  # same z, other class: other image
    x = torch.randn(1, 1, 16, 16).repeat(2, 1, 1, 1)
    d = D.eval()(x, torch.tensor([0, 9]))
    assert d[0] != d[1]
    mg, md = MLPGenerator(nz=4, num_classes=8), MLPDiscriminator(num_classes=8)
    assert mg.main[0].in_features == 12 and md.main[0].in_features == 10
    # the one-hot is exactly what the first layer sees
    y = torch.tensor([5])
    manual = md.main(torch.cat([torch.zeros(1, 2), nn.functional.one_hot(y, 8).float()], 1)).reshape(-1)
    torch.testing.assert_close(md(torch.zeros(1, 2), y), manual)
    with pytest.raises(ValueError, match="labels"):
        mg(torch.randn(2, 4))
    with pytest.raises(ValueError, match="unconditional"):
        MLPGenerator(nz=4)(torch.randn(2, 4), torch.zeros(2, dtype=torch.int64))


def _top_singular_values(net):
    out = []
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            w = m.weight.detach()  # the parametrized (normalised) weight
            out.append(torch.linalg.matrix_norm(w.flatten(1), ord=2).item())
    return out


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_spectral_norm_bounds_the_top_singular_value(arch):
    torch.manual_seed(0)
    kw = dict(nc=3, size=16, ndf=8, norm="none") if arch == "dcgan" else dict(width=64)
    D = build_discriminator(arch, spectral_norm=True, **kw)
    raw = []
    with torch.no_grad():  # scale the raw weights up: without the norm they are far from 1
        for m in D.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.parametrizations.weight.original.mul_(20)
                raw.append(torch.linalg.matrix_norm(m.parametrizations.weight.original.flatten(1), ord=2).item())
    x = torch.randn(8, 3, 16, 16) if arch == "dcgan" else torch.randn(8, 2)
    D.train()
    for _ in range(30):  # each training-mode forward runs one power iteration
        D(x)
    D.eval()
    sigmas = _top_singular_values(D)
    assert len(sigmas) >= 3 and all(abs(s - 1) < 0.05 for s in sigmas), sigmas
    assert min(raw) > 2


def test_spectral_normalize_wraps_linear_and_conv_layers():
    net = spectral_normalize(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 3)))
    from torch.nn.utils import parametrize

    assert parametrize.is_parametrized(net[0], "weight") and parametrize.is_parametrized(net[2], "weight")


def test_truncation_bounds_latents_and_lowers_spread():
    g = torch.Generator().manual_seed(0)
    z = sample_latents(4000, 8, truncation=0.5, generator=g)
    assert z.abs().max() <= 0.5 and z.std() > 0.2  # redrawn, not clamped to the edges
    assert (z.abs() == 0.5).float().mean() < 0.01
    torch.manual_seed(0)
    G = build_generator("mlp", nz=8, width=64).eval()
    full = G(sample_latents(4000, 8, generator=torch.Generator().manual_seed(1)))
    trunc = G(sample_latents(4000, 8, truncation=0.5, generator=torch.Generator().manual_seed(1)))
    spread = lambda x: (x - x.mean(0)).norm(dim=1).mean()  # noqa: E731
    assert spread(trunc) < 0.6 * spread(full)
    with pytest.raises(ConfigError, match="truncation"):
        sample_latents(2, 2, truncation=-1.0)


def test_sample_labels():
    assert sample_labels(5, 0) is None
    assert sample_labels(5, 3).tolist() == [0, 1, 2, 0, 1]
    assert sample_labels(3, 10, 7).tolist() == [7, 7, 7]
    with pytest.raises(ConfigError, match="class"):
        sample_labels(3, 10, 10)
    with pytest.raises(ConfigError, match="unconditional"):
        sample_labels(3, 0, 1)


@pytest.mark.parametrize("conditional", [False, True])
def test_onnx_export_matches_pytorch(tmp_path, conditional):
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    k = 10 if conditional else 0
    G = build_generator("dcgan", nz=12, nc=1, size=16, ngf=8, num_classes=k)
    G.train()
    for _ in range(3):  # move the batch-norm running statistics off their defaults
        G(torch.randn(16, 12), torch.randint(0, 10, (16,)) if k else None)
    G.eval()
    out = tmp_path / "g.onnx"
    _, diff = export_gan_generator(G, {"data": "digits"}, out)
    assert diff < 1e-4
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == (["z", "label"] if k else ["z"])
    z = np.random.default_rng(1).standard_normal((7, 12)).astype(np.float32)
    feed = {"z": z, **({"label": np.arange(7, dtype=np.int64)} if k else {})}
    ref = G(torch.from_numpy(z), torch.arange(7) if k else None).detach().numpy()
    np.testing.assert_allclose(sess.run(None, feed)[0], ref, atol=1e-4)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["translate.kind"] == "gan_generator" and json.loads(meta["translate.num_classes"]) == k


def test_mlp_generator_export(tmp_path):
    G = build_generator("mlp", nz=4, width=16, num_classes=8).eval()
    _, diff = export_gan_generator(G, {}, tmp_path / "p.onnx")
    assert diff < 1e-5


def test_classifier_features_and_logits():
    C = Classifier(nc=1, size=16, num_classes=10, feature_dim=32)
    x = torch.randn(3, 1, 16, 16)
    assert C.features(x).shape == (3, 32) and C(x).shape == (3, 10)
    torch.testing.assert_close(C.head(C.features(x)), C(x))
    P = Classifier(nc=2, size=0, num_classes=8)
    assert P(torch.randn(5, 2)).shape == (5, 8)


# ------------------------------------------------------------------ metrics (translate.gan.metrics)
def test_fid_and_kid_on_known_feature_sets():
    from translate.gan.metrics import fid_from_features, kid_from_features

    g = torch.Generator().manual_seed(0)
    a = torch.randn(3000, 4, generator=g, dtype=torch.float64)
    b = torch.randn(3000, 4, generator=g, dtype=torch.float64)
    assert fid_from_features(a, b) < 0.05  # same distribution
    shift = torch.tensor([3.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    # same covariance, means 3 apart: FID = ||mu_a - mu_b||^2 = 9
    assert fid_from_features(a, b + shift) == pytest.approx(9.0, rel=0.05)
    same, _ = kid_from_features(a, b, subsets=10, subset_size=500)
    moved, _ = kid_from_features(a, b + shift, subsets=10, subset_size=500)
    assert abs(same) < 0.05 and moved > 1.0
    assert kid_from_features(a, b + shift, subsets=10, subset_size=500)[0] == moved  # seeded subsets


def test_class_histogram_diagnoses_collapse():
    import math

    from translate.gan.metrics import class_histogram

    balanced = class_histogram(torch.arange(100) % 10, 10)
    assert balanced["histogram"] == [10] * 10 and balanced["classes_covered"] == 10
    assert balanced["class_reverse_kl"] == pytest.approx(0.0)
    collapsed = class_histogram(torch.full((50,), 3), 10)
    assert collapsed["classes_covered"] == 1 and collapsed["class_reverse_kl"] == pytest.approx(math.log(10))


def test_classifier_features_are_labelled_apart_from_inception():
    from translate.gan.metrics import classifier_features, fid_kid

    C = Classifier(nc=1, size=16, num_classes=10, feature_dim=8)
    feats = classifier_features(C, "digits")
    assert feats.name == "digits_classifier"
    x = torch.rand(40, 1, 16, 16) * 2 - 1
    res = fid_kid(feats, x[:20], x[20:], kid_subsets=5)
    assert set(res) == {"fid_digits_classifier", "kid_digits_classifier", "kid_digits_classifier_std"}


def test_inception_features_load_offline_from_a_weights_file(tmp_path):
    """The FID Inception from a file the user gives (random weights here: nothing downloads)."""
    pytest.importorskip("torch_fidelity")
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from translate.gan.metrics import fid_from_features, inception_features

    class NoLoad(FeatureExtractorInceptionV3):
        def load_state_dict(self, *a, **k):  # build the architecture without any weights
            return None

    torch.save({}, tmp_path / "empty.pth")
    torch.manual_seed(0)
    torch.save(NoLoad("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(tmp_path / "empty.pth"))
               .state_dict(), tmp_path / "weights.pth")
    feats = inception_features(tmp_path / "weights.pth")
    x = torch.rand(4, 1, 16, 16) * 2 - 1  # grayscale is repeated to RGB; the network resizes to 299
    f = feats(x)
    assert feats.name == "inception" and feats.label == "" and f.shape == (4, 2048) and torch.isfinite(f).all()
    assert fid_from_features(f[:2], f[2:]) >= 0
    with pytest.raises(ConfigError, match="nope.pth"):
        inception_features(tmp_path / "nope.pth")
    (tmp_path / "bad.pth").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="bad.pth"):
        inception_features(tmp_path / "bad.pth")
