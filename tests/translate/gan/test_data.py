import math

import numpy as np
import pytest
import torch
from PIL import Image

from translate.errors import ConfigError, DataError
from translate.gan import data as toy_data


def test_ring8_has_8_distinct_centres_on_the_unit_circle():
    c = toy_data.mixture_centres("ring8")
    assert c.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0)
    gaps = np.linalg.norm(c[:, None] - c[None], axis=2)[~np.eye(8, dtype=bool)]
    assert gaps.min() == pytest.approx(2 * math.sin(math.pi / 8))  # neighbours 0.765 apart, none repeated
    assert toy_data.mixture_std("ring8") == 0.01


def test_grid25_centres_and_samples():
    c = toy_data.mixture_centres("grid25")
    assert c.shape == (25, 2) and len({tuple(p) for p in c}) == 25
    assert set(c[:, 0]) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    x, y = toy_data.sample_mixture("grid25", 20000, seed=3)
    assert np.bincount(y, minlength=25).min() > 600
    assert (x - c[y]).std() == pytest.approx(0.05, rel=0.05)
    again, _ = toy_data.sample_mixture("grid25", 20000, seed=3)
    np.testing.assert_array_equal(x, again)


def test_real_samples_score_perfectly():
    x, _ = toy_data.sample_mixture("ring8", toy_data.EVAL_SAMPLES, seed=1)
    s = toy_data.evaluate_mixture(x, "ring8")
    # a 2-D Gaussian puts 1 - exp(-9/2) = 98.9 % of its mass within 3 std: the ceiling of the protocol
    assert s["modes"] == 8 and s["high_quality"] == pytest.approx(100 * (1 - math.exp(-4.5)), abs=0.6)
    assert s["reverse_kl"] < 0.01 and s["samples"] == 2500


def test_mode_statistics_on_hand_made_samples():
    c = toy_data.mixture_centres("ring8")
    # 3 modes hit exactly, equally often; 1 sample 4 std away from a centre; 1 at the origin
    x = np.concatenate([np.repeat(c[:3], 10, axis=0), c[3:4] + [0.04, 0.0], [[0.0, 0.0]]])
    s = toy_data.evaluate_mixture(x, "ring8")
    assert s["modes"] == 3 and s["histogram"][:4] == [10, 10, 10, 0]
    assert s["high_quality"] == pytest.approx(100 * 30 / 32)
    assert s["reverse_kl"] == pytest.approx(math.log(8 / 3))
    # just inside 3 std counts
    assert toy_data.evaluate_mixture(c[:1] + [0.0299, 0.0], "ring8")["modes"] == 1
    nothing = toy_data.evaluate_mixture(np.zeros((5, 2)), "ring8")
    assert nothing["modes"] == 0 and nothing["high_quality"] == 0 and nothing["reverse_kl"] == math.inf


def test_unknown_mixture_is_a_config_error():
    with pytest.raises(ConfigError, match="ring9"):
        toy_data.mixture_centres("ring9")


def test_digits_are_real_labelled_images():
    imgs, labels = toy_data.load_digits_images(16)
    assert imgs.shape == (1797, 16, 16, 1) and imgs.dtype == np.uint8
    assert sorted(set(labels.tolist())) == list(range(10))
    assert imgs.max() == 255 and imgs.min() == 0
    d = toy_data.open_gan_data("digits", size=16, val_fraction=0.1)
    assert d.kind == "images" and d.num_classes == 10 and d.channels == 1
    assert len(d.train) + len(d.val) == 1797 and 170 <= len(d.val) <= 190
    item = d.train[(5, 1234)]  # (index, seed) keys as the loop's sampler gives them
    assert item["x"].shape == (1, 16, 16) and -1 <= item["x"].min() and item["x"].max() <= 1


def _write(path, colour, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_image_folders_flat_is_unlabelled_and_subfolders_are_classes(tmp_path):
    for i in range(4):
        _write(tmp_path / "flat" / f"{i}.png", (10 * i, 0, 0))
    flat = toy_data.open_gan_data(str(tmp_path / "flat"), size=8, val_fraction=0.25)
    assert not flat.labelled and len(flat.train) == 3 and flat.train[0]["label"] == -1
    assert flat.train[0]["x"].shape == (3, 8, 8)
    for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        for i in range(3):
            _write(tmp_path / "lab" / cls / f"{i}.jpg", colour)
    lab = toy_data.open_gan_data(str(tmp_path / "lab"), size=8, channels=3, val_fraction=0.2)
    assert lab.classes == ["cat", "dog"]
    items = [lab.train[i] for i in range(len(lab.train))]
    for it in items:  # red images are class 0, blue class 1
        assert int(it["label"]) == (0 if it["x"][0].mean() > it["x"][2].mean() else 1)


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        toy_data.open_gan_data(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        toy_data.open_gan_data(str(tmp_path / "empty"))
    _write(tmp_path / "mixed" / "a.png", (0, 0, 0))
    _write(tmp_path / "mixed" / "c1" / "b.png", (0, 0, 0))
    with pytest.raises(DataError, match="both"):
        toy_data.open_gan_data(str(tmp_path / "mixed"))


def test_corrupt_files_are_skipped_or_named(tmp_path):
    for i in range(3):
        _write(tmp_path / "d" / f"{i}.png", (0, 200, 0))
    (tmp_path / "d" / "0.png").write_bytes(b"not an image")
    info = toy_data.scan_image_folder(tmp_path / "d")
    ds = toy_data.ImageFolderSet(info, size=8)
    assert ds[0]["x"].shape == (3, 8, 8) and any("0.png" in k for k in ds.skipped)
    from translate.errors import ImageError

    with pytest.raises(ImageError, match="0.png"):
        toy_data.ImageFolderSet(info, size=8, strict=True)[0]


def test_scatter_plot_marks_samples_and_centres():
    x, _ = toy_data.sample_mixture("ring8", 500, seed=0)
    img = toy_data.render_points(x, "ring8", size=200)
    assert img.shape == (200, 200, 3) and img.dtype == np.uint8
    blue = (img[..., 2] > 150) & (img[..., 0] < 100)
    red = (img[..., 0] > 180) & (img[..., 1] < 80)
    assert blue.sum() > 20 and red.sum() > 8 * 4
    # nothing is drawn at the (empty) centre of the ring
    assert (img[90:110, 90:110] == 255).all()


def test_batched_fetch_matches_single_items():
    ds = toy_data.mixture_dataset("ring8", 100, seed=0)
    keys = [(3, 11), (7, 12), (3, 13)]
    batch = ds.__getitems__(keys)
    for k, b in zip(keys, batch, strict=True):
        single = ds[k]
        assert torch.equal(single["x"], b["x"]) and int(single["label"]) == int(b["label"])
