"""A soak of the HTTP service: steady load, a retraining job and its promotion in the middle, a model replica killed.

    python -m benchmarks.soak [--requests 100000] [--concurrency 16] [--max-minutes 240] [--hostile 0.1]
                              [--retrain-at 0.2] [--kill-at 0.5] [--fast-paths NAME ...] [--colocate] [--json OUT]

Trains a tiny Pix2Pix briefly (under-trained, so fine-tuning beats it) on the built-in maps set, registers it
with its checkpoint as version v0001 and serves it on an embedded local Ray with two model replicas. An asyncio
client sends ``--requests`` uploads at ``--concurrency``, ``--hostile`` of them hostile or odd (the service's fuzz
cases: truncated or bit-flipped files, text, a GIF, a decompression-bomb header, an empty body, a form without the
image, a bad version; and grayscale, RGBA and EXIF-rotated photos that must translate), each with the answer it
must get. Once ``--retrain-at`` of them are sent it uploads a zip of new pairs to ``POST .../retrain`` (the job
fine-tunes, compares and promotes v0002); once ``--kill-at`` are sent it SIGKILLs one model replica (with
``--colocate``, where the two ingress replicas run the models, one of those). The load goes
on until every request is sent and the retraining has ended, and a fifth of ``--requests`` more (at least 100) after
that when the events ended late; or until ``--max-minutes`` have passed.

Reported (and written to ``--json``):

- 5xx answers beyond those of the requests in flight when the replica was killed (goal 0);
- requests lost (no HTTP answer at all) and answers from the wrong version: an answer's pixels must equal the
  translation by the version its ``X-Model-Version`` names, computed by translate.predictor over the same decoded
  upload (the two versions' outputs differ, so a crossed answer shows) (goal 0); answers still from v0001
  after the promotion was seen are counted apart (the ingress reads the promoted version per request from a
  folder store);
- the RSS of each replica and proxy process over time, with its slope after the first fifth of the run
  (MB per minute; flat means no leak);
- p50/p99 latency of the translations before the retraining started, during the retraining and the kill, and after.

The short form (a few thousand requests, the same events) runs in the test suite (tests/benchmarks/test_soak.py).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.harness import machine, print_table
from serving.config import DEFAULT_FAST_PATHS
from serving.store import ModelStore
from translate import imageio
from translate.datasets import make_dataset, make_pair

TOKEN = "soak-token"
MODEL = "soak"
PHASES = ("before", "during", "after")
SETTLE_S = 5.0  # after the last event, the service gets this long before "after" starts
TOLERANCE = 2  # grey levels: ONNX Runtime's batched and single runs may round a pixel differently


# --------------------------------------------------------------------------- what is sent
def png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def photos(size: int, count: int) -> list[bytes]:
    """Aerial photos of the built-in maps set (A sides), as PNG uploads."""
    return [png(make_pair("maps", 1000 + i, size=size, seed=5)[0]) for i in range(count)]


def png_header_only(w: int, h: int) -> bytes:
    """A tiny PNG that claims w x h pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@dataclass
class Case:
    """One kind of hostile or odd request: its body (or form), query, and the statuses it may get."""

    name: str
    body: bytes | None = None
    form: dict | None = None
    params: dict = field(default_factory=dict)
    ok: tuple[int, ...] = (400,)


def hostile_cases(size: int) -> list[Case]:
    """The service's fuzz cases (tests/serving/test_service.py), each with the answers it may get."""
    from PIL import Image

    rng = np.random.default_rng(7)
    photo = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)

    def enc(img, fmt, **kw):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6
    cases = [Case("text", b"hello, world", ok=(415,)), Case("gif", enc(Image.fromarray(photo), "GIF"), ok=(415,)),
             Case("empty", b"", ok=(400,)), Case("bomb header", png_header_only(20000, 20000), ok=(413,)),
             Case("form without image", form={"picture": b"\x89PNG"}, ok=(400,)),
             Case("bad version", png(photo), params={"version": "../v0001"}, ok=(400,)),
             Case("unknown version", png(photo), params={"version": "v0099"}, ok=(404,)),
             Case("grayscale", enc(Image.fromarray(photo[..., 0]), "PNG"), ok=(200,)),
             Case("rgba", enc(Image.fromarray(np.dstack([photo, photo[..., :1]])), "PNG"), ok=(200,)),
             Case("exif-rotated", enc(Image.fromarray(photo), "JPEG", quality=90, exif=exif), ok=(200,))]
    for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "BMP"):
        data = bytearray(enc(Image.fromarray(photo), fmt))
        truncated = bytes(data[:int(rng.integers(8, len(data)))])
        for j in rng.integers(8, len(data), 6):
            data[j] ^= 0xFF
        # a damaged file is refused (4xx) or, where the damage missed the pixels' checks, translated
        cases += [Case(f"truncated {fmt}", truncated, ok=(200, 400, 413, 415)),
                  Case(f"bit-flipped {fmt}", bytes(data), ok=(200, 400, 413, 415))]
    return cases


def pairs_zip(data: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(data.rglob("*.png")):
            zf.writestr(p.relative_to(data).as_posix(), p.read_bytes())
    return buf.getvalue()


# --------------------------------------------------------------------------- what is recorded
@dataclass
class Record:
    start: float
    end: float
    case: int  # index of a photo (>= 0) or -1 - index of a hostile case
    status: int | str  # the HTTP status, or the client's exception name when no answer came
    version: str | None = None
    digest: str | None = None


@dataclass
class Events:
    retrain_sent: float | None = None
    job: dict | None = None
    switched: float | None = None  # when the soak saw the promotion done
    killed: float | None = None
    killed_pid: int | None = None
    in_flight_at_kill: int = 0
    notes: list[str] = field(default_factory=list)


def replica_processes() -> dict[str, list]:
    """Serve's processes of the local Ray, by role: ModelServer and Ingress replicas, the HTTP proxy (Serve's
    ProxyActor; with the haproxy fast path, HAProxy and the actor that manages it)."""
    import psutil

    from training import local_ray  # lazy: Ray

    found = {k: list(v) for k, v in local_ray.serve_replicas("translate").items()}
    for p in local_ray.ray_processes():
        try:
            line = " ".join(p.cmdline())
        except psutil.Error:
            continue
        role = next((r for r in ("ProxyActor", "HAProxyManager") if r in line), None)
        if role:
            found.setdefault(role, []).append(p)
        elif line and os.path.basename(line.split()[0]) == "haproxy":
            found.setdefault("haproxy", []).append(p)
    return found


async def sample_memory(samples: list, stop: asyncio.Event, every_s: float = 2.0) -> None:
    import psutil

    t0 = time.monotonic()
    while not stop.is_set():
        now = time.monotonic() - t0
        for role, procs in (await asyncio.to_thread(replica_processes)).items():
            for p in procs:
                try:
                    samples.append((now, role, p.pid, p.memory_info().rss))
                except psutil.Error:
                    pass
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass


# --------------------------------------------------------------------------- the run
class Soak:
    def __init__(self, url: str, store, args, photos_: list[bytes], cases: list[Case], zip_bytes: bytes):
        self.url, self.store, self.args = url, store, args
        self.photos, self.cases, self.zip = photos_, cases, zip_bytes
        self.records: list[Record] = []
        self.bodies: dict[str, tuple[int, bytes]] = {}  # digest -> (photo index, body): one per distinct answer
        self.in_flight: dict[int, float] = {}
        self.sent = 0
        self.events = Events()
        self.events_done = asyncio.Event()
        self.after_target = 0  # once the events are done: requests to have sent, so that "after" has its share
        self.rng = np.random.default_rng(0)
        self.t0 = time.monotonic()

    def more(self) -> bool:
        if time.monotonic() - self.t0 > self.args.max_minutes * 60:
            return False
        return not self.events_done.is_set() or self.sent < max(self.args.requests, self.after_target)

    async def worker(self, session, bar) -> None:
        import aiohttp

        endpoint = f"{self.url}/v1/models/{MODEL}/translate"
        while self.more():
            n = self.sent
            self.sent += 1
            hostile = self.rng.random() < self.args.hostile
            idx = -1 - int(self.rng.integers(len(self.cases))) if hostile else int(self.rng.integers(len(self.photos)))
            kw: dict = {}
            if idx >= 0:
                kw = dict(data=self.photos[idx], headers={"Content-Type": "image/png"})
            else:
                case = self.cases[-1 - idx]
                if case.form is not None:
                    form = aiohttp.FormData()
                    for k, v in case.form.items():
                        form.add_field(k, v, filename="x.bin")
                    kw = dict(data=form)
                else:
                    kw = dict(data=case.body)
                kw["params"] = case.params
            start = time.monotonic()
            self.in_flight[n] = start
            rec = Record(start, start, idx, "none")
            try:
                async with session.post(endpoint, **kw) as r:
                    body = await r.read()
                    rec.status, rec.version = r.status, r.headers.get("X-Model-Version")
                    if r.status == 200 and idx >= 0:
                        rec.digest = hashlib.sha1(body).hexdigest()
                        self.bodies.setdefault(rec.digest, (idx, body))
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                rec.status = type(e).__name__
            rec.end = time.monotonic()
            del self.in_flight[n]
            self.records.append(rec)
            bar.update(1)

    async def events_task(self, session) -> None:
        """The retraining upload at --retrain-at, the kill at --kill-at, then following the job to its end."""
        a = self.args
        ev = self.events
        kill_due, retrain_due = int(a.kill_at * a.requests), int(a.retrain_at * a.requests)
        job_id = None
        while True:
            now = time.monotonic()
            if job_id is None and self.sent >= retrain_due:
                ev.retrain_sent = now
                async with session.post(f"{self.url}/v1/models/{MODEL}/retrain", data=self.zip,
                                        headers={"Authorization": f"Bearer {TOKEN}",
                                                 "Content-Type": "application/zip"}) as r:
                    answer = await r.json()
                    if r.status != 202:
                        raise SystemExit(f"retraining upload refused: {r.status} {answer}")
                job_id = answer["job_id"]
            if ev.killed is None and self.sent >= kill_due:
                # colocated, the replicas that hold the models are the ingress's
                models = (await asyncio.to_thread(replica_processes)).get("Ingress" if a.colocate else "ModelServer", [])
                if models:
                    victim = models[0]
                    ev.in_flight_at_kill = len(self.in_flight)
                    ev.killed, ev.killed_pid = time.monotonic(), victim.pid
                    os.kill(victim.pid, signal.SIGKILL)
                else:
                    ev.notes.append("no model replica found to kill")
                    ev.killed = time.monotonic()
            if job_id is not None and ev.job is None:
                async with session.get(f"{self.url}/v1/jobs/{job_id}") as r:
                    status = await r.json() if r.status == 200 else {"state": f"HTTP {r.status}"}
                if status.get("state") in ("succeeded", "failed"):
                    ev.job = status
                    outcome = status.get("outcome") or {}
                    if not outcome.get("promoted"):  # the soak is about the switch: make it happen
                        ev.notes.append(f"retraining did not promote ({status.get('state')}: "
                                        f"{status.get('error') or outcome}); promoted its version by the store")
                        new = outcome.get("new_version") or self.store.versions(MODEL)[-1]
                        await asyncio.to_thread(self.store.promote, MODEL, new)
                    ev.switched = time.monotonic()
            if ev.job is not None and ev.killed is not None:
                await asyncio.sleep(SETTLE_S)
                self.after_target = self.sent + max(a.requests // 5, 100)
                self.events_done.set()
                return
            await asyncio.sleep(0.5)

    async def run(self) -> list:
        import aiohttp
        from tqdm import tqdm

        samples: list = []
        stop = asyncio.Event()
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.args.concurrency + 4),
                                         timeout=timeout) as s:
            memory = asyncio.create_task(sample_memory(samples, stop))
            events = asyncio.create_task(self.events_task(s))
            with tqdm(total=self.args.requests, desc="soak", unit="req", disable=self.args.quiet) as bar:
                workers = [asyncio.create_task(self.worker(s, bar)) for _ in range(self.args.concurrency)]
                done, _ = await asyncio.wait([events, *workers], return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    if t.exception():
                        raise t.exception()
                await asyncio.gather(*workers)
            if not events.done():
                events.cancel()
                self.events.notes.append("the run ended before its events did (--max-minutes)")
            stop.set()
            await memory
        return samples


# --------------------------------------------------------------------------- the report
def slope_mb_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, after the first fifth of the samples (warm-up)."""
    pts = points[len(points) // 5:]
    if len(pts) < 3:
        return float("nan")
    t = np.array([p[0] for p in pts]) / 60
    m = np.array([p[1] for p in pts]) / 2**20
    return float(np.polyfit(t, m, 1)[0])


def versions_of_answers(soak: Soak, photos_: list[bytes]) -> dict[str, str | None]:
    """For every distinct answer body: the version whose translation it is (None: neither's)."""
    from translate.predictor import Predictor  # lazy: ONNX Runtime

    refs = {}
    for v in soak.store.versions(MODEL):
        p = Predictor(soak.store.model_path(MODEL, v), device="cpu")
        refs[v] = [np.asarray(p(imageio.decode(b))).astype(int) for b in photos_]
    found: dict[str, str | None] = {}
    for digest, (idx, body) in soak.bodies.items():
        got = np.asarray(imageio.decode(body)).astype(int)
        found[digest] = next((v for v, r in refs.items() if r[idx].shape == got.shape
                              and np.abs(r[idx] - got).max() <= TOLERANCE), None)
    return found


def report(soak: Soak, samples: list, photos_: list[bytes]) -> dict:
    ev, recs = soak.events, soak.records
    kill = ev.killed or float("inf")
    errors_5xx = [r for r in recs if isinstance(r.status, int) and r.status >= 500]
    at_kill = [r for r in errors_5xx if r.start <= kill <= r.end]
    lost = [r for r in recs if not isinstance(r.status, int)]
    wrong_status = [r for r in recs if r.case < 0 and isinstance(r.status, int) and r.status < 500
                    and r.status not in soak.cases[-1 - r.case].ok]
    photos_ok = [r for r in recs if r.case >= 0 and r.status == 200]
    wrong_status += [r for r in recs if r.case >= 0 and isinstance(r.status, int) and r.status not in (200,)
                     and r.status < 500]
    whose = versions_of_answers(soak, photos_)
    wrong_version = [r for r in photos_ok if whose[r.digest] != r.version]
    switched = ev.switched or float("inf")
    stale = [r for r in photos_ok if r.start > switched and r.version == "v0001"]
    t_events = [t for t in (ev.retrain_sent, ev.killed, ev.switched) if t is not None]
    first, last = (min(t_events), max(t_events) + SETTLE_S) if t_events else (float("inf"), float("inf"))
    phases: dict[str, list[float]] = {p: [] for p in PHASES}
    for r in photos_ok:
        phases["before" if r.end < first else "after" if r.start > last else "during"].append(
            (r.end - r.start) * 1000)
    latency = {p: {"requests": len(v), "p50": float(np.percentile(v, 50)) if v else None,
                   "p99": float(np.percentile(v, 99)) if v else None} for p, v in phases.items()}
    series: dict[tuple[str, int], list] = {}
    for t, role, pid, rss in samples:
        series.setdefault((role, pid), []).append((t, rss))
    memory = [{"process": role, "pid": pid, "samples": len(pts), "first_mb": pts[0][1] / 2**20,
               "last_mb": pts[-1][1] / 2**20, "max_mb": max(p[1] for p in pts) / 2**20,
               "slope_mb_per_min": slope_mb_per_min(pts)} for (role, pid), pts in sorted(series.items())]
    wall = max(r.end for r in recs) - min(r.start for r in recs) if recs else 0.0
    statuses: dict[str, int] = {}
    for r in recs:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
    return {
        "requests": len(recs), "seconds": wall, "rps": len(recs) / wall if wall else 0.0, "statuses": statuses,
        "hostile": sum(r.case < 0 for r in recs),
        "5xx": len(errors_5xx), "5xx_in_flight_at_kill": len(at_kill), "in_flight_at_kill": ev.in_flight_at_kill,
        "unexplained_5xx": len(errors_5xx) - len(at_kill), "lost": len(lost), "unexpected_4xx": len(wrong_status),
        "wrong_version": len(wrong_version), "v0001_after_switch": len(stale),
        "answers_by_version": {v: sum(r.version == v for r in photos_ok) for v in sorted({r.version for r in photos_ok})},
        "retraining": ev.job, "killed_pid": ev.killed_pid, "notes": ev.notes,
        "events_s": {k: (t - soak.t0 if t is not None else None) for k, t in
                     (("retrain_sent", ev.retrain_sent), ("killed", ev.killed), ("switched", ev.switched))},
        "latency_ms": latency, "memory": memory,
        "examples": {"unexplained_5xx": [vars(r) for r in errors_5xx if r not in at_kill][:5],
                     "unexpected_4xx": [{**vars(r), "case": soak.cases[-1 - r.case].name if r.case < 0 else r.case}
                                        for r in wrong_status][:5],
                     "wrong_version": [vars(r) for r in wrong_version][:5], "lost": [vars(r) for r in lost][:5]},
    }


def print_report(out: dict, args) -> None:
    print(f"\n{machine()}; {out['requests']:,} requests in {out['seconds']:.0f} s ({out['rps']:.1f} req/s) at "
          f"concurrency {args.concurrency}, {out['hostile']:,} hostile or odd; fast paths "
          f"{' '.join(args.fast_paths) or 'none'}; statuses {out['statuses']}\n")
    job = out["retraining"] or {}
    print(f"events (s from start): {out['events_s']}; retraining {job.get('state')}, outcome "
          f"{job.get('outcome')}; killed model replica pid {out['killed_pid']} with {out['in_flight_at_kill']} "
          f"requests in flight in the service")
    for note in out["notes"]:
        print(f"note: {note}")
    print()
    print_table(["goal", "count"], [
        ("5xx beyond the requests in flight at the kill (goal 0)", out["unexplained_5xx"]),
        ("5xx of requests in flight at the kill", out["5xx_in_flight_at_kill"]),
        ("requests lost, no answer (goal 0)", out["lost"]),
        ("answers whose pixels are not their version's (goal 0)", out["wrong_version"]),
        ("4xx other than the case's expected ones (goal 0)", out["unexpected_4xx"]),
        ("v0001 answers to requests sent after the switch was seen", out["v0001_after_switch"])])
    print()
    print_table(["phase", "translations", "p50 ms", "p99 ms"],
                [(p, v["requests"], f"{v['p50']:.1f}" if v["p50"] is not None else "-",
                  f"{v['p99']:.1f}" if v["p99"] is not None else "-") for p, v in out["latency_ms"].items()])
    print()
    print_table(["process", "pid", "samples", "first MB", "max MB", "last MB", "slope MB/min after warm-up"],
                [(m["process"], m["pid"], m["samples"], f"{m['first_mb']:.0f}", f"{m['max_mb']:.0f}",
                  f"{m['last_mb']:.0f}", f"{m['slope_mb_per_min']:+.2f}") for m in out["memory"]])
    for k, v in out["examples"].items():
        if v:
            print(f"\nexamples, {k}: {v}")


def train_base(root: Path, size: int) -> tuple[Path, Path]:
    """The tiny under-trained Pix2Pix (v0001) and the data it came from: (run folder, data folder)."""
    from training.loop import Trainer  # lazy: torch
    from training.pix2pix import Pix2Pix  # lazy: torch

    data = root / "pairs"
    make_dataset("maps", data, count=30, size=size, progress=False)
    run = Trainer(Pix2Pix, Pix2Pix.tiny_config(str(data), str(root / "run"), size=size, load_size=size + 4,
                                               steps=4, export=True, checkpoint_every=4)).fit()
    return run, data


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-minutes", type=float, default=240.0, help="the run stops after this long regardless")
    ap.add_argument("--hostile", type=float, default=0.1, help="share of hostile or odd uploads")
    ap.add_argument("--retrain-at", type=float, default=0.2, help="share of the requests sent before the retraining")
    ap.add_argument("--kill-at", type=float, default=0.5, help="share of the requests sent before the kill")
    ap.add_argument("--size", type=int, default=64, help="side of the uploaded photos and of the model's training")
    ap.add_argument("--photos", type=int, default=8, help="distinct photos sent")
    ap.add_argument("--fast-paths", nargs="*", default=list(DEFAULT_FAST_PATHS),
                    help="Ray Serve's fast paths (serving.config.FAST_PATHS; default: the service's, "
                         f"{' '.join(DEFAULT_FAST_PATHS)}; --fast-paths with no name: none)")
    ap.add_argument("--colocate", action="store_true", help="the service colocated (the ingress replicas run the "
                                                                "models; one of them is the replica killed)")
    ap.add_argument("--json", default=None, metavar="OUT")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    from serving import local_service  # lazy: Ray

    root = Path(tempfile.mkdtemp(prefix="soak-"))
    run, data = train_base(root, args.size)
    store = ModelStore(root / "store")
    store.register(MODEL, run / "model.onnx", checkpoint=run / "checkpoints" / "latest.pt")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ["TRANSLATE_RETRAIN_TOKEN"] = TOKEN  # the replicas inherit it from the Ray started below
    url = local_service.start_local(store.root, port=port, min_replicas=2, max_replicas=2, num_cpus=0.5,
                                    max_batch_size=8, max_queued_requests=256, fast_paths=tuple(args.fast_paths),
                                    colocate=args.colocate)
    photos_ = photos(args.size, args.photos)
    soak = Soak(url, store, args, photos_, hostile_cases(args.size), pairs_zip(data))
    try:
        samples = asyncio.run(soak.run())
    finally:
        local_service.stop_local()
    out = report(soak, samples, photos_)
    print_report(out, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "machine": str(machine()), **out}, indent=1,
                                              default=str))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
