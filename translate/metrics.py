"""Per-image quality metrics (L1, PSNR, SSIM) for NCHW images in [-1, 1].

Metrics are computed in float32 (float64 if either input is float64). Scales, explicitly:

* ``l1`` is the mean absolute error on the native [-1, 1] scale (the same scale as the L1
  training loss in :mod:`translate.losses`).
* ``psnr`` and ``ssim`` are computed by torchmetrics on images mapped to [0, 1] by
  ``(x + 1) / 2`` and clamped to [0, 1], with ``data_range=1.0``. PSNR is therefore
  ``10 * log10(1 / mse_[0,1])``; it is capped at :data:`PSNR_CAP` dB (identical images would give
  ``inf``).
* SSIM uses the standard 11x11 Gaussian window (sigma 1.5). For images smaller than 11 px the
  window shrinks to the largest odd size ``k <= min(H, W)`` with ``sigma = (k // 2) / 3.5``; images
  smaller than 3 px are rejected.

torchmetrics is imported where it is used (``# lazy``): importing it pulls in torchvision's models,
``torch._dynamo`` and ``scipy.signal`` (2.4 s and about 90 MB on a 2-CPU machine), which a training
process would otherwise pay before its first step, and every process of a data-parallel run but the
one that validates would pay for nothing (BENCHMARKS.md, "CPU speed against the reference").
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["METRIC_NAMES", "PSNR_CAP", "MeanMetrics", "image_metrics", "l1", "psnr", "ssim"]

PSNR_CAP: float = 100.0
METRIC_NAMES: tuple[str, ...] = ("l1", "psnr", "ssim")

_SSIM_KERNEL = 11
_SSIM_SIGMA = 1.5
_SSIM_MIN_SIZE = 3


def _check(fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
    if fake.dim() != 4 or fake.shape != real.shape:
        raise ValueError(f"expected two NCHW tensors of the same shape, got {tuple(fake.shape)} and {tuple(real.shape)}")
    dtype = torch.float64 if torch.float64 in (fake.dtype, real.dtype) else torch.float32
    return fake.detach().to(dtype), real.detach().to(dtype)


def _to_unit(x: Tensor) -> Tensor:
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def _ssim_window(height: int, width: int) -> tuple[int, float]:
    """Gaussian window (kernel size, sigma) fitting an image of ``height`` x ``width``."""
    size = min(height, width)
    if size >= _SSIM_KERNEL:
        return _SSIM_KERNEL, _SSIM_SIGMA
    if size < _SSIM_MIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {_SSIM_MIN_SIZE}x{_SSIM_MIN_SIZE}, got {height}x{width}")
    kernel = size if size % 2 == 1 else size - 1
    # torchmetrics derives the Gaussian window size from sigma as 2 * int(3.5 * sigma + 0.5) + 1.
    return kernel, (kernel // 2) / 3.5


@torch.no_grad()
def l1(fake: Tensor, real: Tensor) -> Tensor:
    """Per-image mean absolute error on the [-1, 1] scale, shape (N,)."""
    fake, real = _check(fake, real)
    return (fake - real).abs().flatten(1).mean(dim=1)


@torch.no_grad()
def psnr(fake: Tensor, real: Tensor) -> Tensor:
    """Per-image PSNR in dB on the [0, 1] scale, capped at :data:`PSNR_CAP`, shape (N,)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio  # lazy: see the module's docstring

    fake, real = _check(fake, real)
    values = peak_signal_noise_ratio(_to_unit(fake), _to_unit(real), data_range=1.0, reduction="none", dim=(1, 2, 3))
    return values.nan_to_num(nan=PSNR_CAP, posinf=PSNR_CAP).clamp(max=PSNR_CAP)


@torch.no_grad()
def ssim(fake: Tensor, real: Tensor) -> Tensor:
    """Per-image SSIM on the [0, 1] scale (Gaussian window, see module docstring), shape (N,)."""
    from torchmetrics.functional.image import structural_similarity_index_measure  # lazy: see the module's docstring

    fake, real = _check(fake, real)
    kernel, sigma = _ssim_window(fake.shape[-2], fake.shape[-1])
    values = structural_similarity_index_measure(
        _to_unit(fake), _to_unit(real), gaussian_kernel=True, sigma=sigma, kernel_size=kernel,
        reduction="none", data_range=1.0,
    )
    assert isinstance(values, Tensor)
    return values.reshape(-1)


def image_metrics(fake: Tensor, real: Tensor) -> dict[str, Tensor]:
    """``{'l1', 'psnr', 'ssim'}`` per image, each of shape (N,)."""
    return {"l1": l1(fake, real), "psnr": psnr(fake, real), "ssim": ssim(fake, real)}


class MeanMetrics:
    """Accumulates :func:`image_metrics` over batches; :meth:`compute` gives per-image means."""

    def __init__(self) -> None:
        self.per_image: list[dict[str, float]] = []

    def __len__(self) -> int:
        return len(self.per_image)

    def reset(self) -> None:
        self.per_image = []

    def update(self, fake: Tensor, real: Tensor) -> dict[str, Tensor]:
        """Add a batch; returns its per-image metrics."""
        batch = image_metrics(fake, real)
        columns = {name: values.cpu().tolist() for name, values in batch.items()}
        for i in range(fake.shape[0]):
            self.per_image.append({name: float(columns[name][i]) for name in METRIC_NAMES})
        return batch

    def compute(self) -> dict[str, float]:
        """Mean of each metric over all images seen since the last :meth:`reset`."""
        if not self.per_image:
            raise RuntimeError("MeanMetrics.compute() called before any update()")
        n = len(self.per_image)
        return {name: sum(row[name] for row in self.per_image) / n for name in METRIC_NAMES}
