"""``translate demo`` (``make demo``): the main job on the built-in default, end to end.

Makes the maps set, trains a small Pix2Pix on CPU within a time budget (a finished model is
reused on later runs; an interrupted one resumes), exports it to ONNX, translates the
held-out tiles and writes a side-by-side image and an HTML page.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# small enough to learn visibly in a few CPU-minutes; see BENCHMARKS.md for the measured curve
DEMO_DATA = dict(kind="maps", count=300, size=128, seed=0)
# instance norm: train-time and test-time normalisation are the same at batch 4 (batch norm's running
# statistics lag behind a short, fast run); the number of steps is fitted to the time budget
DEMO_TRAIN = dict(size=128, netG="unet_128", ngf=32, ndf=32, norm="instance", batch_size=4, lr=2e-4,
                  val_every=200, sample_every=200, checkpoint_every=200, workers=1, val_fraction=0.05)
MAX_STEPS = 3000


def seconds_per_step() -> float:
    """The median time of a demo training step on this machine now (after a warm-up)."""
    import time

    import torch

    from training.pix2pix import Pix2Pix, Pix2PixConfig

    cfg = Pix2PixConfig(data="-", **DEMO_TRAIN)
    method = Pix2Pix(cfg, torch.device("cpu"))
    batch = {k: torch.rand(cfg.batch_size, 3, cfg.size, cfg.size) * 2 - 1 for k in "AB"}
    for _ in range(3):  # warm-up: the first steps build kernels and caches
        method.step(batch)
    times = []
    for _ in range(8):
        t = time.perf_counter()
        method.step(batch)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]  # the median: one hiccup (a process exiting) does not halve the run


def steps_for_budget(minutes: float, per_step: float) -> int:
    """How many demo steps of ``per_step`` seconds fit in ``minutes`` (at least 100, at most MAX_STEPS)."""
    # 80 % of the budget for steps: the rest goes to data loading, validation, samples and checkpoints
    return int(min(MAX_STEPS, max(100, minutes * 60 * 0.8 / per_step)))


def _label(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 16), "white")
    out.paste(img, (0, 16))
    ImageDraw.Draw(out).text((4, 2), text, fill="black")
    return out


def _side_by_side(cols: list[tuple[str, Image.Image]]) -> Image.Image:
    tiles = [_label(im, t) for t, im in cols]
    out = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + 4
    return out


def run_demo(out: Path, minutes: float = 4.0, n_show: int = 8, serve: bool = False) -> Path:
    import translate
    from training.loop import Trainer
    from training.pix2pix import Pix2Pix, Pix2PixConfig
    from translate import data as tdata
    from translate.evaluate import evaluate
    from translate.export import export_run
    from translate.imageio import save_image
    from translate.datasets import make_dataset

    out = Path(out)
    data = out / "maps"
    if not (data / "dataset.json").exists():
        print(f"[1/4] making the built-in maps set in {data}")
        make_dataset(DEMO_DATA["kind"], data, count=DEMO_DATA["count"], size=DEMO_DATA["size"],
                     seed=DEMO_DATA["seed"])
    else:
        print(f"[1/4] reusing the maps set in {data}")

    run = out / "run"
    model = run / "model.onnx"
    if model.exists():
        print(f"[2/4] reusing the trained model {model} (delete {run} to train again)")
    else:
        if (run / "checkpoints" / "latest.pt").exists():
            print(f"[2/4] resuming the interrupted training in {run}")
            trainer = Trainer(Pix2Pix, Pix2PixConfig(), resume=run, overrides={"time_limit": minutes})
        else:
            steps = steps_for_budget(minutes, seconds_per_step())
            print(f"[2/4] training Pix2Pix on CPU: {steps} steps, at most {minutes:g} minutes -> {run}")
            trainer = Trainer(Pix2Pix, Pix2PixConfig(data=str(data), out=str(run), time_limit=minutes, steps=steps,
                                                     **DEMO_TRAIN))
        trainer.fit()
        if not model.exists():  # stopped by the time budget: export what we have
            export_run(run)
    print("[3/4] translating the held-out test tiles with ONNX Runtime")
    predictor = translate.load(model)
    scores = evaluate(predictor, data, split="test", progress=False)
    results = out / "results"
    rows = []
    for src in tdata.find_pairs(data, "test")[:n_show]:
        a, b = tdata.load_pair(src)
        y = predictor(a)
        save_image(np.asarray(_side_by_side([("aerial (input)", a), ("translated", y), ("map (target)", b)])),
                   results / f"{src.name}.png")
        rows.append(src.name)
    grid = [Image.open(results / f"{n}.png") for n in rows]
    sheet = Image.new("RGB", (grid[0].width, sum(g.height + 4 for g in grid)), "white")
    y0 = 0
    for g in grid:
        sheet.paste(g, (0, y0))
        y0 += g.height + 4
    save_image(np.asarray(sheet), out / "side_by_side.png")
    page = out / "index.html"
    page.write_text(_html(rows, scores, model))
    print("[4/4] done")
    print(f"  side-by-side image: {(out / 'side_by_side.png').resolve()}")
    print(f"  HTML page:          {page.resolve()}")
    print(f"  model:              {model.resolve()}")
    print(f"  test set ({scores['count']} tiles): L1 {scores['l1']:.3f}, PSNR {scores['psnr']:.2f} dB, "
          f"SSIM {scores['ssim']:.3f}")
    print(f"  try: translate predict {model} {data}/test --out {out}/predicted")
    store = register_demo_model(out / "models", model, run)
    if serve:
        from serving.app import serve_until_interrupted

        serve_until_interrupted(store)
    return page


def register_demo_model(store_root: Path, model: Path, run: Path, name: str = "maps") -> Path:
    """Put the demo model into a model store (once: a second run finds the same file there)."""
    import hashlib

    from serving.store import ModelStore

    store = ModelStore(store_root)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    known = [v["version"] for m in store.list() if m["name"] == name for v in m["versions"]
             if v.get("sha256") == digest]
    version = known[-1] if known else store.register(name, model, checkpoint=run, promote=True)
    print(f"  model store:        {store.root.resolve()} ({name} {version})")
    return store.root


def _html(rows: list[str], scores: dict, model: Path) -> str:
    imgs = "\n".join(f'<figure><img src="results/{html.escape(n)}.png" alt="{html.escape(n)}">'
                     f"<figcaption>{html.escape(n)}</figcaption></figure>" for n in rows)
    summary = {k: scores[k] for k in ("count", "l1", "psnr", "ssim")}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pix2Pix demo: aerial photo to map</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}
figure{{margin:0 0 1rem}} img{{image-rendering:pixelated;max-width:100%}}
code{{background:#f4f4f4;padding:.1rem .3rem}}</style></head>
<body><h1>Pix2Pix demo: aerial photo &rarr; map</h1>
<p>Held-out tiles of the built-in maps set: input, the model's translation, and the target.
Model: <code>{html.escape(str(model))}</code>.</p>
<p>Test set: <code>{html.escape(json.dumps(summary))}</code></p>
{imgs}
</body></html>
"""
