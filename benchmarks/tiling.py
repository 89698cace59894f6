"""Tiled prediction of large images: seam error against the whole-image result, and memory.

    python benchmarks/tiling.py [--size 1024] [--threads 2]
    python benchmarks/tiling.py --skip-error --memory unet_256:64:tiled:4096

Generators have random (reference-initialised, seeded) weights unless a ``.onnx`` path
is given as the model: unet_256 with batch norm frozen as per-image statistics (exported
as InstanceNorm) and resnet_9blocks with InstanceNorm; ``NAME:NGF`` picks the width. The
input is a procedural aerial photo (``translate.datasets`` maps; a mosaic of 1024 px
scenes above 1024). Each measurement runs in its own process, so "peak RSS" is that
process's maximum resident memory (torch for the export, the model and the image
included; "before" is the same reading just before the image is translated).

Error: mean / p99 / max abs difference on [-1, 1] between the tiled and the whole-image
output at ``--size`` (where whole-image inference still fits), for naive tiling (each
tile normalised by its own statistics, blended the same way), the one-pass estimate
and exact layer-by-layer statistics. Prints Markdown tables for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

ARCHS = {
    "unet_256": (dict(name="unet_256", norm="batch"), True),
    "resnet_9blocks": (dict(name="resnet_9blocks", norm="instance"), False),
}


def _model(spec: str):
    """An .onnx path, or NAME:NGF -> exported random-weight generator bytes."""
    if spec.endswith(".onnx"):
        return spec
    import torch

    from translate.export import export_generator
    from translate.networks import define_G, to_inference

    name, ngf = spec.split(":")
    arch, batch_stats = ARCHS[name]
    arch = {**arch, "ngf": int(ngf)}
    torch.manual_seed(0)
    G = to_inference(define_G(**arch), batch_stats=batch_stats)
    return export_generator(G, {"arch": arch, "batch_stats": batch_stats}, check=False)[0]


def aerial(size: int):
    """A size x size procedural aerial photo (a mosaic of 1024 px scenes above 1024)."""
    import numpy as np

    from translate.datasets.maps import make_maps_pair

    part = min(size, 1024)
    n = -(-size // part)
    rows = [np.concatenate([make_maps_pair(np.random.default_rng([7, i, j]), part)[0] for j in range(n)], axis=1)
            for i in range(n)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:size, :size])


def child_error(model: str, size: int, threads: int, variants: list[str]) -> dict:
    import numpy as np

    from translate import imageio
    from translate.predictor import Predictor
    from translate.tiling import TileConfig

    data = _model(model)
    x = imageio.to_network(aerial(size))
    t = time.perf_counter()
    ref = Predictor(data, threads=threads, tiling=TileConfig(threshold=None)).run(x)
    out = {"whole_s": time.perf_counter() - t}
    for v in variants:
        stats, tile, overlap = v.split(":")
        p = Predictor(data, threads=threads, tiling=TileConfig(tile=int(tile), overlap=int(overlap), threshold=0,
                                                                statistics=stats))
        t = time.perf_counter()
        y = p.run(x)
        d = np.abs(y - ref)
        plan = p.tiler.last_plan
        out[v] = {"mean": float(d.mean()), "max": float(d.max()), "p99": float(np.quantile(d, 0.99)),
                  "s": time.perf_counter() - t, "tile": plan.tile, "tiles": plan.count, "passes": plan.passes}
    return out


def child_memory(model: str, size: int, threads: int, mode: str, statistics: str = "exact") -> dict:
    from translate.predictor import Predictor
    from translate.tiling import TileConfig

    a = aerial(size)
    cfg = TileConfig(threshold=None) if mode == "whole" else TileConfig(threshold=0, statistics=statistics)
    p = Predictor(_model(model), threads=threads, tiling=cfg)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    t = time.perf_counter()
    assert p(a).shape == a.shape
    res = {"s": time.perf_counter() - t, "before_gb": before}
    if mode != "whole":
        plan = p.tiler.last_plan
        res.update(tile=plan.tile, tiles=plan.count, passes=plan.passes)
    return res


def run_child(args, *extra: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--child", *extra],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024, help="side for the error table (whole-image reference)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="unet_256:64,resnet_9blocks:32", help="NAME:NGF or .onnx, comma separated")
    ap.add_argument("--variants", default="per_tile:512:128,estimate:512:128,exact:512:128,"
                                          "per_tile:768:128,estimate:768:128,exact:768:128",
                    help="statistics:tile:overlap, comma separated")
    ap.add_argument("--memory", default="unet_256:64:whole:1024,unet_256:64:whole:2048,unet_256:64:tiled:2048,"
                                        "unet_256:64:tiled:4096",
                    help="NAME:NGF:whole|tiled:SIDE[:statistics], comma separated")
    ap.add_argument("--skip-error", action="store_true")
    ap.add_argument("--child", nargs="*")
    args = ap.parse_args()
    if args.child:
        kind, model, size, *rest = args.child
        res = (child_error(model, int(size), args.threads, rest) if kind == "error"
               else child_memory(model, int(size), args.threads, *rest))
        res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(json.dumps(res))
        return
    import onnxruntime

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.machine())
    print(f"machine: {cpu}, {args.threads} threads, onnxruntime {onnxruntime.__version__}")
    if not args.skip_error:
        print(f"\nSeam error at {args.size}x{args.size}: tiled vs whole image, output on [-1, 1]\n")
        print("| model | statistics | tile (overlap) | tiles | passes | mean abs diff | p99 | max | time |\n"
              "|---|---|---|---|---|---|---|---|---|")
        for model in args.models.split(","):
            r = run_child(args, "error", model, str(args.size), *args.variants.split(","))
            print(f"| {model} | whole image | - | 1 | 1 | 0 | 0 | 0 | {r['whole_s']:.1f} s |")
            for v in args.variants.split(","):
                stats, _, overlap = v.split(":")
                e = r[v]
                print(f"| {model} | {stats} | {e['tile'][0]} ({overlap}) | {e['tiles']} | {e['passes']} "
                      f"| {e['mean']:.4f} | {e['p99']:.4f} | {e['max']:.3f} | {e['s']:.1f} s |", flush=True)
    print("\nMemory (default tiling: tile 768, overlap >= 128)\n")
    print("| model | side | mode | tiles | passes | time | peak RSS | RSS before the image |\n"
          "|---|---|---|---|---|---|---|---|")
    for item in filter(None, args.memory.split(",")):
        name, ngf, mode, side, *stats = item.split(":")
        label = f"{mode} ({stats[0]})" if stats else mode
        try:
            r = run_child(args, "memory", f"{name}:{ngf}", side, mode, *stats)
        except subprocess.CalledProcessError as e:
            print(f"| {name}:{ngf} | {side} | {label} | failed: {e.stderr.strip().splitlines()[-1][:80]} | | | | |")
            continue
        tiles = f"{r['tiles']} x {r['tile'][0]} px" if mode != "whole" else "-"
        print(f"| {name}:{ngf} | {side} | {label} | {tiles} | {r.get('passes', 1)} | {r['s']:.1f} s "
              f"| {r['peak_rss_gb']:.2f} GB | {r['before_gb']:.2f} GB |", flush=True)


if __name__ == "__main__":
    main()
