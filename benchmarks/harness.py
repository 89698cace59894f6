"""What every benchmark shares: timing with a warm-up, the machine a figure was measured on, peak memory,
and Markdown tables (BENCHMARKS.md's form).

A figure without its machine means nothing (timings differ between machines of one kind, and the bf16 and
AMX paths exist only where the CPU has them), so every script prints ``machine()`` beside its table.
Nothing here imports torch: parents that only start and read child processes stay small.
"""
from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

#: the CPU flags (as lscpu and /proc/cpuinfo name them) that decide which kernels run: AVX2 and AVX-512 for
#: float32, avx512_bf16 and AMX for bfloat16 autocast (training/speed.py turns it on where they are), VNNI
#: and AMX int8 for quantised inference
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


# ------------------------------------------------------------------------------------------ the machine
@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (what lscpu reads); empty where there is none."""
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())
    return info


def cpu_flags() -> set[str]:
    """Every flag of this CPU (x86's ``flags``, Arm's ``Features``)."""
    info = _cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """The GPU(s) this process can see: torch's name where torch is already imported (it is not imported
    here for this), else nvidia-smi's; None where there is none."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    elif shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        names = [n.strip() for n in out.stdout.splitlines() if n.strip()] if out.returncode == 0 else []
    else:
        return None
    if not names:
        return None
    if len(set(names)) == 1:
        return names[0] if len(names) == 1 else f"{len(names)} x {names[0]}"
    return ", ".join(names)


@dataclass(frozen=True)
class Machine:
    """What a figure was measured on."""

    cpu: str
    cpus: int  # logical CPUs (lscpu's "CPU(s)")
    flags: tuple[str, ...]  # those of RELEVANT_FLAGS this CPU has
    gpu: str | None

    def __str__(self) -> str:
        flags = ", ".join(self.flags) or "none of " + " / ".join(RELEVANT_FLAGS)
        return f"{self.cpu}, {self.cpus} CPUs ({flags})" + (f", GPU {self.gpu}" if self.gpu else ", no GPU")


def machine() -> Machine:
    have = cpu_flags()
    return Machine(cpu=cpu_model(), cpus=os.cpu_count() or 1, flags=tuple(f for f in RELEVANT_FLAGS if f in have),
                   gpu=gpu_name())


# ------------------------------------------------------------------------------------------- timing
@dataclass
class Timings:
    """Seconds per timed call: wall time, and CPU time of this process (all its threads)."""

    wall: list[float]
    cpu: list[float] = field(default_factory=list)
    elapsed: float = 0.0  # wall seconds from the first timed call's start to the last one's end

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def min(self) -> float:
        return min(self.wall)

    @property
    def max(self) -> float:
        return max(self.wall)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def per_second(self) -> float:
        """Calls per second over the whole timed stretch."""
        return len(self.wall) / self.elapsed

    def spread(self, fmt: str = ".1f", unit: str = " s") -> str:
        """``median (min-max)``: on a machine others share, the minimum is the call they disturbed least."""
        return f"{self.median:{fmt}}{unit} ({self.min:{fmt}}-{self.max:{fmt}})"


def time_calls(fn: Callable[[], object], calls: int = 1, *, warmup: int = 0, seconds: float = 0.0,
               sync: Callable[[], object] | None = None, before_each: Callable[[], object] | None = None) -> Timings:
    """Time ``fn``: ``warmup`` untimed calls first (caches, allocators, a GPU's kernel search), then timed
    calls until at least ``calls`` were made and at least ``seconds`` have passed. ``sync`` (a GPU's
    synchronize) ends every call inside its time, and the warm-up; ``before_each`` (a barrier between
    processes) runs before every timed call, outside its time."""
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    wall: list[float] = []
    cpu: list[float] = []
    start = time.perf_counter()
    while len(wall) < calls or time.perf_counter() - start < seconds:
        if before_each is not None:
            before_each()
        t, c = time.perf_counter(), time.process_time()
        fn()
        if sync is not None:
            sync()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return Timings(wall, cpu, time.perf_counter() - start)


@dataclass
class Lap:
    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Lap]:
    """Wall and CPU seconds (this process, all its threads) of the block, once it has ended."""
    lap = Lap()
    t, c = time.perf_counter(), time.process_time()
    try:
        yield lap
    finally:
        lap.wall, lap.cpu = time.perf_counter() - t, time.process_time() - c


# ------------------------------------------------------------------------------------------- memory
def rss_kb(field_name: str = "VmHWM") -> int:
    """This process's resident memory in kB: its peak so far (VmHWM) or now (VmRSS). Not getrusage's
    ru_maxrss: that one carries the parent's size over fork + exec, so every child process would read at
    least its parent's peak."""
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith(field_name + ":"))


def peak_rss_gb() -> float:
    return rss_kb("VmHWM") / 1e6


# ------------------------------------------------------------------------------------------- tables
def mean_spread(values: Sequence[float], decimals: int | None = None) -> str:
    """"mean ± standard deviation" of runs (seeds): to ``decimals`` places, or by default to three significant
    digits of the mean and never fewer than 3 places (a Fréchet distance of the judges is ~0.001-0.01, a class IoU
    ~0.1-1)."""
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    if decimals is None:
        decimals = max(3, 2 - math.floor(math.log10(abs(mean)))) if mean else 3
    return f"{mean:.{decimals}f} ± {spread:.{decimals}f}"


def table_row(cells: Iterable[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header: Sequence[str], rows: Iterable[Iterable[object]] = ()) -> str:
    """A Markdown table: the header, its rule, the rows."""
    return "\n".join([table_row(header), "|" + "---|" * len(header), *(table_row(r) for r in rows)])


def print_table(header: Sequence[str], rows: Iterable[Iterable[object]] = ()) -> None:
    """Print a table; with no rows, its header, for rows printed one by one (``print_row``) as they are measured."""
    print(table(header, rows), flush=True)


def print_row(*cells: object) -> None:
    print(table_row(cells), flush=True)
