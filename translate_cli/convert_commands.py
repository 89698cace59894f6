"""``translate convert MODEL IN_DIR OUT_DIR``: batch conversion of a folder on Ray Data."""
from __future__ import annotations

import sys

from translate.options import add_arguments, given


def _cmd_convert(args) -> None:
    import logging

    from serving.convert import SUMMARY_NAME, ConvertOptions, convert  # lazy: numpy

    if not args.verbose:  # Ray Data's per-dataset INFO lines (set up when it is imported); our bar says it
        import ray.data  # noqa: F401

        logging.getLogger("ray.data").setLevel(logging.WARNING)
    options = ConvertOptions(**given(args, ConvertOptions))
    s = convert(args.model, args.in_dir, args.out_dir, **options.kwargs())
    print(f"wrote {s.written} image{'' if s.written == 1 else 's'} to {args.out_dir} ({s.skipped} already there, "
          f"{len(s.failed)} failed; see {SUMMARY_NAME}) in {s.seconds:.1f} s")
    if s.failed:
        sys.exit(1)


def register(subparsers) -> None:
    from serving.convert import ConvertOptions  # lazy: numpy

    c = subparsers.add_parser("convert", help="translate a folder of images and rasters on Ray Data (resumable; "
                                              "GeoTIFFs stay georeferenced)")
    c.add_argument("model", help=".onnx file, run directory, checkpoint or reference .pth; with --store, "
                                 "NAME or NAME@VERSION in the model store")
    c.add_argument("in_dir", help="input folder (searched recursively)")
    c.add_argument("out_dir", help="output folder: same relative paths; existing outputs are skipped")
    add_arguments(c, ConvertOptions)
    c.set_defaults(func=_cmd_convert)
