import numpy as np
import torch

from translate.evaluate import evaluate
from translate.export import export_generator
from translate.networks import define_G, to_inference
from translate.predictor import Predictor


def _identity_like_predictor():
    torch.manual_seed(0)
    arch = dict(name="resnet", n_blocks=1, ngf=4, norm="instance")
    G = to_inference(define_G(**arch), batch_stats=False)
    return Predictor(export_generator(G, {"arch": arch, "batch_stats": False}, check=False)[0])


def test_evaluate_reports_means_and_per_image(tiny_pairs):
    res = evaluate(_identity_like_predictor(), tiny_pairs, split="test", progress=False)
    assert res["count"] == 4 and len(res["per_image"]) == 4
    assert np.isclose(res["l1"], np.mean([r["l1"] for r in res["per_image"]]), atol=1e-5)
    assert 0 < res["psnr"] < 100 and -1 <= res["ssim"] <= 1 and res["skipped"] == []


def test_evaluate_skips_corrupt_files_and_names_them(tiny_pairs, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(tiny_pairs, root)
    (root / "test" / "zzz.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    res = evaluate(_identity_like_predictor(), root, split="test", progress=False)
    assert res["count"] == 4 and res["skipped"][0]["path"].endswith("zzz.png")
