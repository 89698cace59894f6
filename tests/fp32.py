"""The engine named by the tests that hold the predictor to PyTorch, or tiles to the whole image, at 1e-4 or closer.

``--engine auto`` runs OpenVINO in bf16 on CPUs with avx512_bf16 or AMX (translate/engines.py), a fraction of a grey
level off fp32; ONNX Runtime runs fp32 on every CPU, so these tests check the same thing on CPUs of either kind."""
from translate.predictor import RuntimeOptions

FP32 = RuntimeOptions(engine="onnxruntime")
