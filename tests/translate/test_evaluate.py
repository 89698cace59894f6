import numpy as np
import pytest
import torch

from translate import data as tdata
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
    predictor = _identity_like_predictor()
    res = evaluate(predictor, tiny_pairs, split="test", progress=False)
    assert res["count"] == 4 and len(res["per_image"]) == 4 and res["skipped"] == []
    # each image's L1 (on [-1, 1]) and PSNR (on [0, 1]) computed here by hand from its output and target
    for src, row in zip(tdata.find_pairs(tiny_pairs, "test"), res["per_image"], strict=True):
        a, b = tdata.load_pair(src, "AtoB", 3, 3)
        out = predictor.translate_array(np.asarray(a)).astype(np.float64)
        target = np.asarray(b).astype(np.float64)
        assert row["name"] == src.name
        assert row["l1"] == pytest.approx(np.abs(out - target).mean() / 127.5, abs=1e-5)
        assert row["psnr"] == pytest.approx(10 * np.log10(1 / np.mean(((out - target) / 255) ** 2)), abs=1e-3)
        assert -1 <= row["ssim"] <= 1
    for k in ("l1", "psnr", "ssim"):  # the summary is the mean of the images
        assert res[k] == pytest.approx(np.mean([r[k] for r in res["per_image"]]), abs=1e-5)


def test_evaluate_skips_corrupt_files_and_names_them(tiny_pairs, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(tiny_pairs, root)
    (root / "test" / "zzz.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    res = evaluate(_identity_like_predictor(), root, split="test", progress=False)
    assert res["count"] == 4 and res["skipped"][0]["path"].endswith("zzz.png")
