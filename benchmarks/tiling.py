"""Tiled prediction of large images: seam error against the whole-image result, time and memory.

    python benchmarks/tiling.py [--size 1024] [--threads 2]          # error table, memory table
    python benchmarks/tiling.py --skip-error --memory unet_256:64:tiled:4096:hybrid
    python benchmarks/tiling.py --target [--reps 3]                  # 4096^2 tiled vs 4 x 2048^2 whole
    python benchmarks/tiling.py --size 4096 --reference exact --skip-memory --variants hybrid:1536:128

Generators have random (reference-initialised, seeded) weights unless a ``.onnx`` path
is given as the model: unet_256 with batch norm frozen as per-image statistics (exported
as InstanceNorm) and resnet_9blocks with InstanceNorm; ``NAME:NGF`` picks the width. The
input is a procedural aerial photo (``translate.datasets`` maps; a mosaic of 1024 px
scenes above 1024). Each measurement runs in its own process, so "peak RSS" is that
process's maximum resident memory (the model and the image included; "before" is the same
reading just before the image is translated). The model is exported once, to a temporary
file, and every process reads it.

Error: mean / p99 / max abs difference on [-1, 1] between the tiled and the reference
output at ``--size``: the whole image (``--reference whole``, where it still fits in
memory) or exact statistics on split graphs (``--reference exact``: the deep part on the
whole image, every other layer's statistics exact, which equals the whole image; checked
at 2048^2 by ``--reference both``). Variants are ``statistics:tile:overlap``. Time is the
translation alone; building the tiled graphs ("setup") is reported apart.

``--target``: the 4096^2 image through unet_256 (ngf 64) tiled with the default
configuration, against four 2048^2 whole-image passes, each in its own process,
interleaved ``--reps`` times; medians and the spread of wall and CPU time, and the ratio
tiled / (4 x whole).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ARCHS = {
    "unet_256": (dict(name="unet_256", norm="batch"), True),
    "resnet_9blocks": (dict(name="resnet_9blocks", norm="instance"), False),
}


def _model(spec: str, folder: str | None = None):
    """An .onnx path, or NAME:NGF -> the exported random-weight generator, written to ``folder``
    (its path is returned) or returned as bytes."""
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
    data = export_generator(G, {"arch": arch, "batch_stats": batch_stats}, check=False)[0]
    if folder is None:
        return data
    path = os.path.join(folder, f"{name}_{ngf}.onnx")
    with open(path, "wb") as f:
        f.write(data)
    return path


def aerial(size: int):
    """A size x size procedural aerial photo (a mosaic of 1024 px scenes above 1024)."""
    import numpy as np

    from translate.datasets.maps import make_maps_pair

    part = min(size, 1024)
    n = -(-size // part)
    rows = [np.concatenate([make_maps_pair(np.random.default_rng([7, i, j]), part)[0] for j in range(n)], axis=1)
            for i in range(n)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:size, :size])


def _config(variant: str):
    from translate.tiling import TileConfig

    stats, tile, overlap = variant.split(":")
    return TileConfig(tile=int(tile), overlap=int(overlap), threshold=0, statistics=stats)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_error(model: str, size: int, threads: int, reference: str, variants: list[str]) -> dict:
    import numpy as np

    from translate import imageio
    from translate.predictor import Predictor
    from translate.tiling import TileConfig

    x = imageio.to_network(aerial(size))
    out: dict = {}
    refs = {}
    if reference in ("whole", "both"):
        t = time.perf_counter()
        refs["whole"] = Predictor(model, threads=threads, tiling=TileConfig(threshold=None)).run(x)
        out["whole_s"] = time.perf_counter() - t
    if reference in ("exact", "both"):  # exact statistics on the split graph: the whole image's result
        p = Predictor(model, threads=threads, tiling=TileConfig(tile=1536, threshold=0, statistics="exact"))
        t = time.perf_counter()
        refs["exact"] = p.run(x)
        out["exact_s"] = time.perf_counter() - t
        out["exact_info"] = p.tiler.last_info
    if reference == "both":
        d = np.abs(refs["exact"] - refs["whole"])
        out["exact_vs_whole"] = {"mean": float(d.mean()), "max": float(d.max())}
    ref = refs["whole"] if "whole" in refs else refs["exact"]
    for v in variants:
        p = Predictor(model, threads=threads, tiling=_config(v))
        _ = p.tiler  # the tiled graphs are built here, outside the timing
        t, c = time.perf_counter(), _cpu()
        y = p.run(x)
        s, cpu = time.perf_counter() - t, _cpu() - c
        d = np.abs(y - ref)
        out[v] = {"mean": float(d.mean()), "max": float(d.max()), "p99": float(np.quantile(d, 0.99)),
                  "s": s, "cpu_s": cpu, "info": p.tiler.last_info}
    return out


def child_memory(model: str, size: int, threads: int, mode: str, statistics: str = "hybrid", tile: str = "") -> dict:
    from translate.predictor import Predictor
    from translate.tiling import TileConfig

    a = aerial(size)
    cfg = (TileConfig(threshold=None) if mode == "whole"
           else TileConfig(threshold=0, statistics=statistics, **({"tile": int(tile)} if tile else {})))
    p = Predictor(model, threads=threads, tiling=cfg)
    t = time.perf_counter()
    if mode != "whole":
        _ = p.tiler  # the tiled graphs are built here, outside the timing
    setup = time.perf_counter() - t
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    t, c = time.perf_counter(), _cpu()
    assert p(a).shape == a.shape
    res = {"s": time.perf_counter() - t, "cpu_s": _cpu() - c, "before_gb": before, "setup_s": setup}
    if mode != "whole":
        res["info"] = p.tiler.last_info
    return res


def run_child(args, *extra: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--child", *extra],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _spread(values: list[float]) -> str:
    import numpy as np

    return f"{np.median(values):.1f} s ({min(values):.1f}-{max(values):.1f})"


def target(args, folder: str) -> None:
    """4096^2 tiled (default configuration) vs 4 x 2048^2 whole, interleaved, each in its own process."""
    import numpy as np

    model = _model("unet_256:64", folder)
    whole, tiled = [], []
    for rep in range(args.reps):
        w = run_child(args, "memory", model, "2048", "whole")
        t = run_child(args, "memory", model, "4096", "tiled", args.target_statistics)
        whole.append(w)
        tiled.append(t)
        print(f"rep {rep}: whole 2048^2 {w['s']:.1f} s (cpu {w['cpu_s']:.1f} s, {w['peak_rss_gb']:.2f} GB), "
              f"tiled 4096^2 {t['s']:.1f} s (cpu {t['cpu_s']:.1f} s, {t['peak_rss_gb']:.2f} GB, setup {t['setup_s']:.1f} s)",
              flush=True)
    info = tiled[-1]["info"]
    ws, ts = [r["s"] for r in whole], [r["s"] for r in tiled]
    wc, tc = [r["cpu_s"] for r in whole], [r["cpu_s"] for r in tiled]
    print(f"\nTarget: unet_256 ngf 64, 4096^2 tiled ({info['statistics']}, {info['tiles']} tiles of "
          f"{info['tile'][0]}x{info['tile'][1]}, {info['passes']} passes, {info['cost']} network-equivalents) "
          f"vs four 2048^2 whole-image passes, {args.reps} interleaved runs\n")
    print("| case | wall time, median (range) | CPU time, median (range) | peak RSS |\n|---|---|---|---|")
    print(f"| whole image 2048^2 | {_spread(ws)} | {_spread(wc)} | {max(r['peak_rss_gb'] for r in whole):.2f} GB |")
    print(f"| tiled 4096^2, {info['statistics']} | {_spread(ts)} | {_spread(tc)} "
          f"| {max(r['peak_rss_gb'] for r in tiled):.2f} GB |")
    ratios = [t / (4 * w) for t, w in zip(ts, ws)]
    print(f"\nratio tiled 4096^2 / (4 x whole 2048^2): wall {np.median(ts) / (4 * np.median(ws)):.2f} "
          f"(per run {min(ratios):.2f}-{max(ratios):.2f}), CPU {np.median(tc) / (4 * np.median(wc)):.2f}; "
          f"tiled setup (graphs and sessions, once per model) {np.median([r['setup_s'] for r in tiled]):.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024, help="side for the error table")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="unet_256:64,resnet_9blocks:32", help="NAME:NGF or .onnx, comma separated")
    ap.add_argument("--variants", default="per_tile:768:128,estimate:768:128,exact:768:128,hybrid:768:128,"
                                          "hybrid:1536:128",
                    help="statistics:tile:overlap, comma separated")
    ap.add_argument("--reference", default="whole", choices=("whole", "exact", "both"),
                    help="error against the whole image, the exact split graph, or both (checks one against the other)")
    ap.add_argument("--memory", default="unet_256:64:whole:1024,unet_256:64:whole:2048,unet_256:64:tiled:2048:hybrid,"
                                        "unet_256:64:tiled:4096:hybrid,unet_256:64:tiled:4096:exact",
                    help="NAME:NGF:whole|tiled:SIDE[:statistics[:tile]], comma separated")
    ap.add_argument("--skip-error", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--target", action="store_true", help="only the 4096^2 target against 4 x 2048^2 whole")
    ap.add_argument("--target-statistics", default="hybrid")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", nargs="*")
    args = ap.parse_args()
    if args.child:
        kind, model, size, *rest = args.child
        res = (child_error(model, int(size), args.threads, rest[0], rest[1:]) if kind == "error"
               else child_memory(model, int(size), args.threads, *rest))
        res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(json.dumps(res))
        return
    import onnxruntime

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.machine())
    print(f"machine: {cpu}, {os.cpu_count()} CPUs, {args.threads} threads, onnxruntime {onnxruntime.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as folder:
        if args.target:
            target(args, folder)
            return
        models = {m: _model(m, folder) for m in args.models.split(",")}
        if not args.skip_error:
            print(f"\nSeam error at {args.size}x{args.size}: tiled vs {args.reference} reference, output on [-1, 1]\n")
            print("| model | statistics | tile (overlap) | tiles | passes | network-equivalents | mean abs diff | p99 "
                  "| max | time | CPU time |\n|---|---|---|---|---|---|---|---|---|---|---|")
            for name, model in models.items():
                r = run_child(args, "error", model, str(args.size), args.reference, *args.variants.split(","))
                if "whole_s" in r:
                    print(f"| {name} | whole image | - | 1 | 1 | 1 | 0 | 0 | 0 | {r['whole_s']:.1f} s | |")
                if "exact_vs_whole" in r:
                    e = r["exact_vs_whole"]
                    print(f"| {name} | exact, split graph (reference) | {r['exact_info']['tile'][0]} | "
                          f"{r['exact_info']['tiles']} | {r['exact_info']['passes']} | {r['exact_info']['cost']} "
                          f"| {e['mean']:.5f} | | {e['max']:.4f} | {r['exact_s']:.1f} s | |")
                for v in args.variants.split(","):
                    stats, _, overlap = v.split(":")
                    e, info = r[v], r[v]["info"]
                    label = stats + (f" ({info['layers']})" if stats == "hybrid" else "")
                    print(f"| {name} | {label} | {info['tile'][0]} ({overlap}) | {info['tiles']} | {info['passes']} "
                          f"| {info['cost'] if info['cost'] is not None else '-'} | {e['mean']:.4f} | {e['p99']:.4f} "
                          f"| {e['max']:.3f} | {e['s']:.1f} s | {e['cpu_s']:.1f} s |", flush=True)
        if args.skip_memory:
            return
        print("\nMemory\n")
        print("| model | side | mode | tiles | passes | time | CPU time | setup | peak RSS | RSS before the image |\n"
              "|---|---|---|---|---|---|---|---|---|---|")
        for item in filter(None, args.memory.split(",")):
            name, ngf, mode, side, *stats = item.split(":")
            label = f"{mode} ({stats[0]})" if stats else mode
            model = models.get(f"{name}:{ngf}") or _model(f"{name}:{ngf}", folder)
            models[f"{name}:{ngf}"] = model
            try:
                r = run_child(args, "memory", model, side, mode, *stats)
            except subprocess.CalledProcessError as e:
                print(f"| {name}:{ngf} | {side} | {label} | failed: {e.stderr.strip().splitlines()[-1][:80]} "
                      "| | | | | | |")
                continue
            info = r.get("info")
            tiles = f"{info['tiles']} x {info['tile'][0]} px" if info else "-"
            print(f"| {name}:{ngf} | {side} | {label} | {tiles} | {info['passes'] if info else 1} | {r['s']:.1f} s "
                  f"| {r['cpu_s']:.1f} s | {r['setup_s']:.1f} s | {r['peak_rss_gb']:.2f} GB | {r['before_gb']:.2f} GB |",
                  flush=True)


if __name__ == "__main__":
    main()
