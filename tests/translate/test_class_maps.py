"""Class-map scores: palettes read, found and shipped; snapping; borders; the confusion matrix's numbers
checked against counts made by hand; and the refusals of bad input, each naming the file."""
import json

import numpy as np
import pytest
import torch

from translate import imageio
from translate.class_maps import (
    FAR_DISTANCE,
    MAX_FAR_SHARE,
    ConfusionMatrix,
    Palette,
    border_mask,
    find_palette,
    load_palette,
    palette_beside,
    save_palette,
    snap,
)
from translate.datasets import make_dataset, make_pair
from translate.datasets.maps import MAPS_PALETTE
from translate.errors import ConfigError
from translate.task_score import Score, task_score

RGB = Palette(np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8), ("red", "green", "blue"))


def paint(labels, palette=RGB):
    return palette.colours[np.asarray(labels)]


def test_palette_file_round_trip_and_side(tmp_path):
    path = save_palette(Palette(RGB.colours, RGB.names, side="B"), tmp_path / "p.json")
    assert json.loads(path.read_text())["classes"][1] == {"name": "green", "colour": [0, 255, 0]}
    back = load_palette(path)
    assert back.names == RGB.names and np.array_equal(back.colours, RGB.colours) and back.side == "B"


@pytest.mark.parametrize("text", ["{not json", '{"classes": [{"name": "a", "colour": [1, 2]}, '
                                  '{"name": "b", "colour": [0, 0, 0]}]}', '{"classes": []}',
                                  '{"classes": [{"name": "a", "colour": [300, 0, 0]}, {"name": "b", "colour": [0, 0, 0]}]}',
                                  '[1, 2]'])
def test_a_palette_file_that_does_not_parse_is_refused_naming_the_file_and_the_format(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_palette(path)
    msg = str(e.value)
    assert str(path) in msg and '"classes"' in msg and "\n" not in msg


def test_a_missing_palette_file_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="nope.json"):
        load_palette(tmp_path / "nope.json")


def test_snap_takes_the_nearest_colour():
    img = np.array([[[250, 10, 0], [10, 200, 40]], [[0, 30, 220], [120, 0, 140]]], np.uint8)
    # (120, 0, 140): 135^2+140^2 from red, 120^2+255^2+140^2 from green, 120^2+115^2 from blue
    assert snap(img, RGB).tolist() == [[0, 1], [2, 2]]


def test_border_mask_marks_pixels_beside_another_class():
    labels = np.zeros((5, 6), int)
    labels[:, 3:] = 1
    mask = border_mask(labels, 1)
    assert mask[:, 2:4].all() and not mask[:, :2].any() and not mask[:, 4:].any()
    assert border_mask(labels, 2)[:, 1:5].all() and not border_mask(labels, 0).any()


def test_confusion_matrix_scores_match_counts_made_by_hand():
    target = np.zeros((8, 8), int)
    target[:, 4:] = 1
    target[6:, :] = 2
    pred = target.copy()
    pred[0:2, 0:4] = 1  # 8 red pixels called green
    m = ConfusionMatrix(3)
    m.update(paint(pred), paint(target), RGB, ignore_border=0)
    s = m.scores()
    # red: 24 real, 16 hit; green: 24 real, all hit, 32 predicted; blue: 16, all hit
    assert s["pixel_accuracy"] == pytest.approx(56 / 64)
    assert s["mean_class_accuracy"] == pytest.approx((16 / 24 + 1 + 1) / 3)
    assert s["class_iou"] == pytest.approx({"red": 16 / 24, "green": 24 / 32, "blue": 1.0})
    assert s["mean_iou"] == pytest.approx((16 / 24 + 24 / 32 + 1) / 3)


def test_confusion_matrix_ignores_borders_of_the_target():
    target = np.zeros((6, 6), int)
    target[:, 3:] = 1
    pred = np.zeros((6, 6), int)  # every green pixel wrong; only the column next to red is a border
    m = ConfusionMatrix(3, RGB.names)
    m.update(paint(pred), paint(target), RGB, ignore_border=1)
    assert m.matrix.sum() == 24 and m.matrix[1, 0] == 12 and m.matrix[0, 0] == 12
    assert m.scores()["class_iou"]["blue"] is None


def test_a_label_image_far_from_the_palette_is_refused_naming_the_file():
    target = paint(np.zeros((10, 10), int))
    target[:3] = (128, 128, 128)  # 30 % grey: far from red, green and blue
    assert 0.3 > MAX_FAR_SHARE and np.linalg.norm([128, 128, 128]) > FAR_DISTANCE
    with pytest.raises(ConfigError, match=r"labels/007\.png: 30% of its pixels are far from every colour"):
        ConfusionMatrix(3).update(target, target, RGB, source="labels/007.png")
    target[:2] = (255, 0, 0)  # 10 %: under the stated share, scored
    ConfusionMatrix(3).update(target, target, RGB, source="labels/007.png")


def test_the_maps_set_ships_its_palette_and_its_maps_are_all_palette_colours(tmp_path):
    make_dataset("maps", tmp_path / "maps", count=10, size=64, progress=False)
    assert palette_beside(tmp_path / "maps") == MAPS_PALETTE and MAPS_PALETTE.side == "B"
    aerial, map_ = make_pair("maps", 3, size=128)
    m = ConfusionMatrix(len(MAPS_PALETTE))
    m.update(map_, map_, MAPS_PALETTE, source="map")
    assert m.scores()["pixel_accuracy"] == 1.0
    with pytest.raises(ConfigError, match="aerial"):  # the photo side is no class map of it
        m.update(aerial, aerial, MAPS_PALETTE, source="aerial")


def test_a_map_in_its_mean_colour_scores_low_iou_though_its_l1_is_low():
    maps_ = [make_pair("maps", i, size=64)[1] for i in range(4)]
    real = torch.stack([imageio.image_to_tensor(m) for m in maps_])
    mean = real.mean(dim=(0, 2, 3), keepdim=True).expand_as(real)
    iou = task_score(mean, real, MAPS_PALETTE)
    assert iou.name == "mean_iou" and iou.higher_is_better and iou.value < 0.2
    assert task_score(real, real, MAPS_PALETTE).value == 1.0
    assert task_score(mean, real).name == "l1" and task_score(mean, real).value < 0.2


def test_find_palette_recovers_the_class_colours_of_label_maps():
    maps_ = [make_pair("maps", i, size=64)[1] for i in range(8)]
    found = find_palette(maps_, max_classes=12)
    shipped = {tuple(c) for c in MAPS_PALETTE.colours.tolist()}
    found_set = {tuple(c) for c in found.colours.tolist()}
    # every shipped class that covers a share of these tiles is found (highways are rare)
    assert {(242, 239, 233), (228, 222, 213), (255, 255, 255)} <= found_set
    assert len(found_set & shipped) >= 4 and found.names[0] == "#f2efe9"
    with pytest.raises(ConfigError, match="fewer than 2 dominant colours"):
        find_palette([np.full((8, 8, 3), 7, np.uint8)])


def test_task_score_prefers_iou_then_frechet_then_l1():
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    y = torch.rand(6, 3, 8, 8) * 2 - 1
    feats = lambda t: t.mean(dim=(2, 3))  # noqa: E731
    fd = task_score(x, y, features=feats)
    assert fd.name == "frechet_distance" and not fd.higher_is_better
    assert task_score(y, y, features=feats).value == pytest.approx(0.0, abs=1e-6)
    # a copy shifted by 0.5 in each of 3 features: same covariance, |mean difference|^2 = 3 * 0.25
    assert task_score(y + 0.5, y, features=feats).value == pytest.approx(0.75, abs=1e-6)
    l1 = task_score(x, y)
    assert l1 == Score("l1", pytest.approx(float((x - y).abs().mean())), False)
    assert Score("l1", 0.1, False).better_than(Score("l1", 0.2, False)) and Score("mean_iou", 0.5, True).better_than(None)
    with pytest.raises(ValueError, match="compare"):
        Score("l1", 0.1, False).better_than(Score("mean_iou", 0.2, True))
