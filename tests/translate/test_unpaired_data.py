"""Unpaired data for CycleGAN: the trainA/trainB layout, aligned A|B data made unpaired,
B drawn at a seeded random index, independent augmentation of A and B."""
import numpy as np
import pytest
import torch
from PIL import Image

from translate import data as tdata
from translate.errors import DataError, ImageError


def _unaligned(root, counts=(("train", 5, 3), ("test", 2, 2)), size=(20, 16)):
    """DIR/{split}A and DIR/{split}B: A images dark (value < 100), B images bright (> 150)."""
    rng = np.random.default_rng(0)
    for split, n_a, n_b in counts:
        for side, n, lo in (("A", n_a, 0), ("B", n_b, 160)):
            d = root / f"{split}{side}"
            d.mkdir(parents=True)
            for i in range(n):
                w, h = size if side == "A" else (size[0] + 6, size[1] + 4)  # sides may differ in size
                Image.fromarray(rng.integers(lo, lo + 90, (h, w, 3), dtype=np.uint8)).save(d / f"{side}{i}.png")
    return root


def _aligned(root, n=10, size=16):
    """Aligned A|B pairs with B = 255 - A, every pair different."""
    d = root / "train"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(d / f"{i:02d}.png")
    return root


def test_unaligned_layout_lists_each_side(tmp_path):
    root = _unaligned(tmp_path)
    a, b = tdata.find_unpaired(root, "train")
    assert [s.name for s in a] == [f"A{i}" for i in range(5)] and [s.name for s in b] == ["B0", "B1", "B2"]
    assert tdata.has_unaligned_split(root, "test") and not tdata.has_unaligned_split(root, "val")
    ds = tdata.UnpairedImages(a, b, size=16, load_size=18)
    assert len(ds) == 5  # max(len A, len B), as the reference
    for i in range(len(ds)):
        item = ds[(i, 100 + i)]
        assert item["A"].shape == item["B"].shape == (3, 16, 16)
        assert item["A"].mean() < -0.4 and item["B"].mean() > 0.4  # A from trainA, B from trainB
        assert item["name"] == f"A{i}"


def test_b_index_is_random_but_fixed_by_the_key(tmp_path):
    root = _unaligned(tmp_path, counts=(("train", 4, 7),))
    ds = tdata.UnpairedImages(*tdata.find_unpaired(root), size=16, load_size=18)
    keys = [(s % 4, s) for s in range(100)]
    drawn = [ds.b_index(k) for k in keys]
    assert len(set(drawn)) == 7 and len({d for k, d in zip(keys, drawn, strict=True) if k[0] == 0}) > 1  # any B for any A
    assert drawn == [ds.b_index(k) for k in keys]
    first, again = ds[keys[5]], ds[keys[5]]
    assert first["name_B"] == f"B{drawn[5]}" and torch.equal(first["B"], again["B"])
    assert torch.equal(first["A"], again["A"])
    # evaluation pairs A[i] with B[i % len B], nothing random
    ev = tdata.UnpairedImages(*tdata.find_unpaired(root), size=16, train=False, preprocess="resize")
    assert [ev[i]["name_B"] for i in range(7)] == [f"B{i}" for i in range(7)]
    assert [ev[i]["name"] for i in range(7)] == ["A0", "A1", "A2", "A3", "A0", "A1", "A2"]


def test_a_and_b_are_augmented_independently(tmp_path):
    # identical images on both sides: a joint transform would crop/flip them alike
    for side in "AB":
        (tmp_path / f"train{side}").mkdir()
        img = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / f"train{side}" / "x.png")
    ds = tdata.UnpairedImages(*tdata.find_unpaired(tmp_path), size=24, load_size=40, flip=True)
    same = [torch.equal(ds[(0, s)]["A"], ds[(0, s)]["B"]) for s in range(6)]
    assert not any(same)


def test_aligned_data_is_split_into_halves_without_pairs(tmp_path):
    root = _aligned(tmp_path, n=11)
    a, b = tdata.find_unpaired(root, "train", seed=3)
    assert len(a) == 6 and len(b) == 5
    assert {s.half for s in a} == {"A"} and {s.half for s in b} == {"B"}
    assert not {s.path for s in a} & {s.path for s in b}  # no file gives both its sides
    assert sorted(s.path for s in a + b) == sorted((root / "train").glob("*.png"))
    assert [s.path for s in b] != sorted(s.path for s in b)  # the B half is shuffled
    assert tdata.find_unpaired(root, "train", seed=3) == (a, b)  # deterministic
    ds = tdata.UnpairedImages(a, b, size=16, preprocess="none", flip=False)
    for key in [(i % len(ds), s) for i, s in enumerate(range(30))]:
        item = ds[key]
        assert not torch.allclose(item["B"], -item["A"], atol=1e-2)  # never A with its own B
    # the halves hold the right side of the file: A, and 255 - A
    one = tdata.load_image(a[0])
    pair_a, pair_b = tdata.load_pair(tdata.PairSource(a[0].path))
    np.testing.assert_array_equal(np.asarray(one), np.asarray(pair_a))
    np.testing.assert_array_equal(np.asarray(tdata.load_image(tdata.ImageSource(a[0].path, "B"))), np.asarray(pair_b))


def test_direction_swaps_the_sets(tmp_path):
    root = _unaligned(tmp_path)
    ds = tdata.UnpairedImages(*tdata.find_unpaired(root), size=16, direction="BtoA", train=False, preprocess="resize")
    item = ds[0]
    assert item["name"] == "B0" and item["A"].mean() > 0.4 and item["B"].mean() < -0.4


def test_unreadable_images_are_skipped_or_fatal(tmp_path):
    root = _unaligned(tmp_path, counts=(("train", 3, 2),))
    (root / "trainA" / "A0.png").write_bytes((root / "trainA" / "A0.png").read_bytes()[:60])
    a, b = tdata.find_unpaired(root)
    ds = tdata.UnpairedImages(a, b, size=16, train=False, preprocess="resize")
    assert ds[0]["name"] == "A1" and "A0.png" in next(iter(ds.skipped))
    with pytest.raises(ImageError, match="A0.png"):
        tdata.UnpairedImages(a, b, size=16, strict=True)[0]
    good, bad = tdata.check_readable_images(a)
    assert [s.name for s in good] == ["A1", "A2"] and bad[0][0].endswith("A0.png")


def test_missing_or_too_small_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="trainA"):
        tdata.find_unpaired(tmp_path)
    _aligned(tmp_path, n=1)
    with pytest.raises(DataError, match="at least 2"):
        tdata.find_unpaired(tmp_path)
    with pytest.raises(DataError, match="B side"):
        tdata.UnpairedImages([tdata.ImageSource(tmp_path / "train" / "00.png")], [])
