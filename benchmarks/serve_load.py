"""Load test of the HTTP service against the raw model (its engine, as the replicas run it) on the same cores.

    python -m benchmarks.serve_load [--net unet_128 --ngf 32 --size 128] [--concurrency 1 8 32]
                                    [--requests 1000 2000 10000] [--max-batch-size 8] [--json OUT]

Exports a random generator of the given architecture (speed does not depend on the weights),
measures the raw model (translate.predictor with the replicas' engine, batch 1 and batch max-batch-size): images/s and
CPU seconds per image (process time, so other jobs on the machine do not inflate it), then starts
the service on an embedded local Ray with all cores and sends PNG uploads of size x size from an
asyncio client at each concurrency: requests/s, p50/p99 latency, mean batch size, errors (any
non-200). The client runs on the same cores as the service. Prints a Markdown table, and where
the CPU went per request at each concurrency, by process (read from /proc for this script and
the processes of the Ray it started, nothing else on the machine: Serve's HTTP proxy, the ingress
and model replicas, the controller, raylet, GCS, the client), and the serving overhead: the
service's CPU per request minus the raw model's CPU per image at the batch size the service
ran (interpolated between batch 1 and max-batch-size); the client is not counted in it.
Copy them with the machine description it prints into BENCHMARKS.md.

``--code DIR`` runs the service from another checkout (its ``serving`` and ``translate``), so two
versions of the code can be measured by this same script in one sitting: see benchmarks/serve_ab.py,
which interleaves such runs. The benchmark then runs again in a child process whose working folder
and first PYTHONPATH entry are that checkout: the child imports its code, and so do the replicas
(Ray puts the driver's working folder first on its workers' path). This checkout's ``benchmarks``
follows on the child's PYTHONPATH; a checkout whose own ``benchmarks`` is a package (it has an
``__init__.py``) runs its own copy of this script instead.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import machine, print_table, stopwatch, time_calls

#: the checkout this benchmark belongs to
ROOT = Path(__file__).resolve().parents[1]


def serves(code: Path) -> bool:
    """Whether this process imports ``serving`` from the checkout ``code`` (found, not imported)."""
    spec = importlib.util.find_spec("serving")
    return bool(spec and spec.origin) and Path(spec.origin).resolve().is_relative_to(code)


def run_serving(code: Path, argv: list[str]) -> int:
    """This benchmark again, in a child process that imports ``code``'s packages: it is the child's working
    folder (which Ray puts first on its workers' path: the replicas import the same) and the first entry of its
    PYTHONPATH; this checkout follows, for ``benchmarks``. Returns the child's exit status."""
    path = [str(code), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.run([sys.executable, "-m", __spec__.name, *argv], cwd=code, env=env).returncode


def make_model(net: str, ngf: int) -> bytes:
    import torch

    from translate.export import export_generator  # lazy: torch
    from translate.networks import define_G, to_inference  # lazy: torch

    torch.manual_seed(0)
    G = to_inference(define_G(net, ngf=ngf), batch_stats=True)
    return export_generator(G, {"method": "pix2pix", "arch": {"name": net, "ngf": ngf}, "batch_stats": True})[0]


def test_image(size: int) -> bytes:
    """A smooth image with some noise: PNG of a realistic size for its pixel count."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 255 // size, y * 255 // size, (x + y) * 127 // size], axis=-1)
    img = np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def raw_throughput(model: bytes, size: int, batch: int, seconds: float, threads: int) -> tuple[float, float, str]:
    """(images per second, CPU milliseconds per image, the engine) of translate.predictor on uint8 arrays, batch
    ``batch``, with the engine the model replicas run (``--engine auto``: OpenVINO bf16 on CPUs with bf16, ONNX
    Runtime elsewhere). CPU is this process's time (all its threads), not wall time x cores. ORT's
    threads do not spin where the served code's Predictor has that option (the service turns it off)."""
    import inspect

    from translate import predictor  # lazy: ONNX Runtime

    params = inspect.signature(predictor.Predictor).parameters
    if "runtime" in params:  # translate.predictor.RuntimeOptions, as the model replicas set it
        spin = {"runtime": predictor.RuntimeOptions(spinning=False)}
    else:  # an older checkout (--code): its own switch, if it has one
        spin = {"spin": False} if "spin" in params else {}
    p = predictor.Predictor(model, device="cpu", threads=threads, **spin)
    images = [np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8) for i in range(batch)]
    t = time_calls(lambda: p.translate_arrays(images), warmup=1, seconds=seconds)
    engine = f"{getattr(p, 'engine', 'onnxruntime')} {getattr(p, 'precision', '')}".strip()
    return t.per_second * batch, sum(t.cpu) * 1000 / (len(t.cpu) * batch), engine


def own_pids() -> list[int]:
    """This process and everything under it (the local Ray it started: GCS, raylet, workers, replicas)."""
    import psutil

    me = psutil.Process()
    return [me.pid, *(p.pid for p in me.children(recursive=True))]


def process_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of this script and its Ray's processes, by a short name (Linux /proc).
    Other jobs on the machine (another Ray included) are not counted."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for pid in map(str, own_pids()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = argv[0].decode(errors="replace")
        if name.startswith("ray::"):
            name = name.split(".")[0].replace("ServeReplica:", "")
        elif int(pid) == os.getpid():
            name = "this script (load client)"
        else:
            name = os.path.basename(name.split()[0]) if name else f"pid {pid}"
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


async def load(url: str, body: bytes, concurrency: int, total: int) -> dict:
    import aiohttp

    latencies, statuses, batches = [], {}, []
    todo = iter(range(total))

    async def worker(session):
        for _ in todo:
            t = time.perf_counter()
            try:
                async with session.post(url, data=body, headers={"Content-Type": "image/png"}) as r:
                    await r.read()
                    status = r.status
                    if status == 200:
                        batches.append(int(r.headers.get("X-Batch-Size", 0)))
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                status = type(e).__name__
            latencies.append(time.perf_counter() - t)
            statuses[status] = statuses.get(status, 0) + 1

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as s:
        with stopwatch() as lap:
            await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    lat = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": total, "rps": total / lap.wall,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "batch": float(np.mean(batches)) if batches else 0.0,
            "errors": total - statuses.get(200, 0), "statuses": statuses}


CLIENT = "this script (load client)"


def model_cpu_ms(raw: dict, batch: float) -> float:
    """Raw model CPU ms per image at mean batch size ``batch`` (linear between the measured batches)."""
    measured = sorted((int(b), c) for b, c in raw["cpu_ms"].items())  # int keys, or str ones read back from JSON
    (b1, c1), (b2, c2) = measured[0], measured[-1]
    if b2 == b1:
        return c1
    return c1 + (c2 - c1) * (min(max(batch, b1), b2) - b1) / (b2 - b1)


def served_code() -> str:
    """Where a Ray worker of this service imports ``serving`` from (checks that --code reached them)."""
    import ray

    return ray.get(ray.remote(num_cpus=0)(lambda: __import__("serving").__file__).remote())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default="unet_128")
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, nargs="+", default=[1000, 2000, 10000],
                    help="requests per concurrency level (one number, or one per level)")
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--batch-wait-ms", type=float, default=5.0)
    ap.add_argument("--raw-seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads per model replica "
                                                            "(0: ORT's default, one per core; raw uses the same)")
    ap.add_argument("--replicas", type=int, default=1, help="model replicas (fixed; each holds a session)")
    ap.add_argument("--port", type=int, default=0, help="the service's port (0: a free one)")
    ap.add_argument("--access-log", action="store_true", help="run with Serve's per-request access log (off by "
                                                               "default, as the service's own default)")
    ap.add_argument("--serve-env", nargs="*", default=[], metavar="K=V",
                    help="environment for Ray and Serve (e.g. RAY_SERVE_THROUGHPUT_OPTIMIZED=1), set before Ray starts")
    ap.add_argument("--fast-paths", nargs="*", default=None, metavar="NAME",
                    help="Ray Serve's fast paths to turn on (serving.config.FAST_PATHS: throughput, haproxy, grpc; "
                         "default: the checkout's own default; --fast-paths with no name: none, Serve's defaults)")
    ap.add_argument("--option", nargs="*", default=[], metavar="K=V",
                    help="more service options (ServiceConfig fields, as strings) for start_local")
    ap.add_argument("--code", default=None, metavar="DIR", help="serve the code of this checkout (default: the one "
                                                                 "this process imports, this script's when run "
                                                                 "from its root)")
    ap.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON to OUT")
    args = ap.parse_args()
    if args.json:
        args.json = os.path.abspath(args.json)
    checkout = Path(args.code).resolve() if args.code else None
    if checkout and not serves(checkout):  # the child gets absolute paths: its working folder is the checkout
        sys.exit(run_serving(checkout, [*sys.argv[1:], "--code", str(checkout),
                                        *(["--json", args.json] if args.json else [])]))
    os.environ.update(kv.split("=", 1) for kv in args.serve_env)
    counts = args.requests * len(args.concurrency) if len(args.requests) == 1 else args.requests

    from serving import local_service as service  # lazy: Ray; after --code chose the checkout
    from serving.store import ModelStore  # lazy: after --code chose the checkout

    if args.port == 0:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            args.port = sock.getsockname()[1]
    model = make_model(args.net, args.ngf)
    raw = {"rps": {}, "cpu_ms": {}}
    for b in sorted({1, args.max_batch_size}):
        raw["rps"][b], raw["cpu_ms"][b], engine = raw_throughput(model, args.size, b, args.raw_seconds, args.threads)
        print(f"raw {engine} batch {b}: {raw['rps'][b]:.1f} img/s, {raw['cpu_ms'][b]:.2f} CPU ms/img", flush=True)
    raw1, rawb = raw["rps"][1], raw["rps"][args.max_batch_size]

    store = ModelStore(tempfile.mkdtemp(prefix="serve-load-"))
    store.register("bench", model)
    body = test_image(args.size)
    options: dict = dict(kv.split("=", 1) for kv in args.option)
    if args.fast_paths is not None:  # only then: a checkout from before the fast paths serves without them
        options["fast_paths"] = tuple(args.fast_paths)
    url = service.start_local(store.root, port=args.port, ray_cpus=os.cpu_count(),
                              min_replicas=args.replicas, max_replicas=args.replicas,
                              max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.batch_wait_ms / 1000,
                              max_queued_requests=1024, access_log=args.access_log,
                              threads=args.threads, **options)
    rows = []
    try:
        code = served_code()
        print(f"serving code from {code}", flush=True)
        endpoint = f"{url}/v1/models/bench/translate"
        asyncio.run(load(endpoint, body, max(args.concurrency), 200))  # warm-up: model loaded, connections open
        for c, n in zip(args.concurrency, counts, strict=True):
            before = process_cpu_seconds()
            rows.append(asyncio.run(load(endpoint, body, c, n)))
            after = process_cpu_seconds()
            cpu = {k: (after[k] - before.get(k, 0.0)) * 1000 / n for k in after}
            service_ms = sum(v for k, v in cpu.items() if k != CLIENT)
            model_ms = model_cpu_ms(raw, rows[-1]["batch"] or 1.0)
            rows[-1].update(cpu_ms=cpu, service_cpu_ms=service_ms, model_cpu_ms=model_ms,
                            overhead_ms=service_ms - model_ms)
            print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rows[-1].items() if k != "cpu_ms"},
                  flush=True)
    finally:
        service.stop_local()

    load1 = os.getloadavg()[0]
    print(f"\n{machine()}, load average {load1:.2f} at the end; code {code}; model {args.net} ngf={args.ngf}, "
          f"{args.size}x{args.size} PNG uploads ({len(body):,} bytes); max_batch_size {args.max_batch_size}, "
          f"batch wait {args.batch_wait_ms:g} ms; {args.replicas} model replica(s), ORT threads "
          f"{args.threads or 'default'}; "
          f"access log {'on' if args.access_log else 'off'}; env {' '.join(args.serve_env) or 'default'}; "
          f"fast paths {'(default)' if args.fast_paths is None else ' '.join(args.fast_paths) or 'none'}; "
          f"options {' '.join(args.option) or 'default'}\n")
    print(f"raw {engine} (translate.predictor, same cores and threads): batch 1 {raw1:.1f} img/s "
          f"({raw['cpu_ms'][1]:.2f} CPU ms/img), batch {args.max_batch_size} {rawb:.1f} img/s "
          f"({raw['cpu_ms'][args.max_batch_size]:.2f} CPU ms/img)\n")
    print_table(["concurrency", "requests", "errors", "req/s", "p50 ms", "p99 ms", "mean batch", "vs raw batch 1",
                 f"vs raw batch {args.max_batch_size}", "service CPU ms/req", "model's (raw)", "overhead ms/req"],
                [(r["concurrency"], r["requests"], r["errors"], f"{r['rps']:.1f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}",
                  f"{r['batch']:.2f}", f"{r['rps'] / raw1:.0%}", f"{r['rps'] / rawb:.0%}", f"{r['service_cpu_ms']:.2f}",
                  f"{r['model_cpu_ms']:.2f}", f"{r['overhead_ms']:.2f}") for r in rows])
    print("\nCPU per request by process (ms), at each concurrency:\n")
    names = sorted({k for r in rows for k, v in r["cpu_ms"].items() if v >= 0.05},
                   key=lambda k: -max(r["cpu_ms"].get(k, 0.0) for r in rows))
    print_table(["process", *(f"c={r['concurrency']}" for r in rows)],
                [[k, *(f"{r['cpu_ms'].get(k, 0.0):.2f}" for r in rows)] for k in names]
                + [["all but the client", *(f"{r['service_cpu_ms']:.2f}" for r in rows)]])
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "code": code, "raw": raw, "rows": rows, "load_average": load1,
                       "upload_bytes": len(body)}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
