"""The U-Net's 4x4 stride-2 convolutions, run as one matrix product where oneDNN is slow.

On CPU, PyTorch hands every convolution to oneDNN, which first reorders the weight into its own
blocked layout. For the layers near a U-Net's bottleneck the weight is large (up to 1024 x 512 x 4 x 4)
and the activation tiny (1x1 to 8x8 pixels at batch 1), so the reorder, done again on every call and in
every backward, costs more than the arithmetic: in unet_256's Pix2Pix step the eight innermost layers took
about 100 ms of 440 while doing 2 % of the work (BENCHMARKS.md, "Pix2Pix on CPU: the bottleneck
layers"). Written as ``unfold`` + matrix product (convolution) or matrix product + ``fold``
(transposed convolution), the same arithmetic needs no reorder and runs 1.5 to 3x faster there.

``MatmulConv2d`` and ``MatmulConvTranspose2d`` are ``nn.Conv2d`` / ``nn.ConvTranspose2d`` with the same
parameters and state-dict keys; they take the matrix path only where ``benchmarks/bottleneck_convs.py``
measured it faster: on CPU, at most :data:`MAX_PIXELS` output positions (convolution) or input positions
(transposed) over the batch, under bf16 autocast; in fp32 only the transposed convolutions of at least
1024 -> 512 channels (oneDNN's fp32 kernels hold their own elsewhere). Never while exporting to ONNX, whose
runtime prepacks weights once and keeps the standard operators.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_PIXELS", "MatmulConv2d", "MatmulConvTranspose2d", "conv2d_as_matmul", "conv_transpose2d_as_matmul"]

#: Batch x positions up to which the matrix path is taken (measured crossover at 256 and 512 channels).
MAX_PIXELS = 64
#: In fp32 only transposed convolutions this large gain (1024 -> 512: 0.4-0.7x; 512 -> 256 and the
#: convolutions: 0.5-1.9x, no gain over a U-Net's levels; BENCHMARKS.md).
_FP32_MIN_CHANNEL_PRODUCT = 1024 * 512


def conv2d_as_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)`` (no groups, no dilation) as unfold + matmul."""
    n, _, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (w + 2 * padding[1] - kw) // stride[1] + 1
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    cols = F.unfold(x.to(dtype), (kh, kw), padding=padding, stride=stride)  # N x (cin kh kw) x (ho wo)
    if weight.is_contiguous():
        out = torch.matmul(weight.reshape(cout, -1), cols)
    else:  # a channels-last weight is (cout, kh, kw, cin) in memory: order the small columns to match it
        cin = weight.shape[1]
        cols = cols.view(n, cin, kh * kw, -1).transpose(1, 2).reshape(n, kh * kw * cin, -1)
        out = torch.matmul(weight.permute(0, 2, 3, 1).reshape(cout, -1), cols)
    out = out.view(n, cout, ho, wo)
    return out if bias is None else out + bias.to(out.dtype).view(1, -1, 1, 1)


def conv_transpose2d_as_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                               stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, bias, stride, padding)`` (no groups, dilation or output padding)
    as matmul + fold: every input pixel spreads ``weight^T x`` over a kh x kw window of the output."""
    n, cin, h, w = x.shape
    _, cout, kh, kw = weight.shape
    ho = (h - 1) * stride[0] - 2 * padding[0] + kh
    wo = (w - 1) * stride[1] - 2 * padding[1] + kw
    # (N, hw, cin) @ (cin, cout kh kw): the small activation is transposed, the large weight used as it lies
    x_rows = x.reshape(n, cin, h * w).transpose(1, 2)
    if weight.is_contiguous():
        cols = torch.matmul(x_rows, weight.reshape(cin, cout * kh * kw)).transpose(1, 2)
    else:  # a channels-last weight is (cin, kh, kw, cout) in memory: reorder the small product instead
        cols = torch.matmul(x_rows, weight.permute(0, 2, 3, 1).reshape(cin, kh * kw * cout))
        cols = cols.view(n, h * w, kh * kw, cout).permute(0, 3, 2, 1).reshape(n, cout * kh * kw, h * w)
    # the overlapping windows are summed in fp32, as oneDNN accumulates, then rounded once
    out = F.fold(cols.float(), (ho, wo), (kh, kw), padding=padding, stride=stride)
    if bias is not None:
        out = out + bias.float().view(1, -1, 1, 1)
    return out.to(cols.dtype)


def _like_input(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The matrix forms give NCHW; a channels-last network gets channels-last back (mixing layouts made the
    next layers of a channels-last unet_256 slower than the whole gain: 120 against 93 ms in bf16)."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return out.contiguous(memory_format=torch.channels_last)
    return out


def _matmul_is_faster(x: torch.Tensor, positions: int, fp32_too: bool) -> bool:
    if x.device.type != "cpu" or x.dim() != 4 or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
        return False
    if x.shape[0] * positions > MAX_PIXELS:
        return False
    bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return bf16 or fp32_too


class MatmulConv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs as unfold + matmul on small CPU inputs (see the module's docstring)."""

    # a 2-d convolution's stride and padding are pairs (nn.Conv2d's base class types them for any rank)
    stride: tuple[int, int]
    padding: tuple[int, int] | str

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1 and self.dilation == (1, 1) and self.padding_mode == "zeros" \
                and not isinstance(self.padding, str):
            h, w = x.shape[-2:]
            kh, kw = self.kernel_size
            positions = ((h + 2 * self.padding[0] - kh) // self.stride[0] + 1) * \
                ((w + 2 * self.padding[1] - kw) // self.stride[1] + 1)
            if _matmul_is_faster(x, positions, fp32_too=False):
                return _like_input(conv2d_as_matmul(x, self.weight, self.bias, self.stride, self.padding), x)
        return super().forward(x)


class MatmulConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that runs as matmul + fold on small CPU inputs (see the module's docstring)."""

    # pairs, as in MatmulConv2d; a transposed convolution takes no string padding
    stride: tuple[int, int]
    padding: tuple[int, int]

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is None and self.groups == 1 and self.dilation == (1, 1) \
                and self.output_padding == (0, 0) and self.padding_mode == "zeros" \
                and _matmul_is_faster(x, x.shape[-2] * x.shape[-1],
                                      fp32_too=self.in_channels * self.out_channels >= _FP32_MIN_CHANNEL_PRODUCT):
            return _like_input(conv_transpose2d_as_matmul(x, self.weight, self.bias, self.stride, self.padding), x)
        return super().forward(x, output_size)
