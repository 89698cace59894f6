"""`translate serve` (the HTTP service on an embedded local Ray) and `translate models ...` (the store)."""
from __future__ import annotations

import json

from serving.config import DEFAULT_FAST_PATHS, FAST_PATHS, ServiceConfig
from serving.store import ModelStore
from translate.options import add_arguments, given

STORE_HELP = ("model store: a folder, or object storage such as s3://BUCKET/PREFIX with credentials and endpoint "
              "from the environment (default: $TRANSLATE_STORE or ./models)")


def _store(args):

    return ModelStore(args.store)


def _cmd_serve(args) -> None:
    import atexit
    import gc

    from serving.local_service import serve_until_interrupted  # lazy: Ray

    options = {k: v for k, v in given(args, ServiceConfig).items() if k != "store"}  # --store: the root below
    # the interpreter's last garbage collection over Ray's, FastAPI's and pydantic's objects takes seconds on a
    # busy machine after the service has stopped: frozen at exit, it is skipped, so a stop stays prompt.
    # Registered first, it runs last, after every other exit handler
    atexit.register(gc.freeze)
    serve_until_interrupted(_store(args).url, host=args.host, port=args.port, fast_paths=tuple(args.fast_paths),
                            **options)


def _cmd_models_list(args) -> None:
    models = _store(args).list()
    if args.json:
        print(json.dumps(models, indent=2))
        return
    if not models:
        print(f"no models in {_store(args).url}")
    for m in models:
        print(m["name"])
        for v in m["versions"]:
            mark = "*" if v["version"] == m["current"] else " "
            metrics = ", ".join(f"{k} {val:.4g}" for k, val in (v.get("metrics") or {}).items()
                                if isinstance(val, (int, float)))
            print(f"  {mark} {v['version']}  {v.get('method') or '-'} {v.get('direction', '')}  "
                  f"{v.get('created', '')}" + (f"  {metrics}" if metrics else ""))


def _cmd_models_register(args) -> None:
    version = _store(args).register(args.name, args.model, checkpoint=args.checkpoint, promote=args.promote)
    print(f"registered {args.name} {version}")


def _cmd_models_promote(args) -> None:
    _store(args).promote(args.name, args.version)
    print(f"promoted {args.name} {args.version}")


def _cmd_models_delete(args) -> None:
    _store(args).delete(args.name, args.version)
    print(f"deleted {args.name}" + (f" {args.version}" if args.version else " (all versions)"))


def register(subparsers) -> None:

    s = subparsers.add_parser("serve", help="run the HTTP translation service (upload page, REST API) locally")
    s.add_argument("--store", metavar="DIR|URL", help=STORE_HELP)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--fast-paths", nargs="*", default=list(DEFAULT_FAST_PATHS), choices=list(FAST_PATHS),
                   metavar="NAME",
                   help=f"Ray Serve's fast paths to turn on ({', '.join(FAST_PATHS)}; default: "
                        f"{' '.join(DEFAULT_FAST_PATHS)}, the measured best; --fast-paths with no name: Serve's "
                        "defaults): Serve's throughput-optimized mode, HAProxy in place of the Python HTTP proxy, "
                        "gRPC between the deployments (README, \"Ray Serve's fast paths\")")
    add_arguments(s, ServiceConfig, skip=("store",))
    s.set_defaults(func=_cmd_serve)

    m = subparsers.add_parser("models", help="list, register, promote or delete versions in the model store")
    msub = m.add_subparsers(dest="models_command", required=True)
    ls = msub.add_parser("list", help="models, their versions and which one is served")
    ls.add_argument("--json", action="store_true", help="print the store as JSON")
    rg = msub.add_parser("register", help="add an exported .onnx as a new version")
    rg.add_argument("name")
    rg.add_argument("model", help="exported .onnx file")
    rg.add_argument("--checkpoint", help="training checkpoint or run directory, kept for fine-tuning")
    rg.add_argument("--promote", action="store_true", help="serve the new version at once")
    pr = msub.add_parser("promote", help="serve VERSION of NAME (atomic switch, no restart)")
    pr.add_argument("name")
    pr.add_argument("version")
    dl = msub.add_parser("delete", help="delete VERSION of NAME, or the whole model without VERSION")
    dl.add_argument("name")
    dl.add_argument("version", nargs="?")
    for p, func in ((ls, _cmd_models_list), (rg, _cmd_models_register), (pr, _cmd_models_promote),
                    (dl, _cmd_models_delete)):
        p.add_argument("--store", metavar="DIR|URL", help=STORE_HELP)
        p.set_defaults(func=func)
