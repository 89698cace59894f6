"""Tiled prediction of large images: seam error against the whole-image result, time and memory.

    python -m benchmarks.tiling [--size 1024] [--threads 2]          # error table, memory table
    python -m benchmarks.tiling --skip-error --memory unet_256:64:tiled:4096:hybrid
    python -m benchmarks.tiling --target [--reps 2]         # every mode: error at 2048^2, 4096^2 vs 4 x 2048^2
    python -m benchmarks.tiling --size 4096 --reference exact --skip-memory --variants hybrid:1536:128

Generators have random (reference-initialised, seeded) weights unless a ``.onnx`` path
is given as the model: unet_256 with batch norm frozen as per-image statistics (exported
as InstanceNorm) and resnet_9blocks with InstanceNorm; ``NAME:NGF`` picks the width. The
input is a procedural aerial photo (``translate.datasets`` maps; a mosaic of 1024 px
scenes above 1024). Each measurement runs in its own process, so "peak RSS" is that
process's maximum resident memory (the model and the image included; "before" is the same
reading just before the image is translated). The model is exported once, to a temporary
file, and every process reads it.

Every predictor runs ONNX Runtime (fp32), as the recorded figures did: ``--engine auto`` would run OpenVINO in bf16
on a CPU with avx512_bf16 or AMX, whose rounding would add to the seam error measured here.

Error: mean / p99 / max abs difference on [-1, 1] between the tiled and the reference
output at ``--size``: the whole image (``--reference whole``, where it still fits in
memory) or exact statistics on split graphs (``--reference exact``: the deep part on the
whole image, every other layer's statistics exact, which equals the whole image; checked
at 2048^2 by ``--reference both``). Variants are ``statistics:tile:overlap``. Time is the
translation alone; building the tiled graphs ("setup") is reported apart.

``--target``: every mode side by side in one run, for unet_256 (ngf 64). First the error of
each ``--target-variants`` against the whole image at ``--error-size`` (2048^2: the whole
image still fits), overall and near the seams (within 8 px of the lines where blended tiles
meet, the middle of each overlap) against elsewhere. Then time: the 4096^2 image tiled in
each variant against four 2048^2 whole-image passes, each in its own process, interleaved
``--reps`` times (a whole pass before and after the variants of each rep); medians and
spread of wall and CPU time, the ratio tiled / (4 x whole) and the peak RSS. The first
rep's 4096^2 outputs (uint8) are also compared with the exact variant's (which equals the
whole image, checked at ``--error-size``). Building the tiled graphs (setup, once per model)
is timed apart.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile

from benchmarks.harness import Timings, machine, peak_rss_gb, print_row, print_table, stopwatch

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

    from translate.export import export_generator  # lazy: torch
    from translate.networks import define_G, to_inference  # lazy: torch

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

    from translate.datasets.maps import make_maps_pair  # lazy: torch, in the child only

    part = min(size, 1024)
    n = -(-size // part)
    rows = [np.concatenate([make_maps_pair(np.random.default_rng([7, i, j]), part)[0] for j in range(n)], axis=1)
            for i in range(n)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:size, :size])


def _config(variant: str):
    from translate.tiling import TileConfig  # lazy: ONNX, in the child only

    stats, tile, overlap = variant.split(":")
    return TileConfig(tile=int(tile), overlap=int(overlap), threshold=0, statistics=stats)


def seam_mask(h: int, w: int, info: dict, width: int = 8):
    """Pixels of an h x w image within ``width`` of the lines where blended tiles meet (the middle
    of each overlap), from a tiled run's info (``canvas``, ``tile``, ``rows``, ``cols``)."""
    import numpy as np

    (ch, cw), (th, tw) = info["canvas"], info["tile"]
    top, left = (ch - h) // 2, (cw - w) // 2  # the padding is split evenly around the image
    mask = np.zeros((ch, cw), bool)
    for starts, side, axis in ((info["rows"], th, 0), (info["cols"], tw, 1)):
        for a, b in itertools.pairwise(starts):
            mid = (b + a + side) // 2
            sl = [slice(None), slice(None)]
            sl[axis] = slice(max(mid - width, 0), mid + width)
            mask[tuple(sl)] = True
    return mask[top:top + h, left:left + w]


def _errors(d, mask) -> dict:
    """Mean / p99 / max of an abs difference (C, H, W), and its mean near seams (``mask``) and elsewhere."""
    import numpy as np

    per_px = d.mean(axis=0)
    return {"mean": float(d.mean()), "max": float(d.max()), "p99": float(np.quantile(d, 0.99)),
            "seam": float(per_px[mask].mean()) if mask.any() else float("nan"),
            "rest": float(per_px[~mask].mean()) if (~mask).any() else float("nan")}


def _plan(p) -> dict:
    plan = p.tiler.last_plan
    return {"canvas": list(plan.canvas), "rows": plan.rows, "cols": plan.cols}


def child_error(model: str, size: int, threads: int, reference: str, variants: list[str]) -> dict:
    import numpy as np

    from translate import imageio  # lazy: torch, in the child only
    from translate.predictor import Predictor, RuntimeOptions  # lazy: ONNX Runtime, in the child only
    from translate.tiling import TileConfig  # lazy: ONNX, in the child only

    ort = RuntimeOptions(engine="onnxruntime")  # the module's docstring: ONNX Runtime, fp32
    x = imageio.to_network(aerial(size))
    out: dict = {}
    refs = {}
    if reference in ("whole", "both"):
        with stopwatch() as lap:
            refs["whole"] = Predictor(model, threads=threads, runtime=ort, tiling=TileConfig(threshold=None)).run(x)
        out["whole_s"] = lap.wall
    if reference in ("exact", "both"):  # exact statistics on the split graph: the whole image's result
        p = Predictor(model, threads=threads, runtime=ort, tiling=TileConfig(tile=1536, threshold=0, statistics="exact"))
        with stopwatch() as lap:
            refs["exact"] = p.run(x)
        out["exact_s"] = lap.wall
        out["exact_info"] = p.tiler.last_info
    if reference == "both":
        d = np.abs(refs["exact"] - refs["whole"])
        out["exact_vs_whole"] = {"mean": float(d.mean()), "max": float(d.max())}
    ref = refs["whole"] if "whole" in refs else refs["exact"]
    for v in variants:
        p = Predictor(model, threads=threads, runtime=ort, tiling=_config(v))
        _ = p.tiler  # the tiled graphs are built here, outside the timing
        with stopwatch() as lap:
            y = p.run(x)
        info = {**p.tiler.last_info, **_plan(p)}
        out[v] = {**_errors(np.abs(y - ref)[0], seam_mask(size, size, info)), "s": lap.wall, "cpu_s": lap.cpu,
                  "info": info}
    return out


def child_memory(model: str, size: int, threads: int, mode: str, statistics: str = "hybrid", tile: str = "",
                 overlap: str = "", save: str = "") -> dict:
    """One translation of the size^2 aerial photo (uint8 path), timed; ``save``: write the output (.npy)."""
    import numpy as np

    from translate.predictor import Predictor, RuntimeOptions  # lazy: ONNX Runtime, in the child only
    from translate.tiling import TileConfig  # lazy: ONNX, in the child only

    ort = RuntimeOptions(engine="onnxruntime")  # the module's docstring: ONNX Runtime, fp32
    a = aerial(size)
    given = {**({"tile": int(tile)} if tile else {}), **({"overlap": int(overlap)} if overlap else {})}
    cfg = (TileConfig(threshold=None) if mode == "whole"
           else TileConfig(threshold=0, statistics=statistics, **given))
    p = Predictor(model, threads=threads, runtime=ort, tiling=cfg)
    with stopwatch() as setup:
        if mode != "whole":
            _ = p.tiler  # the tiled graphs are built here, outside the timing
    before = peak_rss_gb()
    with stopwatch() as lap:
        y = p(a)
    res = {"s": lap.wall, "cpu_s": lap.cpu, "before_gb": before, "setup_s": setup.wall}
    assert y.shape == a.shape
    if save:
        np.save(save, y)
    if mode != "whole":
        res["info"] = {**p.tiler.last_info, **_plan(p)}
    return res


def run_child(args, *extra: str, tries: int = 3) -> dict:
    """Run one measurement in its own process; one killed by a signal (on a shared machine, the OOM
    killer or someone's cleanup) is run again, up to ``tries`` times in all."""
    for attempt in range(tries):
        out = subprocess.run([sys.executable, "-m", __spec__.name, "--threads", str(args.threads), "--child", *extra],
                             capture_output=True, text=True)
        if out.returncode >= 0 or attempt == tries - 1:
            break
        print(f"(a child was killed by signal {-out.returncode}: {' '.join(extra[:1] + extra[2:])}; "
              "running it again)", flush=True)
    if out.returncode:
        raise subprocess.CalledProcessError(out.returncode, out.args, out.stdout, out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def target(args, folder: str) -> None:
    """Every variant side by side: error at --error-size against the whole image, then 4096^2 tiled
    against four 2048^2 whole passes, interleaved, each in its own process."""
    import numpy as np

    model = _model(args.target_model, folder)
    variants = args.target_variants.split(",")
    n, big = args.error_size, args.target_size
    half = str(big // 2)
    print(f"\n{args.target_model}, seam error at {n}^2 against the whole image, output on [-1, 1]; near seams: "
          f"within 8 px of where blended tiles meet\n", flush=True)
    r = run_child(args, "error", model, str(n), "whole", *variants)
    print_table(["statistics", "tile (overlap)", "tiles", "passes", "network-equivalents", "mean abs diff",
                 "near seams", "elsewhere", "p99", "max"])
    for v in variants:
        e, info = r[v], r[v]["info"]
        print_row(_label(v, info), f"{info['tile'][0]} ({info['overlap']})", info["tiles"], info["passes"],
                  _cost(info), f"{e['mean']:.4f}", f"{e['seam']:.4f}", f"{e['rest']:.4f}", f"{e['p99']:.4f}",
                  f"{e['max']:.3f}")
    print(f"\n(whole image {n}^2: {r['whole_s']:.1f} s)\n\nTime: {big}^2 tiled vs four {half}^2 whole-image passes, "
          f"{args.reps} interleaved reps\n", flush=True)
    whole: list[dict] = []
    tiled: dict[str, list[dict]] = {v: [] for v in variants}
    for rep in range(args.reps):
        whole.append(run_child(args, "memory", model, half, "whole"))
        for v in variants:
            stats, tile, overlap = v.split(":")
            save = os.path.join(folder, f"{stats}_{tile}_{overlap}.npy") if rep == 0 else ""
            t = run_child(args, "memory", model, str(big), "tiled", stats, tile, overlap, save)
            tiled[v].append(t)
            print(f"rep {rep}: {v} {t['s']:.1f} s (cpu {t['cpu_s']:.1f} s, setup {t['setup_s']:.1f} s, "
                  f"{t['peak_rss_gb']:.2f} GB)", flush=True)
        whole.append(run_child(args, "memory", model, half, "whole"))
        print(f"rep {rep}: whole {half}^2 {whole[-2]['s']:.1f} s before, {whole[-1]['s']:.1f} s after", flush=True)
    # the big outputs against the exact variant's (the whole image's result, checked above)
    ref_v = next((v for v in variants if v.startswith("exact:")), None)
    errs = {}
    if ref_v:
        ref = np.load(os.path.join(folder, "{}_{}_{}.npy".format(*ref_v.split(":")))).astype(np.float32)
        for v in variants:
            y = np.load(os.path.join(folder, "{}_{}_{}.npy".format(*v.split(":")))).astype(np.float32)
            d = np.abs(y - ref).transpose(2, 0, 1) / 127.5  # uint8 steps to [-1, 1]
            errs[v] = _errors(d, seam_mask(big, big, tiled[v][0]["info"]))
            del y, d
    ws, wc = Timings([w["s"] for w in whole]), Timings([w["cpu_s"] for w in whole])
    budget_s, budget_c = 4 * ws.median, 4 * wc.median
    print(f"\nwhole image {half}^2: wall {ws.spread()}, CPU {wc.spread()}, peak RSS "
          f"{max(w['peak_rss_gb'] for w in whole):.2f} GB; four passes: {budget_s:.1f} s wall, {budget_c:.1f} s CPU\n")
    print_table(["statistics", "tile", "tiles", "passes", "network-equivalents", "wall, median (range)",
                 "CPU, median (range)", f"ratio wall / CPU to 4 x whole {half}^2", "setup", "peak RSS",
                 f"{big}^2 vs exact: mean (near seams)"])
    for v in variants:
        rs, info = tiled[v], tiled[v][0]["info"]
        ts, tc, setup = (Timings([t[k] for t in rs]) for k in ("s", "cpu_s", "setup_s"))
        e = errs.get(v)
        err = f"{e['mean']:.4f} ({e['seam']:.4f})" if e else "-"
        print_row(_label(v, info), info["tile"][0], info["tiles"], info["passes"], _cost(info), ts.spread(),
                  tc.spread(), f"{ts.median / budget_s:.2f} / {tc.median / budget_c:.2f}", f"{setup.median:.1f} s",
                  f"{max(t['peak_rss_gb'] for t in rs):.2f} GB", err)


def _cost(info: dict) -> object:
    return info["cost"] if info["cost"] is not None else "-"


def _label(variant: str, info: dict) -> str:
    stats = variant.split(":")[0]
    if stats != "hybrid":
        return stats
    lay = info["layers"]
    return f"hybrid ({lay['whole_image']} whole-image, {lay['exact']} exact, {lay['sampled']} sampled)"


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
    ap.add_argument("--target-variants", default="per_tile:768:128,estimate:768:128,exact:1536:128,hybrid:768:128,"
                                                 "hybrid:1536:128", help="statistics:tile:overlap, comma separated")
    ap.add_argument("--error-size", type=int, default=2048, help="--target: side for the error against the whole image")
    ap.add_argument("--target-size", type=int, default=4096, help="--target: the tiled side (whole: half of it)")
    ap.add_argument("--target-model", default="unet_256:64")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--child", nargs="*")
    args = ap.parse_args()
    if args.child:
        kind, model, size, *rest = args.child
        res = (child_error(model, int(size), args.threads, rest[0], rest[1:]) if kind == "error"
               else child_memory(model, int(size), args.threads, *rest))
        res["peak_rss_gb"] = peak_rss_gb()
        print(json.dumps(res))
        return
    import onnxruntime

    print(f"machine: {machine()}, {args.threads} threads, onnxruntime {onnxruntime.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory() as folder:
        if args.target:
            target(args, folder)
            return
        models = {m: _model(m, folder) for m in args.models.split(",")}
        if not args.skip_error:
            print(f"\nSeam error at {args.size}x{args.size}: tiled vs {args.reference} reference, output on [-1, 1]\n")
            print_table(["model", "statistics", "tile (overlap)", "tiles", "passes", "network-equivalents",
                         "mean abs diff", "p99", "max", "time", "CPU time"])
            for name, model in models.items():
                r = run_child(args, "error", model, str(args.size), args.reference, *args.variants.split(","))
                if "whole_s" in r:
                    print_row(name, "whole image", "-", 1, 1, 1, 0, 0, 0, f"{r['whole_s']:.1f} s", "")
                if "exact_vs_whole" in r:
                    e, info = r["exact_vs_whole"], r["exact_info"]
                    print_row(name, "exact, split graph (reference)", info["tile"][0], info["tiles"], info["passes"],
                              info["cost"], f"{e['mean']:.5f}", "", f"{e['max']:.4f}", f"{r['exact_s']:.1f} s", "")
                for v in args.variants.split(","):
                    stats, _, overlap = v.split(":")
                    e, info = r[v], r[v]["info"]
                    label = stats + (f" ({info['layers']})" if stats == "hybrid" else "")
                    print_row(name, label, f"{info['tile'][0]} ({overlap})", info["tiles"], info["passes"],
                              _cost(info), f"{e['mean']:.4f}", f"{e['p99']:.4f}", f"{e['max']:.3f}", f"{e['s']:.1f} s",
                              f"{e['cpu_s']:.1f} s")
        if args.skip_memory:
            return
        print("\nMemory\n")
        print_table(["model", "side", "mode", "tiles", "passes", "time", "CPU time", "setup", "peak RSS",
                     "RSS before the image"])
        for item in filter(None, args.memory.split(",")):
            name, ngf, mode, side, *stats = item.split(":")
            label = f"{mode} ({stats[0]})" if stats else mode
            model = models.get(f"{name}:{ngf}") or _model(f"{name}:{ngf}", folder)
            models[f"{name}:{ngf}"] = model
            try:
                r = run_child(args, "memory", model, side, mode, *stats)
            except subprocess.CalledProcessError as e:
                print_row(f"{name}:{ngf}", side, label, f"failed: {e.stderr.strip().splitlines()[-1][:80]}",
                          *[""] * 6)
                continue
            info = r.get("info")
            tiles = f"{info['tiles']} x {info['tile'][0]} px" if info else "-"
            print_row(f"{name}:{ngf}", side, label, tiles, info["passes"] if info else 1, f"{r['s']:.1f} s",
                      f"{r['cpu_s']:.1f} s", f"{r['setup_s']:.1f} s", f"{r['peak_rss_gb']:.2f} GB",
                      f"{r['before_gb']:.2f} GB")


if __name__ == "__main__":
    main()
