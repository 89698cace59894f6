import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from translate.metrics import PSNR_CAP, MeanMetrics, image_metrics, l1, psnr, ssim

SIZES = [8, 32]


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("size", SIZES)
def test_identical_images(size):
    x = _images(4, size)
    m = image_metrics(x, x)
    assert set(m) == {"l1", "psnr", "ssim"}
    for values in m.values():
        assert values.shape == (4,)
    assert torch.equal(m["l1"], torch.zeros(4))
    assert torch.allclose(m["ssim"], torch.ones(4), atol=1e-5)
    assert torch.equal(m["psnr"], torch.full((4,), PSNR_CAP))
    assert torch.isfinite(m["psnr"]).all()


@pytest.mark.parametrize("size", SIZES)
def test_constant_offset_l1_and_psnr_match_numpy(size):
    real = _images(3, size, seed=1) * 0.5  # in [-0.5, 0.5]: no clamping after the offset
    offsets = torch.tensor([0.1, 0.2, 0.4]).view(3, 1, 1, 1)
    fake = real + offsets

    assert torch.allclose(l1(fake, real), offsets.flatten(), atol=1e-6)  # on the [-1, 1] scale

    f01 = (fake.numpy().astype(np.float64) + 1) / 2
    r01 = (real.numpy().astype(np.float64) + 1) / 2
    mse = ((f01 - r01) ** 2).reshape(3, -1).mean(axis=1)
    expected = 10 * np.log10(1.0 / mse)
    np.testing.assert_allclose(psnr(fake, real).numpy(), expected, rtol=1e-4)
    # By hand: an offset d on [-1, 1] is d/2 on [0, 1], so PSNR = 10 log10(4 / d^2).
    for value, d in zip(psnr(fake, real).tolist(), [0.1, 0.2, 0.4], strict=True):
        assert value == pytest.approx(10 * math.log10(4 / d**2), rel=1e-4)


@pytest.mark.parametrize("size", SIZES)
def test_ssim_constant_images_hand_value(size):
    # Constant images a, b on [0, 1]: all variances vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a01, b01 = 0.75, 0.25
    fake = torch.full((2, 3, size, size), 2 * a01 - 1, dtype=torch.float64)
    real = torch.full((2, 3, size, size), 2 * b01 - 1, dtype=torch.float64)
    c1 = 0.01**2
    expected = (2 * a01 * b01 + c1) / (a01**2 + b01**2 + c1)
    values = ssim(fake, real)
    assert values.dtype == torch.float64
    assert torch.allclose(values, torch.full((2,), expected, dtype=torch.float64), atol=1e-9)
    # float32 differs only by rounding in the (zero) variance terms.
    assert torch.allclose(ssim(fake.float(), real.float()), torch.full((2,), expected), atol=1e-3)


@pytest.mark.parametrize("size", SIZES)
def test_ssim_noise_lower_than_identical(size):
    x = _images(2, size, seed=2)
    noisy = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(-1, 1)
    s_same, s_noisy = ssim(x, x), ssim(noisy, x)
    assert s_noisy.shape == (2,)
    assert (s_noisy < s_same - 0.1).all()


def test_ssim_default_window_matches_torchmetrics():
    x, y = _images(2, 32, seed=4), _images(2, 32, seed=5)
    ref = structural_similarity_index_measure((x + 1) / 2, (y + 1) / 2, data_range=1.0, reduction="none")
    assert torch.allclose(ssim(x, y), ref)


@pytest.mark.parametrize("size", [3, 4, 5, 10, 11])
def test_ssim_small_images_shrink_window(size):
    x, y = _images(2, size, seed=6), _images(2, size, seed=7)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)
    values = ssim(x, y)
    assert values.shape == (2,) and torch.isfinite(values).all() and (values < 1).all()


def test_ssim_too_small_and_shape_checks():
    with pytest.raises(ValueError):
        ssim(torch.zeros(1, 3, 2, 8), torch.zeros(1, 3, 2, 8))
    with pytest.raises(ValueError):
        l1(torch.zeros(1, 3, 8, 8), torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError):
        psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


def test_metrics_do_not_track_gradients():
    x = _images(2, 8).requires_grad_(True)
    y = _images(2, 8, seed=9)
    for values in image_metrics(x, y).values():
        assert not values.requires_grad


def test_mean_metrics_aggregates():
    x1, y1 = _images(3, 8, seed=10), _images(3, 8, seed=11)
    x2, y2 = _images(2, 8, seed=12), _images(2, 8, seed=13)
    acc = MeanMetrics()
    with pytest.raises(RuntimeError):
        acc.compute()
    b1 = acc.update(x1, y1)
    acc.update(x2, y2)
    assert len(acc) == 5 and len(acc.per_image) == 5
    assert acc.per_image[0]["l1"] == pytest.approx(b1["l1"][0].item())

    everything = image_metrics(torch.cat([x1, x2]), torch.cat([y1, y2]))
    means = acc.compute()
    assert set(means) == {"l1", "psnr", "ssim"}
    for name, values in everything.items():
        assert isinstance(means[name], float)
        assert means[name] == pytest.approx(values.mean().item(), rel=1e-5)
        assert [row[name] for row in acc.per_image] == pytest.approx(values.tolist(), rel=1e-5)

    acc.reset()
    assert len(acc) == 0
    acc.update(x1, x1)
    assert acc.compute() == pytest.approx({"l1": 0.0, "psnr": PSNR_CAP, "ssim": 1.0}, abs=1e-5)


def test_a_training_process_does_not_import_torchmetrics_before_it_validates():
    """torchmetrics drags in torchvision's models, torch._dynamo and scipy (about 90 MB, 2 s): a
    trainer's imports must not pay it, only its first validation (rank 0 of a data-parallel run)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, torch\n"
            "import training.pix2pix, training.cyclegan, training.gan, training.distributed\n"
            "assert 'torchmetrics' not in sys.modules, 'imported with the trainers'\n"
            "from translate.metrics import image_metrics\n"
            "x = torch.zeros(1, 3, 16, 16)\n"
            "assert float(image_metrics(x, x)['ssim'][0]) > 0.99\n"
            "assert 'torchmetrics' in sys.modules\n")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
