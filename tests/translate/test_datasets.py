import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from translate.datasets import KINDS, make_dataset, make_pair, maps, split_counts
from translate.datasets.maps import make_maps_pair
from translate.datasets.sketches import make_sketches_pair

MAKERS = {"maps": make_maps_pair, "sketches": make_sketches_pair}


def rng(*seed):
    return np.random.default_rng(list(seed))


def colour_mask(img, colour):
    return np.all(img == np.asarray(colour, np.uint8), axis=-1)


def dilate(mask, r):
    import cv2
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def map_classes(m):
    """Class masks of a map tile, from its flat palette colours."""
    road = np.zeros(m.shape[:2], bool)
    for c in maps.MAP_ROAD.values():
        road |= colour_mask(m, c)
    return {"water": colour_mask(m, maps.MAP_WATER), "park": colour_mask(m, maps.MAP_PARK), "road": road}


def aerial_classes(a):
    """Crude colour classes of an aerial tile (what the eye would call water / greenery / asphalt)."""
    a = a.astype(np.int32)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    lum = a.mean(-1)
    sat = a.max(-1) - a.min(-1)
    return {
        "water": (b - r > 12) & (g - r > 10) & (lum < 130),
        "green": (g - r > 6) & (g - b > 6),
        "asphalt": (sat < 32) & (lum < 125),
    }


# --------------------------------------------------------------------------- determinism


def test_kinds():
    assert tuple(KINDS) == ("maps", "sketches")
    for name, kind in KINDS.items():
        assert kind.name == name and kind.pair is MAKERS[name]


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_bytes_different_seed_differs(kind):
    a1, b1 = MAKERS[kind](rng(3, 7), 64)
    a2, b2 = MAKERS[kind](rng(3, 7), 64)
    assert a1.tobytes() == a2.tobytes() and b1.tobytes() == b2.tobytes()
    a3, b3 = MAKERS[kind](rng(3, 8), 64)
    assert a1.tobytes() != a3.tobytes() and b1.tobytes() != b3.tobytes()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [32, 64, 96, 256])
def test_shapes_and_dtypes(kind, size):
    a, b = MAKERS[kind](rng(0, 1), size)
    for x in (a, b):
        assert x.shape == (size, size, 3) and x.dtype == np.uint8
        assert x.flags.c_contiguous
        assert x.std() > 1  # not blank


@pytest.mark.parametrize("size", [0, 8, 15, 64.0, "64", True])
def test_bad_size_raises(size):
    with pytest.raises(ValueError):
        make_maps_pair(rng(0), size)


# --------------------------------------------------------------------------- maps content and alignment


def test_maps_tiles_have_roads_and_seeds_show_water_and_parks():
    seen = {"water": 0, "park": 0}
    for s in range(10):
        _, m = make_maps_pair(rng(0, s), 64)
        cls = map_classes(m)
        assert cls["road"].mean() > 0.01, f"seed {s}: no roads"
        for k in seen:
            seen[k] += cls[k].mean() > 0.02
    assert seen["water"] >= 2 and seen["park"] >= 2, seen


def test_map_side_uses_the_flat_palette():
    _, m = make_maps_pair(rng(0, 4), 128)
    colours = np.unique(m.reshape(-1, 3), axis=0)
    assert len(colours) <= 12  # background, park, water, building(+outline), 3 roads (+outlines)
    assert colour_mask(m, maps.MAP_BG).mean() > 0.1


@pytest.mark.parametrize("seed", range(6))
def test_maps_water_and_roads_are_pixel_aligned(seed):
    a, m = make_maps_pair(rng(0, seed), 128)
    mc, ac = map_classes(m), aerial_classes(a)
    water, road = mc["water"], mc["road"]
    if water.sum() > 100:
        inter = (water & ac["water"]).sum()
        iou = inter / (water | ac["water"]).sum()
        assert iou > 0.8, f"water IoU {iou:.2f}"
        # misaligning the map by a few pixels must hurt: the overlap is about the exact pixels
        shifted = np.roll(water, 6, axis=1)
        assert iou > (shifted & ac["water"]).sum() / (shifted | ac["water"]).sum() + 0.02
    # roads on the map are asphalt in the photo...
    recall = (road & ac["asphalt"]).sum() / road.sum()
    assert recall > 0.75, f"road recall {recall:.2f}"
    # ...and asphalt-looking pixels are far more often road than chance
    # (dense downtown tiles have dark roofs and shadows too, hence only 1.4x chance)
    precision = (road & ac["asphalt"]).sum() / max(1, ac["asphalt"].sum())
    assert precision > 1.4 * road.mean(), (precision, road.mean())
    # parks are green in the photo
    park = mc["park"]
    if park.sum() > 100:
        assert (park & ac["green"]).sum() / park.sum() > 0.8


# --------------------------------------------------------------------------- sketches content and alignment


def _grad(img):
    import cv2
    g = img.astype(np.float32).mean(-1)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 4
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 4
    return np.hypot(gx, gy)


@pytest.mark.parametrize("seed", range(8))
def test_sketch_lines_lie_on_photo_edges(seed):
    sketch, photo = make_sketches_pair(rng(0, seed), 128)
    assert (sketch[..., 0] == sketch[..., 1]).all() and (sketch[..., 1] == sketch[..., 2]).all()  # grey ink
    ink = sketch[..., 0] < 128
    assert 0.005 < ink.mean() < 0.3
    edges = _grad(photo) > 6
    near = dilate(edges, 2)
    frac = (ink & near).sum() / ink.sum()
    assert frac > 0.95, f"only {frac:.2f} of the sketch lines are within 2 px of a photo edge"
    # the outline is closed and hugs the object: inside it the photo shows the object,
    # outside it only the (possibly shadowed) background
    filled = ndimage.binary_fill_holes(ink)
    assert filled.mean() > 0.05
    bg = np.median(np.concatenate([photo[0], photo[-1], photo[:, 0], photo[:, -1]]), axis=0)
    diff = np.abs(photo.astype(int) - bg).max(-1)
    assert (diff[~dilate(filled, 2)] < 80).mean() > 0.98
    assert (diff[filled & ~dilate(~filled, 2)] > 12).mean() > 0.6


def test_sketch_objects_vary():
    kinds = set()
    for s in range(12):
        sketch, photo = make_sketches_pair(rng(0, s), 64)
        kinds.add(tuple(np.round(photo.reshape(-1, 3).mean(0) / 16).astype(int)))
    assert len(kinds) >= 6


# --------------------------------------------------------------------------- datasets


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())


def test_make_dataset_layout(tmp_path):
    out = tmp_path / "ds"
    summary = make_dataset("maps", out, count=10, size=32, seed=5, progress=False)
    assert summary["counts"] == {"train": 8, "val": 1, "test": 1}
    assert summary["kind"] == "maps" and summary["size"] == 32 and summary["seed"] == 5
    assert summary["out"] == str(out)
    assert json.loads((out / "dataset.json").read_text()) == summary
    expected = [f"train/{i:05d}.png" for i in range(8)] + ["val/00008.png", "test/00009.png"]
    assert _files(out) == sorted(expected + ["dataset.json", "palette.json"])  # and no temporary files left
    for name in expected:
        with Image.open(out / name) as im:
            assert im.size == (64, 32) and im.mode == "RGB"
    # each file is A|B of make_pair(kind, i)
    a, b = make_pair("maps", 8, size=32, seed=5)
    assert (np.asarray(Image.open(out / "val/00008.png")) == np.concatenate([a, b], 1)).all()


def test_image_independent_of_count(tmp_path):
    make_dataset("sketches", tmp_path / "a", count=4, size=32, progress=False)
    make_dataset("sketches", tmp_path / "b", count=20, size=32, progress=False)
    for i in range(3):  # train in both
        assert (tmp_path / "a/train" / f"{i:05d}.png").read_bytes() == \
            (tmp_path / "b/train" / f"{i:05d}.png").read_bytes()
    # a different seed gives different images
    make_dataset("sketches", tmp_path / "c", count=4, size=32, seed=1, progress=False)
    assert (tmp_path / "a/train/00000.png").read_bytes() != (tmp_path / "c/train/00000.png").read_bytes()


def test_rerun_replaces_earlier_dataset(tmp_path):
    out = tmp_path / "ds"
    make_dataset("maps", out, count=10, size=32, progress=False)
    summary = make_dataset("maps", out, count=5, size=32, splits=(0.6, 0.2, 0.2), progress=False)
    assert summary["counts"] == {"train": 3, "val": 1, "test": 1}
    assert _files(out) == ["dataset.json", "palette.json", "test/00004.png", "train/00000.png", "train/00001.png",
                           "train/00002.png", "val/00003.png"]
    make_dataset("sketches", out, count=5, size=32, progress=False)
    assert "palette.json" not in _files(out)  # a set of photos has no class map: the maps set's palette goes


def test_rerun_accepts_a_folder_written_before_the_package(tmp_path):
    # translate/synthetic.py, which wrote the built-in sets before translate/datasets/, named itself
    out = tmp_path / "ds"
    make_dataset("maps", out, count=10, size=32, progress=False)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["generator"] == "translate.datasets"
    (out / "dataset.json").write_text(json.dumps({**meta, "generator": "translate.synthetic"}))
    make_dataset("maps", out, count=4, size=32, splits=(0.5, 0.25, 0.25), progress=False)
    assert _files(out) == ["dataset.json", "palette.json", "test/00003.png", "train/00000.png", "train/00001.png", "val/00002.png"]
    assert json.loads((out / "dataset.json").read_text())["generator"] == "translate.datasets"


def test_refuses_folder_of_another_generator(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "00000.png")
    (tmp_path / "dataset.json").write_text(json.dumps({"generator": "someone.else"}))
    with pytest.raises(ValueError, match="not a synthetic dataset"):
        make_dataset("maps", tmp_path, count=2, size=32, progress=False)
    assert os.listdir(tmp_path / "train") == ["00000.png"]


def test_refuses_folder_with_other_images(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "mine.png")
    with pytest.raises(ValueError, match="not a synthetic dataset"):
        make_dataset("maps", tmp_path, count=2, size=32, progress=False)
    assert os.listdir(tmp_path / "train") == ["mine.png"]


def test_unknown_kind_lists_kinds(tmp_path):
    with pytest.raises(ValueError) as e:
        make_dataset("faces", tmp_path / "x", count=2, size=32, progress=False)
    assert "maps" in str(e.value) and "sketches" in str(e.value)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("count,splits,expected", [
    (400, (0.8, 0.1, 0.1), (320, 40, 40)),
    (10, (0.8, 0.1, 0.1), (8, 1, 1)),
    (1, (0.8, 0.1, 0.1), (1, 0, 0)),
    (0, (0.8, 0.1, 0.1), (0, 0, 0)),
    (7, (1, 0, 0), (7, 0, 0)),
    (10, (8, 1, 1), (8, 1, 1)),  # normalised
])
def test_split_counts(count, splits, expected):
    c = split_counts(count, splits)
    assert (c["train"], c["val"], c["test"]) == expected


@pytest.mark.parametrize("kwargs", [dict(count=-1), dict(splits=(0.5, 0.5)), dict(splits=(1, -0.1, 0.1)),
                                    dict(seed=-1), dict(size=4)])
def test_bad_arguments_raise(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make_dataset("maps", tmp_path / "x", **{"count": 2, "size": 32, "progress": False, **kwargs})


def test_progress_bar_runs(tmp_path, capsys):
    make_dataset("maps", tmp_path / "p", count=2, size=32, progress=True)
    assert "synthetic maps" in capsys.readouterr().err
