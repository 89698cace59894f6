"""Load test of the HTTP service against raw ONNX Runtime on the same cores.

    python benchmarks/serve_load.py [--net unet_128 --ngf 32 --size 128] [--concurrency 1 8 32]
                                    [--requests 1000 2000 10000] [--max-batch-size 8]

Exports a random generator of the given architecture (speed does not depend on the weights),
measures raw ONNX Runtime throughput (translate.predictor, batch 1 and batch max-batch-size),
then starts the service on an embedded local Ray with all cores and sends PNG uploads of
size x size from an asyncio client at each concurrency: requests/s, p50/p99 latency, mean
batch size, errors (any non-200). The client runs on the same cores as the service. Prints a
Markdown table, and where the CPU went per request at the highest concurrency, by process
(read from /proc: Serve's HTTP proxy, the ingress and model replicas, the controller, the
client); copy them with the machine description into BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_model(net: str, ngf: int) -> bytes:
    import torch

    from translate.export import export_generator
    from translate.networks import define_G, to_inference

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


def raw_throughput(model: bytes, size: int, batch: int, seconds: float, threads: int) -> float:
    """Images per second of translate.predictor (ONNX Runtime) on uint8 arrays, batch ``batch``."""
    from translate.predictor import Predictor

    p = Predictor(model, device="cpu", threads=threads)
    images = [np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8) for i in range(batch)]
    p.translate_arrays(images)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        p.translate_arrays(images)
        n += batch
    return n / (time.perf_counter() - t)


def process_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of every process on the machine, by a short name (Linux /proc)."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
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
        elif "benchmarks/serve_load.py" in b" ".join(argv).decode(errors="replace"):
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
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": total, "rps": total / wall, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "batch": float(np.mean(batches)) if batches else 0.0,
            "errors": total - statuses.get(200, 0), "statuses": statuses}


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
                                                            "(0: ORT's default, one per core; raw always uses the default)")
    ap.add_argument("--replicas", type=int, default=1, help="model replicas (fixed; each holds a session)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--access-log-off", action="store_true", help="run without Serve's per-request access log")
    ap.add_argument("--serve-env", nargs="*", default=[], metavar="K=V",
                    help="environment for Ray and Serve (e.g. RAY_SERVE_THROUGHPUT_OPTIMIZED=1), set before Ray starts")
    args = ap.parse_args()
    os.environ.update(kv.split("=", 1) for kv in args.serve_env)
    counts = args.requests * len(args.concurrency) if len(args.requests) == 1 else args.requests

    from serving import app as service
    from serving.store import ModelStore

    model = make_model(args.net, args.ngf)
    raw1 = raw_throughput(model, args.size, 1, args.raw_seconds, 0)
    rawb = raw_throughput(model, args.size, args.max_batch_size, args.raw_seconds, 0)
    print(f"raw ONNX Runtime: batch 1 {raw1:.1f} img/s, batch {args.max_batch_size} {rawb:.1f} img/s", flush=True)

    store = ModelStore(tempfile.mkdtemp(prefix="serve-load-"))
    store.register("bench", model)
    body = test_image(args.size)
    url = service.start_local(store.root, port=args.port, ray_cpus=os.cpu_count(),
                              min_replicas=args.replicas, max_replicas=args.replicas,
                              max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.batch_wait_ms / 1000,
                              max_queued_requests=1024, access_log=not args.access_log_off,
                              threads=args.threads)
    rows = []
    try:
        endpoint = f"{url}/v1/models/bench/translate"
        asyncio.run(load(endpoint, body, max(args.concurrency), 200))  # warm-up: model loaded, connections open
        for c, n in zip(args.concurrency, counts):
            before = process_cpu_seconds()
            rows.append(asyncio.run(load(endpoint, body, c, n)))
            after = process_cpu_seconds()
            rows[-1]["cpu_ms"] = {k: (after[k] - before.get(k, 0.0)) * 1000 / n for k in after}
            print({k: v for k, v in rows[-1].items() if k != "cpu_ms"}, flush=True)
    finally:
        service.stop_local()

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; model {args.net} ngf={args.ngf}, "
          f"{args.size}x{args.size} PNG uploads ({len(body):,} bytes); max_batch_size {args.max_batch_size}, "
          f"batch wait {args.batch_wait_ms:g} ms; {args.replicas} model replica(s), ORT threads "
          f"{args.threads or 'default'}; "
          f"access log {'off' if args.access_log_off else 'on'}; env {' '.join(args.serve_env) or 'default'}\n")
    print(f"raw ONNX Runtime (translate.predictor, same cores): batch 1 {raw1:.1f} img/s, "
          f"batch {args.max_batch_size} {rawb:.1f} img/s\n")
    print("| concurrency | requests | errors | req/s | p50 ms | p99 ms | mean batch | vs raw batch 1 | vs raw batch "
          f"{args.max_batch_size} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['rps']:.1f} | {r['p50']:.1f} | "
              f"{r['p99']:.1f} | {r['batch']:.2f} | {r['rps'] / raw1:.0%} | {r['rps'] / rawb:.0%} |")
    last = rows[-1]
    print(f"\nCPU per request at concurrency {last['concurrency']}, by process (ms; raw ONNX Runtime needs "
          f"{1000 * (os.cpu_count() or 1) / rawb:.1f} ms of the machine per image at batch {args.max_batch_size}):\n")
    print("| process | CPU ms / request |\n|---|---|")
    top = sorted(((v, k) for k, v in last["cpu_ms"].items() if v >= 0.05), reverse=True)
    for v, k in top[:8]:
        print(f"| {k} | {v:.2f} |")
    print(f"| all processes | {sum(last['cpu_ms'].values()):.2f} |")


if __name__ == "__main__":
    main()
