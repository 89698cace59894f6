"""The ``translate`` command: a thin front over translate/, training/ and serving/.

Bad input (a typed TranslateError) prints one line and exits with status 2. Each command imports
what it needs inside its handler (the one place where imports of the project's own modules sit in
functions as a rule): ``translate --help`` and a mistyped flag answer without loading torch, ONNX
Runtime, GDAL or Ray. The flags of ``train`` and ``export`` come from options classes that live
beside the torch code they configure, so their sub-commands are built only when the command line
names them (:func:`build_parser`): everything else starts in a fraction of a second and without
torch's half a gigabyte, which `translate serve` would otherwise hold for its whole life.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

import training
import translate
from serving.store import ModelStore
from translate.checkpoint import load_checkpoint
from translate.errors import ConfigError, ModelError, TranslateError
from translate.kinds import kind
from translate.options import add_arguments, given


def _cmd_data_make(args) -> None:
    from translate.datasets import MakeOptions, make_dataset  # lazy: OpenCV

    o = MakeOptions(**given(args, MakeOptions))
    summary = make_dataset(args.kind, args.out, count=o.count, size=o.size, seed=o.seed, progress=o.progress)
    print(json.dumps(summary, default=str))


def _cmd_data_pair(args) -> None:
    from translate.datasets import PairOptions, pair_photos  # lazy: OpenCV

    summary = pair_photos(args.kind, args.photos, args.out, PairOptions(**given(args, PairOptions)))
    summary.pop("sources")  # in OUT/dataset.json; the rest is the outcome
    print(json.dumps(summary, default=str))


# modules adding top-level commands through register(subparsers)
COMMAND_MODULES = ("translate_cli.gan_commands", "translate_cli.serve_commands", "translate_cli.convert_commands",
                   "translate_cli.retrain_commands")


def _cmd_train(args) -> None:
    from training.loop import Trainer  # lazy: torch

    method = training.method(args.method)
    cls = method.config_class
    values = given(args, cls)
    if args.resume:
        run = Trainer(method, cls(), resume=args.resume, overrides=values).fit()
    else:
        run = Trainer(method, cls(**values)).fit()
    print(f"run directory: {run}")


def _cmd_export(args) -> None:
    from translate.export import ExportOptions, export_model, export_source  # lazy: torch
    from translate.generators import generator_kind  # lazy: torch

    options = ExportOptions(**given(args, ExportOptions))
    source = export_source(args.model, options.checkpoint)  # a run directory: its best checkpoint, unless asked
    k = generator_kind(source)  # an ONNX file's kind is the store's to check
    if args.register and k != "onnx" and not kind(k).translates:
        raise kind(k).refusal(args.model, "the model store (--register)")
    diff = export_model(source, args.out, direction=options.direction, tolerance=options.tolerance,
                        input_layout=options.input)
    print(f"wrote {args.out} from {source}: max abs diff vs PyTorch {diff:.2e} (tolerance {options.tolerance})")
    if args.register:
        try:  # our training checkpoints are kept for fine-tuning; a reference .pth is not one
            load_checkpoint(source)
            ckpt: Path | None = source
        except ModelError:
            ckpt = None
        store = ModelStore(args.store)
        version = store.register(args.register, Path(args.out), checkpoint=ckpt)
        print(f"registered {args.register} {version} in {store.url}"
              + (" (promoted)" if store.current(args.register) == version else ""))


def _expand_inputs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(file, path relative to the output folder) for files and folders given on the command line."""
    from translate.imageio import is_image_file, is_raster_file  # lazy: PIL

    out = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and (is_image_file(f) or is_raster_file(f)):
                    out.append((f, f.relative_to(p)))
        elif p.exists():
            out.append((p, Path(p.name)))
        else:
            raise TranslateError(f"{p}: no such file or directory")
    if not out:
        raise TranslateError("no input images found in " + ", ".join(inputs))
    return out


def _tile_bar(name: str):
    """A progress callback ``(done, total)`` showing the tiles of one large image (none for small ones)."""
    from tqdm.auto import tqdm

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=name, unit="tile", leave=False, file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


def predict_codes(predictor, samples: int, seed: int, z: str | None):
    """The latent codes (K, n) of ``translate predict``'s ``--samples``, ``--seed`` and ``--z``, or None for one
    answer with the model's default code; a ConfigError names the flag to change."""
    from translate.latents import read_codes  # lazy: numpy

    try:
        if z is None:
            return predictor.latents(samples, seed) if samples != 1 else None
        if samples != 1:
            raise ConfigError("samples", "--z gives the codes (one output per code): drop --samples")
        codes = read_codes(z)
        predictor.check_samples(len(codes))
        return predictor.codes(codes, len(codes))  # a ConfigError when the size is not the model's
    except ConfigError as e:  # the predictor's field is the command's flag
        raise ConfigError(f"--{e.field}", e.reason) from None


def _cmd_predict(args) -> None:
    from tqdm.auto import tqdm

    from translate.imageio import output_name  # lazy: PIL
    from translate.latents import sample_paths  # lazy: numpy
    from translate.predictor import RuntimeOptions  # lazy: numpy
    from translate.raster import RasterOptions, translate_path  # lazy: numpy

    raster_options = RasterOptions(**given(args, RasterOptions))
    predictor = translate.load(args.model, device=args.device, direction=args.direction,
                               runtime=RuntimeOptions(**given(args, RuntimeOptions)))
    codes = predict_codes(predictor, args.samples, args.seed, args.z)
    files = _expand_inputs(args.inputs)
    failed = written = 0
    for src, rel in tqdm(files, desc="translate", unit="img", disable=len(files) < 2):
        outputs = sample_paths(Path(args.out) / output_name(rel, args.format), 1 if codes is None else len(codes))
        try:  # the same path as translate convert: read, translate, write atomically
            for i, dst in enumerate(outputs):
                translate_path(predictor, src, dst, raster_options, model=str(args.model), progress=_tile_bar(src.name),
                               z=None if codes is None else codes[i])
                written += 1
        except TranslateError as e:
            failed += 1
            print(f"skipped: {e}", file=sys.stderr)
    print(f"wrote {written} image{'' if written == 1 else 's'} to {args.out}" + (f" ({failed} failed)" if failed else ""))
    if failed:
        sys.exit(1)


def _cmd_evaluate(args) -> None:
    from translate.generators import generator_kind  # lazy: torch

    k = generator_kind(args.model)
    kind("translation" if k == "onnx" else k).call("evaluate")(args)


def evaluate_translation(args) -> None:
    """``translate evaluate`` of an image translator: scores on the paired data of ``--data``."""
    from translate.evaluate import evaluate, summary_table  # lazy: torch
    from translate.segmenter import load_segmenter  # lazy: torch

    if not args.data:
        raise TranslateError("--data: required to evaluate a translation model")
    segmenter = load_segmenter(args.segmenter) if args.segmenter else None
    predictor = translate.load(args.model, device=args.device, direction=args.direction)
    result = evaluate(predictor, args.data, split=args.split, limit=args.limit, progress=not args.quiet,
                      palette=args.palette, segmenter=segmenter)
    print(json.dumps(result, indent=None if args.compact else 2))
    print(summary_table(result), file=sys.stderr)  # stdout stays one JSON document


def evaluate_segmenter(args) -> None:
    """``translate evaluate`` of a segmenter: what it recognises in the real photos of ``--data``."""
    from translate.evaluate import evaluate_segmenter as score  # lazy: torch
    from translate.evaluate import summary_table  # lazy: torch
    from translate.segmenter import load_segmenter  # lazy: torch

    if not args.data:
        raise TranslateError("--data: required to evaluate a segmenter (photos and their label maps)")
    result = score(load_segmenter(args.model), args.data, split=args.split, limit=args.limit, progress=not args.quiet)
    print(json.dumps(result, indent=None if args.compact else 2))
    print(summary_table(result), file=sys.stderr)


def _cmd_demo(args) -> None:
    from .demo import run_demo  # lazy: torch

    run_demo(Path(args.out), minutes=args.minutes, serve=not args.no_serve)


def _add_train_methods(t: argparse.ArgumentParser) -> None:
    tsub = t.add_subparsers(dest="method", required=True)
    for name, method in training.methods().items():
        mp = tsub.add_parser(name, help=(method.__doc__ or name).strip().splitlines()[0])
        add_arguments(mp, method.config_class)
        mp.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its latest checkpoint")
        mp.set_defaults(func=_cmd_train)


def _add_export_arguments(e: argparse.ArgumentParser) -> None:
    from translate.export import ExportOptions  # lazy: torch

    e.add_argument("model", help="run directory, checkpoint, or reference latest_net_G.pth")
    e.add_argument("--out", required=True, help="output .onnx file")
    add_arguments(e, ExportOptions)
    e.add_argument("--register", metavar="NAME", help="also add the model (and its checkpoint) to the model store")
    e.add_argument("--store", metavar="DIR|URL", help="model store: a folder or s3://BUCKET/PREFIX "
                                                      "(default: $TRANSLATE_STORE or ./models)")
    e.set_defaults(func=_cmd_export)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole ``translate`` parser; given the ``command`` a command line names (``""`` for none),
    ``train`` and ``export`` keep only their one-line help unless named, so that building the parser
    for any other command (or for ``translate --help``) imports no torch."""
    def wanted(name: str) -> bool:
        return command is None or command == name

    p = argparse.ArgumentParser(prog="translate", description="Image-to-image translation: train, export, predict.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    from translate.datasets import KINDS, PAIRINGS, MakeOptions, PairOptions  # lazy: OpenCV

    d = sub.add_parser("data", help="paired data sets: built-in ones, or made from your photos")
    dsub = d.add_subparsers(dest="data_command", required=True)
    mk = dsub.add_parser("make", help="generate a built-in paired dataset in the aligned A|B layout")
    mk.add_argument("kind", choices=tuple(KINDS))
    mk.add_argument("out", help="output folder (train/ val/ test/ are created)")
    add_arguments(mk, MakeOptions)
    mk.set_defaults(func=_cmd_data_make)
    pa = dsub.add_parser(
        "pair", help="turn a folder of photos into a paired data set (A|B), the photos as B",
        description="Make A from each photo under PHOTOS (sub-folders too) and write A|B pairs to OUT, split into "
                    "train/val/test by a hash of each photo's path: edges = a line drawing like the sketches set's "
                    "(sketch -> photo), gray = grey levels (colourisation), downscale = a low-resolution copy "
                    "(super-resolution), mask = holes painted white (inpainting). Unreadable photos are named and "
                    "skipped; OUT/dataset.json records where every pair came from.")
    pa.add_argument("kind", choices=tuple(PAIRINGS))
    pa.add_argument("photos", help="folder of photos (any size; cropped to a centred square)")
    pa.add_argument("out", help="output folder (train/ val/ test/ are created)")
    add_arguments(pa, PairOptions)
    pa.set_defaults(func=_cmd_data_pair)

    t = sub.add_parser("train", help="train a model")
    if wanted("train"):
        _add_train_methods(t)
    e = sub.add_parser("export", help="export a generator to ONNX (verified against PyTorch)")
    if wanted("export"):
        _add_export_arguments(e)

    from translate.predictor import MAX_SAMPLES, RuntimeOptions  # lazy: numpy
    from translate.raster import RasterOptions  # lazy: numpy

    pr = sub.add_parser("predict", help="translate images and rasters (GeoTIFF in, georeferenced GeoTIFF out)")
    pr.add_argument("model", help=".onnx file, run directory, checkpoint or reference .pth")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, rasters (.tif, .img, .jp2, .vrt) "
                                                                "or folders")
    pr.add_argument("--out", required=True, help="output folder (folder structure of inputs is kept)")
    pr.add_argument("--format", choices=("png", "jpg"), default="png",
                    help="format of translated images (rasters are written as GeoTIFF .tif)")
    pr.add_argument("--direction", help="AtoB or BtoA, for checkpoints holding both")
    pr.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    pr.add_argument("--samples", type=int, default=1,
                    help=f"outputs per input of a multimodal model (BicycleGAN's), at most {MAX_SAMPLES}: NAME_0.png, "
                         "NAME_1.png...; their latent codes are drawn from --seed")
    pr.add_argument("--seed", type=int, default=0, help="seed of the samples' latent codes: the same seed gives the "
                                                        "same outputs")
    pr.add_argument("--z", help="latent code(s) of a multimodal model for every input: comma-separated numbers, or a "
                                ".npy file of one code or one per output (NAME_0.png...)")
    add_arguments(pr, RasterOptions)
    add_arguments(pr, RuntimeOptions)
    pr.set_defaults(func=_cmd_predict)

    ev = sub.add_parser("evaluate", help="L1 / PSNR / SSIM on a paired split, and class-map, FCN and Frechet "
                        "scores where the data has class maps, as JSON (and a short table on stderr)")
    ev.add_argument("model")
    ev.add_argument("--data", help="paired data set (translation models; GAN runs: real images to compare with)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--direction")
    ev.add_argument("--limit", type=int, default=0, help="evaluate at most N pairs (0: all)")
    ev.add_argument("--palette", help="the targets are class maps of this palette (a JSON file; 'auto': find it "
                    "from the training targets); default: DATA/palette.json when it describes the target side")
    ev.add_argument("--segmenter", help="run or checkpoint of `translate train segmenter`: score translations into "
                    "photos by what it recognises in them (FCN score) and by a Frechet distance of its features")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ev.add_argument("--compact", action="store_true", help="one-line JSON")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_cmd_evaluate)

    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)

    dm = sub.add_parser("demo", help="make the maps and sketches sets, train a small model on each, translate "
                                     "held-out pairs and drawings, serve both")
    dm.add_argument("--out", default="demo")
    dm.add_argument("--minutes", type=float, default=4.0, help="training time budget of both models (default 4)")
    dm.add_argument("--no-serve", action="store_true", help="do not start the service at the end")
    dm.set_defaults(func=_cmd_demo)
    return p


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (docker stop, systemd) ends a command as Ctrl-C does: cleanly


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    command = next((a for a in argv if not a.startswith("-")), "")  # the top level's only options are flags
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    old_term = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        args.func(args)
    except TranslateError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


if __name__ == "__main__":
    main()
