"""translate/conv.py: the U-Net's convolutions as matrix products give nn.Conv2d's results and gradients,
are taken only where measured faster, and never reach an ONNX file."""
from __future__ import annotations

import io

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import translate.conv as tconv
from translate.conv import MatmulConv2d, MatmulConvTranspose2d
from translate.networks import define_G


def _pair(kind: str, cin: int, cout: int, bias: bool):
    torch.manual_seed(0)
    base = (nn.Conv2d if kind == "conv" else nn.ConvTranspose2d)(cin, cout, 4, 2, 1, bias=bias)
    ours = (MatmulConv2d if kind == "conv" else MatmulConvTranspose2d)(cin, cout, 4, 2, 1, bias=bias)
    ours.load_state_dict(base.state_dict())
    return base, ours


@pytest.mark.parametrize("kind", ["conv", "transposed"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 2), (2, 4), (3, 1)])  # (batch, side of the small map)
def test_matches_torch_forward_and_backward_fp32(kind: str, bias: bool, shape: tuple[int, int]) -> None:
    n, side = shape
    torch.manual_seed(0)
    cin, cout = 64, 48
    w = (torch.randn(cout, cin, 4, 4) if kind == "conv" else torch.randn(cin, cout, 4, 4)).mul_(0.05).requires_grad_()
    b = torch.randn(cout, requires_grad=True) if bias else None
    h = 2 * side if kind == "conv" else side
    x = torch.randn(n, cin, h, h + (1 if kind == "transposed" else 2), requires_grad=True)  # not square
    ref = F.conv2d if kind == "conv" else F.conv_transpose2d
    ours = tconv.conv2d_as_matmul if kind == "conv" else tconv.conv_transpose2d_as_matmul
    y_ref = ref(x, w, b, stride=2, padding=1)
    leaves = [x, w] + ([b] if bias else [])
    grads_ref = torch.autograd.grad(y_ref, leaves, torch.ones_like(y_ref) * torch.linspace(-1, 1, y_ref.shape[-1]))
    y = ours(x, w, b, (2, 2), (1, 1))
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(y, leaves, torch.ones_like(y) * torch.linspace(-1, 1, y.shape[-1]))
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kind", ["conv", "transposed"])
def test_channels_last_weights_and_inputs(kind: str) -> None:
    """A channels-last network (--channels-last) is read as it lies in memory and gets channels-last back."""
    base, ours = _pair(kind, 64, 32, bias=True)
    ours = ours.to(memory_format=torch.channels_last)
    x = torch.randn(2, 64, 4, 6)
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.autocast("cpu", torch.bfloat16):
        y_ref, y = base(x), ours(xc)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2)
    y.float().sum().backward()
    assert ours.weight.grad.shape == ours.weight.shape and xc.grad.shape == xc.shape
    # fp32, the functions alone, against torch's own on channels-last operands
    w = ours.weight.detach()
    ref = F.conv2d if kind == "conv" else F.conv_transpose2d
    fn = tconv.conv2d_as_matmul if kind == "conv" else tconv.conv_transpose2d_as_matmul
    assert not w.is_contiguous()
    torch.testing.assert_close(fn(xc.detach(), w, None, (2, 2), (1, 1)), ref(x, w.contiguous(), None, stride=2, padding=1),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["conv", "transposed"])
def test_matches_torch_under_bf16_autocast(kind: str) -> None:
    base, ours = _pair(kind, 256, 128, bias=True)
    x = torch.randn(2, 256, 4, 4)
    with torch.autocast("cpu", torch.bfloat16):
        y_ref, y = base(x), ours(x)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    # both round the fp32-accumulated result to bf16 once (about 3 significant digits)
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2)


def _count(monkeypatch, name: str) -> list:
    calls: list = []
    real = getattr(tconv, name)
    monkeypatch.setattr(tconv, name, lambda *a: calls.append(1) or real(*a))
    return calls


def test_path_taken_only_where_measured_faster(monkeypatch) -> None:
    transposed, conv = _count(monkeypatch, "conv_transpose2d_as_matmul"), _count(monkeypatch, "conv2d_as_matmul")
    big = MatmulConvTranspose2d(1024, 512, 4, 2, 1)
    small = MatmulConvTranspose2d(512, 256, 4, 2, 1)
    down = MatmulConv2d(512, 512, 4, 2, 1)
    big(torch.randn(1, 1024, 8, 8))  # 64 positions, 1024 -> 512: the matrix path even in fp32
    assert len(transposed) == 1
    big(torch.randn(1, 1024, 16, 16))  # 256 positions: oneDNN
    big(torch.randn(2, 1024, 8, 8))  # 128 over the batch: oneDNN
    small(torch.randn(1, 512, 4, 4))  # smaller weight in fp32: oneDNN holds its own
    down(torch.randn(1, 512, 4, 4))  # convolutions in fp32: oneDNN
    assert len(transposed) == 1 and not conv
    with torch.autocast("cpu", torch.bfloat16):
        small(torch.randn(1, 512, 4, 4))  # ... but under bf16 both go through matrix products
        down(torch.randn(1, 512, 4, 4))
    assert len(transposed) == 2 and len(conv) == 1
    monkeypatch.setattr(tconv, "MAX_PIXELS", 0)  # how benchmarks turn it off
    big(torch.randn(1, 1024, 2, 2))
    assert len(transposed) == 2


def test_unet_same_output_and_onnx_keeps_standard_operators(monkeypatch) -> None:
    torch.manual_seed(0)
    G = define_G("unet_256", ngf=8, norm="instance").eval()
    kinds = {type(m) for m in G.modules() if isinstance(m, nn.modules.conv._ConvNd)}
    assert kinds == {MatmulConv2d, MatmulConvTranspose2d}
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    calls = _count(monkeypatch, "conv2d_as_matmul")
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        y = G(x)
    assert calls, "the bottleneck should run as matrix products under bf16"
    monkeypatch.setattr(tconv, "MAX_PIXELS", 0)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        y_ref = G(x)
    assert (y.float() - y_ref.float()).abs().mean() < 0.01
    # in fp32 too, for this small network, so that the export below would meet the matrix path
    monkeypatch.setattr(tconv, "MAX_PIXELS", 64)
    monkeypatch.setattr(tconv, "_FP32_MIN_CHANNEL_PRODUCT", 0)
    transposed = _count(monkeypatch, "conv_transpose2d_as_matmul")
    with torch.no_grad():
        G(x)
    assert transposed, "the patch above should send the small network's decoder through matrix products"
    transposed.clear()
    calls.clear()
    buf = io.BytesIO()
    torch.onnx.export(G, (x,), buf, dynamo=False, opset_version=17)
    assert not calls and not transposed, "the export traced the matrix path"
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    assert {"Conv", "ConvTranspose"} <= ops and not {"MatMul", "Col2Im", "Im2Col"} & ops

