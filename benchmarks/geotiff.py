"""GeoTIFF through a tiny model: time, peak memory and file sizes, windowed vs whole-in-memory.

    python -m benchmarks.geotiff --size 20000           # the windowed path only
    python -m benchmarks.geotiff --size 4000 --compare  # windowed vs whole, side by side

Makes a 3-band uint8 GeoTIFF (tiled 512, deflate, a nodata collar, an aerial-like pattern) of
SIZE x SIZE, written by windows, and a tiny generator (resnet_2blocks, ngf 8; ``--norm none``
by default, so tiling takes one pass, ``--norm instance`` for exact whole-image statistics).
Each case runs in its own process, so its peak RSS (VmHWM) is its own:

* ``windowed``: :func:`translate.raster.translate_raster` (the path predict and convert take);
* ``cog``: the same with ``--cog`` (a Cloud-Optimized GeoTIFF);
* ``whole`` (``--compare``): the raster read whole with rasterio, ``Predictor.translate_array``,
  written whole: what one would do without windows.

Prints a Markdown table for BENCHMARKS.md with the CPU model. Needs SIZE^2 x 3 bytes of disk.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import machine, print_table, rss_kb, stopwatch


def make_raster(path: Path, size: int) -> None:
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:3857",
                   transform=from_origin(-13630000.0, 4550000.0, 0.3, 0.3), nodata=0, tiled=True,
                   blockxsize=512, blockysize=512, compress="deflate", predictor=2, BIGTIFF="IF_SAFER")
    collar = size // 50
    with rasterio.open(path, "w", **profile) as ds:
        for y0 in range(0, size, 512):
            n = min(512, size - y0)
            yy, xx = np.mgrid[y0:y0 + n, 0:size]
            fields = ((xx // 97 + yy // 131) % 5) * 30 + 60
            roads = ((xx % 211) < 6) | ((yy % 173) < 5)
            a = np.stack([fields + 20, fields + 35, fields]).astype(np.int16)
            a += rng.integers(-12, 13, a.shape, dtype=np.int16)
            a[:, roads] = 200
            a = a.clip(1, 255).astype(np.uint8)
            a[:, :, :collar] = 0  # nodata collar on the left
            ds.write(a, window=Window(0, y0, size, n))


def make_model(path: Path, norm: str) -> None:
    import torch

    from translate.export import export_generator  # lazy: torch
    from translate.networks import define_G, to_inference  # lazy: torch

    torch.manual_seed(0)
    arch = dict(name="resnet_2blocks", ngf=8, norm=norm)
    path.write_bytes(export_generator(to_inference(define_G(**arch), batch_stats=False), {"arch": arch},
                                      check=False)[0])


def run_case(case: str, model: Path, src: Path, dst: Path) -> dict:
    """One case in this process; returns seconds, peak RSS and the output's size."""
    from translate.predictor import Predictor  # lazy: ONNX Runtime, in the child only
    from translate.raster import RasterOptions, translate_raster  # lazy: GDAL, in the child only

    predictor = Predictor(model, device="cpu")
    import rasterio  # noqa: F401  (imported before the baseline, as the whole path needs it too)

    baseline = rss_kb("VmRSS") / 1024  # the libraries and the model, before any pixel
    with stopwatch() as lap:
        if case in ("windowed", "cog"):
            translate_raster(predictor, src, dst, RasterOptions(cog=case == "cog"))
        else:
            import rasterio

            with rasterio.open(src) as ds:
                a = ds.read().transpose(1, 2, 0)
                profile = ds.profile
            y = predictor.translate_array(a)
            profile.update(count=3, nodata=None)
            with rasterio.open(dst, "w", **profile) as out:
                out.write(y.transpose(2, 0, 1))
    return {"case": case, "seconds": round(lap.wall, 1), "baseline_mb": round(baseline),
            "peak_rss_mb": round(rss_kb() / 1024), "output_mb": round(dst.stat().st_size / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20000)
    ap.add_argument("--norm", default="none", choices=("none", "instance"))
    ap.add_argument("--compare", action="store_true", help="also the whole-in-memory path")
    ap.add_argument("--cog", action="store_true", help="also write a COG")
    ap.add_argument("--tmp", help="folder for the rasters (default: the system's temporary folder)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--dst", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:  # a child: one case
        print(json.dumps(run_case(args.case, Path(args.model), Path(args.src), Path(args.dst))))
        return
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        src, model = tmp / "in.tif", tmp / "model.onnx"
        with stopwatch() as lap:
            make_raster(src, args.size)
        print(f"made a {args.size}^2 raster ({src.stat().st_size / 2**20:.0f} MB) in {lap.wall:.0f} s", file=sys.stderr)
        make_model(model, args.norm)
        cases = ["windowed"] + (["cog"] if args.cog else []) + (["whole"] if args.compare else [])
        rows = []
        for case in cases:
            out = subprocess.run([sys.executable, "-m", __spec__.name, "--case", case, "--model", str(model),
                                  "--src", str(src), "--dst", str(tmp / f"{case}.tif")], capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:], file=sys.stderr)
                rows.append({"case": case, "seconds": "failed", "baseline_mb": "-", "peak_rss_mb": "-",
                             "output_mb": "-"})
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
        raw = args.size * args.size * 3 / 2**20
        print(f"\n{args.size} x {args.size} x 3 uint8 ({raw:.0f} MB raw, input {src.stat().st_size / 2**20:.0f} MB "
              f"deflate), resnet_2blocks ngf 8 norm {args.norm}; machine: {machine()}\n")
        print_table(["path", "seconds", "RSS before (MB)", "peak RSS (MB)", "output (MB)"],
                    [[r[k] for k in ("case", "seconds", "baseline_mb", "peak_rss_mb", "output_mb")] for r in rows])


if __name__ == "__main__":
    main()
