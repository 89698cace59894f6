"""DiffAugment (translate/diffaugment.py): one transform for every image passed, colour per image of a pair,
differentiable, policies checked."""
import pytest
import torch

from translate.diffaugment import diff_augment, parse_policy


def test_the_same_translation_moves_both_halves_of_a_pair():
    torch.manual_seed(0)
    a = torch.rand(4, 3, 16, 16) * 2 - 1
    pair = torch.cat((a, -a), 1)  # the output is a function of the input, pixel by pixel
    (out,) = diff_augment("translation", pair, groups=(3, 3))
    moved = ~torch.isclose(out[:, :3], a).all(dim=(1, 2, 3))
    assert moved.any()  # something moved: 4 images, 17 x 17 shifts each
    assert torch.equal(out[:, 3:], -out[:, :3])  # ... and the other half moved with it


def test_real_and_fake_passed_together_share_the_transform():
    torch.manual_seed(1)
    x = torch.rand(3, 3, 16, 16)
    a, b = diff_augment("color,translation,cutout", x, x.clone())
    assert torch.equal(a, b)
    c = diff_augment("color,translation,cutout", x)[0]  # a second draw differs
    assert not torch.equal(a, c)


def test_color_of_each_image_of_a_pair_takes_its_own_mean():
    """Saturation pulls channels toward their image's mean: a gray input stays gray beside a coloured output."""
    torch.manual_seed(2)
    gray = torch.full((2, 3, 8, 8), 0.3)
    colour = torch.rand(2, 3, 8, 8)
    (out,) = diff_augment("color", torch.cat((gray, colour), 1), groups=(3, 3))
    first = out[:, :3]
    assert torch.allclose(first, first[:, :1].expand_as(first), atol=1e-6)


def test_cutout_zeroes_a_square_of_a_quarter():
    torch.manual_seed(3)
    (out,) = diff_augment("cutout", torch.ones(8, 1, 16, 16))
    zeros = (out == 0).flatten(1).sum(1)
    assert zeros.max().item() == 64 and zeros.min().item() >= 16  # 8 x 8, clipped at the borders


def test_gradients_flow_through_every_operation():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    (out,) = diff_augment("color,translation,cutout", x)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_empty_policy_is_the_identity_and_unknown_names_are_refused():
    x = torch.rand(1, 3, 4, 4)
    assert diff_augment("", x)[0] is x
    assert parse_policy(" color, cutout ") == ("color", "cutout")
    with pytest.raises(ValueError, match="'rotate'.*known: color, translation, cutout"):
        parse_policy("color,rotate")
