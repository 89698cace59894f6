"""benchmarks/gpu_check.py cannot rot where no GPU is: its dry run (every section, on the CPU, tiny
networks) runs here, and asking for CUDA on this CPU-only machine fails loudly, naming the reason,
instead of measuring the CPU under the CUDA rows. Where a GPU is, the real check runs as an integration
test (marked ``gpu``: ``pytest -m gpu tests/benchmarks``), as a lent GPU machine runs it."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import gpu_check
from translate.errors import CudaProviderError
from translate.export import export_generator
from translate.networks import define_G, to_inference
from translate.predictor import Predictor, RuntimeOptions

ROOT = Path(__file__).resolve().parents[2]
#: what each section needs beyond torch and onnxruntime (a section may be skipped only when it is missing)
NEEDS = {"service": ("ray", "aiohttp"), "convert": ("ray",), "run": ("torchmetrics",), "ddp": ("torchmetrics",)}
#: the sections that ask ONNX Runtime for CUDA: without its CUDA build they are skipped naming onnxruntime-gpu
ORT_CUDA_SECTIONS = ("ort", "service", "convert")

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here: the checks below need its absence")


#: a sitecustomize that makes this machine look like the lent GPU machines: no Ray, no albumentations
WITHOUT = """import sys
class _Without:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError("No module named " + repr(name))
sys.meta_path.insert(0, _Without())
"""


def _check(tmp_path, *args: str, path: tuple[str, ...] = (str(ROOT),), blocked: tuple[str, ...] = (),
           timeout: float = 900):
    """``python -m benchmarks.gpu_check ARGS --json ...`` in a process of its own, as a user runs it: its
    PYTHONPATH is ``path`` (the checkout's root, and whatever else a lent machine carries)."""
    out = tmp_path / "check.json"
    path = list(path)
    if blocked:
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "sitecustomize.py").write_text(WITHOUT.format(blocked=set(blocked)))
        path.insert(0, str(tmp_path / "site"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args, "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def _dry_run(tmp_path, blocked: tuple[str, ...] = ()):
    # budgets scaled up: on a busy shared machine a section must not time out; speed is not what is checked
    return _check(tmp_path, "--dry-run", "--budget-scale", "10", blocked=blocked)


def _missing(section: str) -> list[str]:
    return [m for m in NEEDS.get(section, ()) if importlib.util.find_spec(m) is None]


def _assert_passed_or_skipped_naming_what_is_missing(sections: dict, proc) -> None:
    """Each section passed, or (where a package it needs is absent) was skipped naming that package."""
    for name, s in sections.items():
        missing = _missing(name)
        if missing:
            assert s["status"] == "skipped" and missing[0] in s["note"], (name, s)
        else:
            assert s["status"] == "ok", (name, s, proc.stdout[-3000:], proc.stderr[-3000:])


def test_the_dry_run_runs_every_section(tmp_path):
    proc, result = _dry_run(tmp_path)
    sections = result["sections"]
    assert list(sections) == list(gpu_check.SECTIONS), sections  # each one, in order, none left out
    _assert_passed_or_skipped_naming_what_is_missing(sections, proc)
    assert proc.returncode == 0
    assert result["machine"]["cpu"] and "cpu_flags" in result["machine"]  # every figure carries its machine
    rows = {r["section"] for r in result["rows"]}
    assert rows >= {n for n, s in sections.items() if s["status"] == "ok"}  # every section that ran measured
    assert "| section | what | variant |" in proc.stdout  # the one table
    train = [r for r in result["rows"] if r["section"] == "train"]
    assert {r["variant"] for r in train} == {"fp32", "bf16", "compile"}  # every training variant ran
    replica = {r["variant"].removesuffix(" (CPU provider: dry run)") for r in result["rows"] if r["section"] == "replica"}
    assert replica >= {*gpu_check.REPLICA_SETTINGS, "1 replica", "2 replicas", "CPU (Pillow)"}  # each alone, together


def test_with_torch_alone_every_missing_package_is_named(tmp_path):
    """What the lent GPU machines have: torch and the CPU onnxruntime; no Ray, no albumentations (and, on an
    image older than their current list, no torchmetrics). Every section that needs only torch runs; those
    that need more say what (and the Trainer's sections how to bring it: `make gpu-deps`)."""
    proc, result = _dry_run(tmp_path, blocked=("ray", "albumentations", "torchmetrics"))
    sections = result["sections"]
    for name, s in sections.items():
        if name in NEEDS:
            assert s["status"] == "skipped" and NEEDS[name][0] in s["note"], (name, s)
        else:
            assert s["status"] == "ok", (name, s, proc.stdout[-3000:], proc.stderr[-3000:])
    assert "make gpu-deps" in sections["run"]["note"]
    assert proc.returncode == 0


@no_gpu
def test_on_a_gpu_without_onnxruntime_gpu_the_replica_rows_say_skipped_and_the_jpeg_rows_run(monkeypatch):
    """The lent GPU machines as they come (torch, the CPU onnxruntime): each ONNX Runtime row of the replica
    section says it was skipped and why, the section still measures the CPU JPEG decoder, and the sections that
    need ONNX Runtime's CUDA are skipped naming onnxruntime-gpu rather than failed."""
    import dataclasses

    import onnxruntime

    plan = dataclasses.replace(gpu_check.DRY_PLAN, device="cuda")
    monkeypatch.setattr(gpu_check, "sync", lambda device: None)  # no GPU here to synchronise
    # the CPU build of onnxruntime, whichever build this machine has
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    rep = gpu_check.Report(plan)
    gpu_check.section_replica(rep)
    ort_rows = [r for r in rep.rows if not r["what"].startswith("JPEG")]
    assert [r["variant"] for r in ort_rows] == [*gpu_check.REPLICA_SETTINGS, "2 replicas on one GPU"]
    assert all(r["value"] is None and r["note"].startswith("skipped: onnxruntime-gpu is not installed")
               for r in ort_rows)
    gpu_jpeg = [r for r in rep.rows if r["what"].startswith("JPEG") and r["variant"] != "CPU (Pillow)"]
    assert gpu_jpeg and all(r["value"] is None and r["note"].startswith("skipped: ") for r in gpu_jpeg)  # no CUDA
    assert "onnxruntime-gpu" in rep.section_notes["replica"]
    assert any(r["variant"] == "CPU (Pillow)" and r["value"] > 0 for r in rep.rows)
    with pytest.raises(gpu_check.Skip, match="onnxruntime-gpu"):
        gpu_check.section_ort(rep)


@no_gpu
def test_asking_for_cuda_without_ort_cuda_is_a_named_error():
    with pytest.raises(CudaProviderError, match="CUDAExecutionProvider|CUDA"):
        gpu_check.require_ort_cuda()


def _ort_cuda() -> bool:
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the real check needs a CUDA GPU")
def test_on_the_gpu_every_section_it_can_run_passes(tmp_path):
    """The real check, as a lent GPU machine runs it (``PYTHONPATH=.:.gpu-deps python3 -m benchmarks.gpu_check``,
    .gpu-deps where `make gpu-deps` made it): every section passes, or is skipped naming the package this machine
    lacks. ONNX Runtime's CUDA sections run where its CUDA build is installed; without it they are skipped
    naming onnxruntime-gpu."""
    path = (str(ROOT), *([str(ROOT / ".gpu-deps")] if (ROOT / ".gpu-deps").is_dir() else []))
    only = [n for n in gpu_check.SECTIONS if n != "env"]
    proc, result = _check(tmp_path, "--only", *only, path=path, timeout=gpu_check.TOTAL_BUDGET + 300)
    sections = result["sections"]
    assert list(sections) == ["env", *only], sections
    without_ort_cuda = {} if _ort_cuda() else {n: sections.pop(n) for n in ORT_CUDA_SECTIONS}
    assert all(s["status"] == "skipped" and "onnxruntime-gpu" in s["note"] for s in without_ort_cuda.values())
    _assert_passed_or_skipped_naming_what_is_missing(sections, proc)
    assert proc.returncode == 0
    assert result["machine"]["gpu"] and not result["machine"]["dry_run"]


@no_gpu
def test_the_predictor_refuses_cuda_it_cannot_have(tmp_path):
    G = to_inference(define_G("unet_32", ngf=4, norm="batch"), batch_stats=True)
    data, _ = export_generator(G, {"arch": {"input_nc": 3}, "batch_stats": True}, check=False)
    for kw in (dict(device="cuda"), dict(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])):
        with pytest.raises(CudaProviderError) as e:
            Predictor(data, **kw)
        assert "CUDA" in str(e.value) and ("onnxruntime" in str(e.value) or ".so" in str(e.value))
    # device auto: the CPU, with a warning at most (ONNX Runtime's fallback; auto's engine may be OpenVINO here)
    p = Predictor(data, runtime=RuntimeOptions(engine="onnxruntime"))
    assert p.providers == ["CPUExecutionProvider"]
    assert p.run(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 3, 32, 32)
