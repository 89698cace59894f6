"""`translate data pair`: aligned A|B sets from a folder of plain photos (edges, gray, downscale, mask)."""
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from translate.datasets import PAIRINGS, PairOptions, make_pair, pair_photo, pair_photos
from translate.datasets.drawing import drop_small_components, thin
from translate.errors import ConfigError, DataError
from translate_cli.main import main


def sketches_photos(n, size=128, seed=0):
    """The photos (B sides) of the built-in sketches set, and the set's own sketches of them (A sides)."""
    pairs = [make_pair("sketches", i, size=size, seed=seed) for i in range(n)]
    return [b for _, b in pairs], [a for a, _ in pairs]


@pytest.fixture
def photos(tmp_path):
    """A folder as a user has one: photos of several sizes and formats, in a sub-folder too, and bad files."""
    root = tmp_path / "photos"
    (root / "holiday").mkdir(parents=True)
    objects, _ = sketches_photos(6, size=160)
    for i, photo in enumerate(objects[:4]):
        Image.fromarray(photo).save(root / f"object{i}.png")
    wide = np.pad(objects[4], ((0, 0), (60, 60), (0, 0)), mode="edge")  # 160 x 280: cropped to its centre
    Image.fromarray(wide).save(root / "holiday" / "wide.jpg", quality=92)
    Image.fromarray(objects[5]).convert("RGBA").save(root / "holiday" / "alpha.png")
    (root / "holiday" / "broken.jpg").write_bytes((root / "holiday" / "wide.jpg").read_bytes()[:600])  # cut off
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not a photo, not looked at")
    (root / ".hidden").mkdir()
    Image.fromarray(objects[0]).save(root / ".hidden" / "thumb.png")
    return root


def read_pair(path):
    x = np.asarray(Image.open(path).convert("RGB"))
    h = x.shape[0]
    return x[:, :h], x[:, h:]


def test_a_folder_of_photos_becomes_an_aligned_set(photos, tmp_path, capsys):
    out = tmp_path / "pairs"
    summary = pair_photos("edges", photos, out, PairOptions(size=64, val_fraction=0.2, test_fraction=0.2,
                                                            progress=False))
    # the empty file is refused from its header, before the split; the cut-off JPEG only when decoded
    assert summary["count"] == 6 and sum(summary["counts"].values()) == 6 and min(summary["counts"].values()) >= 1
    assert summary["counts"]["val"] + summary["counts"]["test"] == 2
    assert summary["kind"] == "edges" and (summary["A"], summary["B"]) == ("line drawing", "photo")
    # the bad files are named with why, on stderr and in the summary, and left out
    skipped = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"holiday/broken.jpg", "empty.png"} and skipped["empty.png"] == "empty file"
    assert "truncated" in skipped["holiday/broken.jpg"].lower()
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "empty.png" in err
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == sorted(summary["sources"]) and len(files) == 6
    assert sorted(summary["sources"].values()) == sorted(
        ["object0.png", "object1.png", "object2.png", "object3.png", "holiday/wide.jpg", "holiday/alpha.png"])
    for f in files:
        img = Image.open(out / f)
        assert img.size == (128, 64) and img.mode == "RGB"
    assert json.loads((out / "dataset.json").read_text())["sources"] == summary["sources"]
    # B is the photo's centred square: the wide photo's padding is cropped away
    name = next(k for k, v in summary["sources"].items() if v == "holiday/wide.jpg")
    _, b = read_pair(out / name)
    objects, _ = sketches_photos(6, size=160)
    want = cv2.resize(objects[4], (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(b.astype(int) - want).mean() < 4  # JPEG's loss only
    # training reads it as it reads a built-in set, with the sketches' preset (tests/training/test_presets.py)
    from translate.data import find_pairs

    assert len(find_pairs(out, "train")) == 4 and len(find_pairs(out, "test")) == 1


def test_the_set_is_deterministic_and_a_new_photo_moves_no_other(photos, tmp_path):
    o = PairOptions(size=32, seed=3, progress=False)
    a = pair_photos("mask", photos, tmp_path / "a", o)
    b = pair_photos("mask", photos, tmp_path / "b", o)
    assert a["sources"] == b["sources"]
    for f in a["sources"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    other = pair_photos("mask", photos, tmp_path / "c", PairOptions(size=32, seed=4, progress=False))
    assert list(other["sources"].values()) != list(a["sources"].values())  # another seed, another order

    def split_of(summary):
        return {src: f.split("/")[0] for f, src in summary["sources"].items()}

    more = photos / "more"
    more.mkdir()
    for i in range(20):
        Image.fromarray(np.full((40, 40, 3), 10 * i, np.uint8)).save(more / f"{i}.png")
    grown = pair_photos("mask", photos, tmp_path / "a", PairOptions(size=32, seed=3, progress=False, val_fraction=0,
                                                                   test_fraction=0))
    assert set(split_of(grown).values()) == {"train"} and grown["count"] == 26
    # written again into the same folder: the earlier run's files are replaced, none is left over
    assert len(list((tmp_path / "a").rglob("*.png"))) == 26


def test_edges_look_like_the_sketches_sets_drawings():
    """The edges of the sketches set's photos land on the set's own lines, so a model trained on one serves
    drawings made for the other (and the page's drawings)."""
    photos, sketches = sketches_photos(12, size=128)
    precision, recall = [], []
    for i, (photo, truth) in enumerate(zip(photos, sketches, strict=True)):
        a, b = pair_photo("edges", photo, size=128, name=str(i))
        np.testing.assert_array_equal(b, photo)  # a square photo at the size asked for: B is the photo itself
        assert a.shape == (128, 128, 3) and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()
        ink, true_ink = a[..., 0] < 128, truth[..., 0] < 128
        assert 0.01 < ink.mean() < 0.15  # black strokes on a white page
        assert (a[..., 0] > 240).mean() > 0.8 and a.min() < 40
        near_true = cv2.dilate(true_ink.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        near_ink = cv2.dilate(ink.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        precision.append((ink & near_true).sum() / ink.sum())
        recall.append((true_ink & near_ink).sum() / true_ink.sum())
    assert np.mean(precision) > 0.85 and np.mean(recall) > 0.9, (np.mean(precision), np.mean(recall))


def test_edges_leave_texture_and_noise_out():
    rng = np.random.default_rng(0)
    flat = np.full((96, 96, 3), 180, np.uint8)
    assert (pair_photo("edges", flat, size=64)[0] == 255).all()  # nothing to draw: a blank page
    noisy = np.clip(flat + rng.normal(0, 10, flat.shape), 0, 255).astype(np.uint8)
    assert (pair_photo("edges", noisy, size=64)[0] < 128).mean() < 0.005  # grain is not drawn


def test_gray_downscale_and_mask_undo_what_a_model_must_learn():
    photos, _ = sketches_photos(8, size=64)
    for i, photo in enumerate(photos):
        a, b = pair_photo("gray", photo, size=64)
        np.testing.assert_array_equal(a[..., 0], cv2.cvtColor(b, cv2.COLOR_RGB2GRAY))
        assert (a[..., 0] == a[..., 2]).all()

        a, b = pair_photo("downscale", photo, size=64, options=PairOptions(size=64, factor=4))
        low = cv2.resize(b, (16, 16), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(a, cv2.resize(low, (64, 64), interpolation=cv2.INTER_CUBIC))
        detail = [cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var() for x in (a, b)]
        assert detail[0] < 0.5 * detail[1]  # the fine detail a super-resolution model must put back is gone

        a, b = pair_photo("mask", photo, size=64, name=f"p{i}")
        hole = (a != b).any(axis=2)
        assert (a[hole] == 255).all() and 0.04 < hole.mean() < 0.7
        again, _ = pair_photo("mask", photo, size=64, name=f"p{i}")
        other, _ = pair_photo("mask", photo, size=64, name=f"q{i}")
        assert (again == a).all() and not (other == a).all()  # the holes are the photo's own, by seed and name


def test_thinning_keeps_lines_one_pixel_wide_and_whole():
    bar = np.zeros((40, 60), bool)
    bar[15:24, 5:55] = True  # 9 px thick
    line = thin(bar)
    assert line.any() and (line.sum(axis=0)[10:50] == 1).all()  # one pixel across, along its length
    n, _ = cv2.connectedComponents(line.astype(np.uint8))
    assert n == 2  # still one piece (and the background)
    specks = np.zeros((40, 40), bool)
    specks[5, 5] = specks[20:22, 20:22] = True
    specks[30, 2:38] = True
    kept = drop_small_components(specks, 8)
    assert kept[30].sum() == 36 and kept.sum() == 36


def test_bad_input_is_named(photos, tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        pair_photos("edges", tmp_path / "nowhere", tmp_path / "o")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"none of its 1 photos could be read \(first: a.jpg"):
        pair_photos("gray", bad, tmp_path / "o", PairOptions(progress=False))
    with pytest.raises(ConfigError, match="factor"):
        pair_photos("downscale", photos, tmp_path / "o", PairOptions(size=64, factor=32))
    with pytest.raises(ConfigError, match="kind"):
        pair_photos("cartoon", photos, tmp_path / "o")
    # a folder holding other images is not written into
    other = tmp_path / "other" / "train"
    other.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(other / "mine.png")
    with pytest.raises(ConfigError, match="already holds images"):
        pair_photos("gray", photos, tmp_path / "other", PairOptions(size=32, progress=False))


def test_cli_pairs_a_folder_inside_the_photos_without_reading_its_own_output(photos, capsys):
    out = photos / "pairs"
    for _ in range(2):  # the second run must not take the first run's pairs for photos
        main(["data", "pair", "downscale", str(photos), str(out), "--size", "32", "--factor", "2"])
        captured = capsys.readouterr()
        summary = json.loads(captured.out)
        assert summary["count"] == 6 and summary["factor"] == 2 and "sources" not in summary
        assert "pairs (downscale)" in captured.err  # the progress bar
    with pytest.raises(SystemExit) as e:
        main(["data", "pair", "downscale", str(photos), str(out), "--size", "32", "--factor", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: factor:") and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["data", "pair", "--help"])
    usage = capsys.readouterr().out
    assert all(kind in usage for kind in PAIRINGS)
