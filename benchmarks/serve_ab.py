"""Side by side: benchmarks/serve_load.py on several variants, interleaved in one sitting.

    python -m benchmarks.serve_ab --variant base=/tmp/base --variant new=. [--variant NAME=DIR::ARGS ...]
                                  [--rounds 2] -- [serve_load.py arguments, the same for every variant]
    python -m benchmarks.serve_ab --fast-paths [--rounds 2] -- [serve_load.py arguments]

A variant is a checkout (``--code DIR``: its ``serving`` and ``translate`` are served) and, after
``::``, its own serve_load.py arguments (e.g. ``log=.::--access-log``). ``--fast-paths`` adds a variant per set
of Ray Serve's fast paths (serving.config.FAST_PATHS) on this checkout: none (Serve's defaults), each alone, all
together. Each round runs every
variant once, the order reversed every other round (A B, B A, ...), so a change in the machine's
load hits both alike. Prints, per variant and concurrency, req/s, p50/p99 latency and the CPU per request (the
service's, the serving overhead beyond the model, and by process) of every round, then their means; a run with any
failed request is left out (and says so). Every run's JSON goes to ``--out`` (default: a new
temporary folder).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import serve_load
from benchmarks.harness import machine, print_row, print_table
from serving.config import FAST_PATHS


def fast_path_variants() -> list[str]:
    """This checkout with Serve's defaults, with each fast path alone, and with all of them."""
    names = list(FAST_PATHS)
    return ["defaults=.::--fast-paths", *(f"{n}=.::--fast-paths {n}" for n in names),
            f"all=.::--fast-paths {' '.join(names)}"]


def sitting_raw(runs: list[dict]) -> dict:
    """The raw model's CPU ms per image at each measured batch size, averaged over every run of the sitting: each
    run measures it anew for 10 s, and one run's figure strays by 1-3 ms, which a run's own overhead (service CPU
    minus it) inherits; every variant runs the same model, so the sitting's mean is the steadier reference."""
    sums: dict[int, list[float]] = {}
    for run in runs:
        for b, ms in run["raw"]["cpu_ms"].items():
            sums.setdefault(int(b), []).append(ms)
    return {"cpu_ms": {b: sum(v) / len(v) for b, v in sums.items()}}


def main() -> None:
    argv = sys.argv[1:]
    rest = []
    if "--" in argv:
        argv, rest = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=DIR[::ARGS]")
    ap.add_argument("--fast-paths", action="store_true", help="variants: Serve's defaults, each fast path alone, all")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    args.variant += fast_path_variants() if args.fast_paths else []
    if not args.variant:
        ap.error("give --variant or --fast-paths")
    out = Path(args.out or tempfile.mkdtemp(prefix="serve-ab-"))
    out.mkdir(parents=True, exist_ok=True)
    variants = []
    for v in args.variant:
        name, spec = v.split("=", 1)
        code, _, extra = spec.partition("::")
        variants.append((name, str(Path(code).resolve()), extra.split()))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
    for r in range(args.rounds):
        for name, code, extra in (variants if r % 2 == 0 else variants[::-1]):
            path = out / f"{name}-{r}.json"
            cmd = [sys.executable, "-m", serve_load.__name__, "--code", code, "--json", str(path), *rest, *extra]
            print(f"== round {r + 1}, {name}: {' '.join(cmd)}", flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            row = json.loads(path.read_text())
            print("   " + "; ".join(f"c={x['concurrency']}: {x['rps']:.1f} req/s, {x['service_cpu_ms']:.1f} CPU "
                                   f"ms/req, overhead {x['overhead_ms']:.1f}" for x in row["rows"])
                  + f" (load average {row['load_average']:.1f})", flush=True)
            if any(x["errors"] for x in row["rows"]):  # e.g. Ray's memory monitor killed a replica
                print(f"   left out: errors {[x['statuses'] for x in row['rows']]}", flush=True)
                continue
            results[name].append(row)
    print(f"\nruns: {out}; machine: {machine()}\n")
    print_table(["variant", "concurrency", "req/s", "p50 ms", "p99 ms", "mean batch", "service CPU ms/req",
                 "model's (raw)", "overhead ms/req", "overhead, the sitting's raw"])
    results = {name: runs for name, runs in results.items() if runs}
    raw = sitting_raw([run for runs in results.values() for run in runs])
    for name, runs in results.items():
        for i, row in enumerate(runs[0]["rows"]):
            cells = [[run["rows"][i][k] for run in runs] for k in ("rps", "p50", "p99", "batch", "service_cpu_ms",
                                                                      "model_cpu_ms", "overhead_ms")]
            cells.append([run["rows"][i]["service_cpu_ms"] - serve_load.model_cpu_ms(raw, run["rows"][i]["batch"])
                          for run in runs])
            print_row(name, row["concurrency"], *(
                ", ".join(f"{x:.1f}" for x in c) + (f" (mean {sum(c) / len(c):.1f})" if len(c) > 1 else "")
                for c in cells))
    print("\nCPU ms per request by process, mean of the rounds:\n")
    for i, row in enumerate(next(iter(results.values()))[0]["rows"]):
        procs = sorted({k for runs in results.values() for run in runs for k, v in run["rows"][i]["cpu_ms"].items()
                        if v >= 0.1})
        print(f"c={row['concurrency']}:\n")
        print_table(["process", *results])
        for p in sorted(procs, key=lambda p: -max(sum(run["rows"][i]["cpu_ms"].get(p, 0) for run in runs) / len(runs)
                                                   for runs in results.values())):
            print_row(p, *(f"{sum(run['rows'][i]['cpu_ms'].get(p, 0) for run in runs) / len(runs):.2f}"
                           for runs in results.values()))
        print()


if __name__ == "__main__":
    main()
