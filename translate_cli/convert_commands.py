"""``translate convert MODEL IN_DIR OUT_DIR``: batch conversion of a folder on Ray Data."""
from __future__ import annotations

import sys


def _cmd_convert(args) -> None:
    import logging

    from serving.convert import SUMMARY_NAME, convert

    if not args.verbose:  # Ray Data's per-dataset INFO lines (set up when it is imported); our bar says it
        import ray.data  # noqa: F401

        logging.getLogger("ray.data").setLevel(logging.WARNING)
    s = convert(args.model, args.in_dir, args.out_dir, workers=args.workers, fmt=args.format, device=args.device,
                direction=args.direction, progress=not args.quiet, store=args.store)
    print(f"wrote {s.written} images to {args.out_dir} ({s.skipped} already there, {len(s.failed)} failed; "
          f"see {SUMMARY_NAME}) in {s.seconds:.1f} s")
    if s.failed:
        sys.exit(1)


def register(subparsers) -> None:
    c = subparsers.add_parser("convert", help="translate a folder of images on Ray Data (resumable)")
    c.add_argument("model", help=".onnx file, run directory, checkpoint or reference .pth; with --store, "
                                 "NAME or NAME@VERSION in the model store")
    c.add_argument("in_dir", help="input folder (searched recursively)")
    c.add_argument("out_dir", help="output folder: same relative paths; existing outputs are skipped")
    c.add_argument("--workers", type=int, default=2, help="model actors (default 2)")
    c.add_argument("--format", choices=("png", "jpg"), default="png")
    c.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    c.add_argument("--direction", help="AtoB or BtoA, for checkpoints holding both")
    c.add_argument("--store", metavar="DIR|URL", help="read MODEL from this model store (a folder or "
                                                      "s3://BUCKET/PREFIX): its promoted version unless NAME@VERSION")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_convert)
