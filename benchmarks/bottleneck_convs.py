"""The U-Net's 4x4 stride-2 convolutions near the bottleneck: oneDNN (nn.Conv2d / nn.ConvTranspose2d)
against the same arithmetic as matrix products (translate/conv.py), side by side in one run.

    python -m benchmarks.bottleneck_convs [--threads 2] [--reps 6]

For each layer shape (channels, batch, side of the small map) and precision (fp32, bf16 autocast),
the median time of forward + backward (weight and input gradients) of both forms, and their ratio:
below 1 the matrix form is faster. The shapes are those of unet_256 (ngf 64: 512 and 1024 channels)
and unet_128 (ngf 32: 256 channels) at batch 1 to 32. translate/conv.py's rule (at most
``MAX_PIXELS`` positions over the batch; fp32 only for weights of at least 512 x 512 channels) comes
from this table (BENCHMARKS.md, "Pix2Pix on CPU: the bottleneck layers").
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.harness import machine, print_row, print_table, time_calls
from translate.conv import MAX_PIXELS, conv2d_as_matmul, conv_transpose2d_as_matmul

CASES = [(c, n, side) for c in (256, 512)
         for n, side in ((1, 1), (1, 2), (1, 4), (1, 8), (1, 16), (4, 2), (4, 4), (4, 8), (16, 2), (16, 4), (32, 1),
                         (32, 2))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"machine: {machine()}, {args.threads} threads, torch {torch.__version__}; MAX_PIXELS = {MAX_PIXELS}\n")
    print_table(["layer", "batch x positions", "fp32 oneDNN / matmul ms", "ratio", "bf16 oneDNN / matmul ms",
                 "ratio"])
    for c, n, side in CASES:
        for kind in ("transposed", "conv"):
            if kind == "transposed":  # a decoder level: the skip-concatenated 2c channels in, c out
                layer = torch.nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False)
                x = torch.randn(n, 2 * c, side, side, requires_grad=True)
                matmul = conv_transpose2d_as_matmul
            else:  # an encoder level: c -> c, down to side x side
                layer = torch.nn.Conv2d(c, c, 4, 2, 1, bias=False)
                x = torch.randn(n, c, 2 * side, 2 * side, requires_grad=True)
                matmul = conv2d_as_matmul
            cells = []
            for bf16 in (False, True):
                def onednn() -> None:
                    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                        y = layer(x)
                    y.float().sum().backward()

                def as_matmul() -> None:
                    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                        y = matmul(x, layer.weight, None, layer.stride, layer.padding)
                    y.float().sum().backward()

                a, b = (1e3 * time_calls(fn, args.reps, warmup=2).median for fn in (onednn, as_matmul))
                cells += [f"{a:.1f} / {b:.1f}", f"{b / a:.2f}"]
            layer_in, layer_kind = (2 * c, "ConvTranspose") if kind == "transposed" else (c, "Conv")
            name = f"{layer_in} -> {c} {layer_kind}"
            print_row(name, f"{n} x {side * side} = {n * side * side}", *cells)


if __name__ == "__main__":
    main()
