"""benchmarks/gpu_check.py cannot rot where no GPU is: its dry run (every section, on the CPU, tiny
networks) runs here, and asking for CUDA on this CPU-only machine fails loudly, naming the reason,
instead of measuring the CPU under the CUDA rows."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from translate.errors import CudaProviderError

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
#: what each section needs beyond torch and onnxruntime (a section may be skipped only when it is missing)
NEEDS = {"service": ("ray", "aiohttp"), "convert": ("ray",), "run": ("torchmetrics",), "ddp": ("torchmetrics",)}

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here: the checks below need its absence")


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


#: a sitecustomize that makes this machine look like the lent GPU machines: no Ray, no albumentations
WITHOUT = """import sys
class _Without:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError("No module named " + repr(name))
sys.meta_path.insert(0, _Without())
"""


def _dry_run(tmp_path, blocked: tuple[str, ...] = ()):
    out = tmp_path / "dry.json"
    path = [str(ROOT)]
    if blocked:
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "sitecustomize.py").write_text(WITHOUT.format(blocked=set(blocked)))
        path.insert(0, str(tmp_path / "site"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    # budgets scaled up: on a busy shared machine a section must not time out; speed is not what is checked
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--budget-scale", "10", "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_the_dry_run_runs_every_section(tmp_path):
    proc, result = _dry_run(tmp_path)
    sections = result["sections"]
    assert list(sections) == list(_gpu_check().SECTIONS), sections  # each one, in order, none left out
    for name, s in sections.items():
        missing = [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
        if missing:
            assert s["status"] == "skipped" and missing[0] in s["note"], (name, s)
        else:
            assert s["status"] == "ok", (name, s, proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0
    rows = {r["section"] for r in result["rows"]}
    assert rows >= {n for n, s in sections.items() if s["status"] == "ok"}  # every section that ran measured
    assert "| section | what | variant |" in proc.stdout  # the one table
    train = [r for r in result["rows"] if r["section"] == "train"]
    assert {r["variant"] for r in train} == {"fp32", "bf16", "compile"}  # every training variant ran


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
def test_asking_for_cuda_without_ort_cuda_is_a_named_error():
    with pytest.raises(CudaProviderError, match="CUDAExecutionProvider|CUDA"):
        _gpu_check().require_ort_cuda()


@no_gpu
def test_the_predictor_refuses_cuda_it_cannot_have(tmp_path):
    from translate.export import export_generator
    from translate.networks import define_G, to_inference
    from translate.predictor import Predictor

    G = to_inference(define_G("unet_32", ngf=4, norm="batch"), batch_stats=True)
    data, _ = export_generator(G, {"arch": {"input_nc": 3}, "batch_stats": True}, check=False)
    for kw in (dict(device="cuda"), dict(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])):
        with pytest.raises(CudaProviderError) as e:
            Predictor(data, **kw)
        assert "CUDA" in str(e.value) and ("onnxruntime" in str(e.value) or ".so" in str(e.value))
    p = Predictor(data)  # auto: the CPU, with a warning at most
    assert p.providers == ["CPUExecutionProvider"]
    assert p.run(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 3, 32, 32)
