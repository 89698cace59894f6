"""benchmarks/cpu_speed.py's OpenVINO rows: fp32 beside ONNX Runtime always, bf16 only on a CPU that has it, and a
row that cannot run says why instead of being left out."""
from benchmarks.cpu_speed import openvino_variants


def _rows(flags, installed):
    return [(label, spec["runtime"], spec.get("na")) for label, spec in openvino_variants("unet_256", flags, installed)]


def test_openvino_runs_fp32_everywhere_and_bf16_only_on_a_bf16_cpu():
    fp32, bf16 = {"engine": "openvino", "precision": "fp32"}, {"engine": "openvino", "precision": "bf16"}
    assert [r[1:] for r in _rows({"avx2"}, True)] == [(fp32, None), (bf16, "n/a (no avx512_bf16)")]
    assert [r[1:] for r in _rows({"avx2", "avx512_bf16"}, True)] == [(fp32, None), (bf16, None)]
    assert [r[1:] for r in _rows({"amx_bf16"}, True)] == [(fp32, None), (bf16, None)]
    assert all("pip install openvino" in r[2] for r in _rows({"avx512_bf16"}, False))
    assert [r[0] for r in _rows({"avx2"}, True)] == ["project OpenVINO fp32 (--engine openvino)",
                                                     "project OpenVINO bf16 (--engine openvino)"]
