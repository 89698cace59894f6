"""PatchNCE (translate/patchnce.py): the loss against a hand computation, its minimum where the output's features
are the input's, the paper's layers of a ResNet generator, its features() the forward pass's own maps, the same locations
on both sides."""
import math

import pytest
import torch

from translate.networks import define_G
from translate.patchnce import PatchHeads, encoder_layers, feature_channels, patchnce, patchnce_loss


def test_loss_is_the_hand_computed_infonce():
    # one image, two patches, 2-D unit vectors; q0 = k0 exactly, q1 at 90 degrees to k0 and 45 to k1
    s = 1 / math.sqrt(2)
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    k = torch.tensor([[[1.0, 0.0], [s, s]]])
    T = 0.5
    # patch 0: logits (q0.k0, q0.k1) / T = (1, s) / T, positive first; patch 1: (q1.k0, q1.k1) / T = (0, s) / T,
    # positive second
    loss0 = -math.log(math.exp(1 / T) / (math.exp(1 / T) + math.exp(s / T)))
    loss1 = -math.log(math.exp(s / T) / (math.exp(0) + math.exp(s / T)))
    assert patchnce_loss(q, k, T).item() == pytest.approx((loss0 + loss1) / 2, rel=1e-6)


def test_negatives_are_the_other_patches_of_the_same_image():
    # two images: image 1's patches are no negatives of image 0's, so changing them leaves image 0's terms alone
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(2, 5, 8, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(2, 5, 8, generator=g), dim=-1)
    k2 = k.clone()
    k2[1] = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    both, both2 = patchnce_loss(q, k), patchnce_loss(q, k2)
    alone = patchnce_loss(q[:1], k[:1])
    assert both.item() != pytest.approx(both2.item())
    assert (2 * both - patchnce_loss(q[1:], k[1:])).item() == pytest.approx(alone.item(), rel=1e-5)
    assert (2 * both2 - patchnce_loss(q[1:], k2[1:])).item() == pytest.approx(alone.item(), rel=1e-5)


def test_loss_is_lowest_when_output_features_equal_the_inputs():
    g = torch.Generator().manual_seed(1)
    k = torch.nn.functional.normalize(torch.randn(2, 16, 32, generator=g), dim=-1)
    at_equal = patchnce_loss(k, k, 0.07).item()
    for _ in range(20):
        q = torch.nn.functional.normalize(k + 0.5 * torch.randn(k.shape, generator=g), dim=-1)
        assert patchnce_loss(q, k, 0.07).item() > at_equal
    # each output patch the input patch of another location: the worst of all
    assert at_equal < patchnce_loss(k.roll(1, dims=1), k, 0.07).item()


def test_the_papers_layers_of_a_resnet_generator():
    G = define_G("resnet_9blocks", 3, 3, ngf=4)
    layers = encoder_layers(G)
    kinds = [type(G.model[i]).__name__ for i in layers]
    assert kinds == ["ReflectionPad2d", "Conv2d", "Conv2d", "ResnetBlock", "ResnetBlock"]
    blocks = [i for i, m in enumerate(G.model) if type(m).__name__ == "ResnetBlock"]
    assert layers[3:] == (blocks[0], blocks[4])  # the first and the fifth residual block
    assert feature_channels(G, layers) == [3, 8, 16, 16, 16]
    feats = G.features(torch.zeros(1, 3, 32, 32), layers)
    assert [f.shape[1:] for f in feats] == [(3, 38, 38), (8, 16, 16), (16, 8, 8), (16, 8, 8), (16, 8, 8)]
    # with fewer than five blocks the last stands for the fifth
    small = define_G("resnet_2blocks", 3, 3, ngf=4)
    assert type(small.model[encoder_layers(small)[-1]]).__name__ == "ResnetBlock"
    assert encoder_layers(small)[-1] == max(i for i, m in enumerate(small.model) if type(m).__name__ == "ResnetBlock")


def test_features_are_the_forward_passes_own_maps():
    torch.manual_seed(0)
    G = define_G("resnet_2blocks", 3, 3, ngf=4)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    layers = encoder_layers(G)
    seen = {}
    hooks = [G.model[n].register_forward_hook(lambda m, inp, out, n=n: seen.__setitem__(n, out)) for n in layers]
    G(x)
    for h in hooks:
        h.remove()
    for n, f in zip(layers, G.features(x, layers), strict=True):
        torch.testing.assert_close(f, seen[n])


def test_both_sides_are_read_at_the_same_locations():
    torch.manual_seed(0)
    heads = PatchHeads([3], width=4)
    x = torch.randn(1, 3, 6, 6)
    k, where = heads([x], num_patches=5)
    q, again = heads([x], num_patches=5, locations=where)
    assert where[0] is not None and len(where[0]) == 5 and again[0] is where[0]
    torch.testing.assert_close(q[0], k[0])
    assert torch.allclose(k[0].norm(dim=-1), torch.ones(1, 5))
    everywhere, none = heads([x], num_patches=100)  # more than the map has: every location, in order, no draw
    assert none == [None] and everywhere[0].shape == (1, 36, 4)


def test_identity_generator_output_scores_better_than_noise():
    # the whole of PatchNCE through a generator: an output equal to the input is its own best positive
    torch.manual_seed(0)
    G = define_G("resnet_1blocks", 3, 3, ngf=4)
    layers = encoder_layers(G)
    heads = PatchHeads(feature_channels(G, layers), width=8)
    src = torch.rand(2, 3, 16, 16) * 2 - 1
    same = patchnce(G, heads, src, src, layers, num_patches=32)
    noise = patchnce(G, heads, src, torch.rand(2, 3, 16, 16) * 2 - 1, layers, num_patches=32)
    assert same.item() < noise.item()
    # flip equivariance: on the input pixels (layer 0, mirrored by any mirror) a mirrored output compared mirrored
    # back is the output itself; compared as it is, it is another image
    losses, pixels = {}, PatchHeads([3], width=8)
    for name, out, flipped in (("back", src.flip(3), True), ("straight", src, False), ("as is", src.flip(3), False)):
        torch.manual_seed(1)
        losses[name] = patchnce(G, pixels, src, out, (0,), num_patches=32, flipped=flipped).item()
    assert losses["back"] == pytest.approx(losses["straight"], rel=1e-6)
    assert losses["as is"] > losses["straight"] + 0.1
