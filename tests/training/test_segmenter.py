"""`translate train segmenter`: a few steps on tiny built-in maps recognise their classes better than the best
constant guess; its palette comes from the data set, and a wrong --direction stops the run before step one."""
import numpy as np
import pytest

from training.config import SegmenterConfig
from training.loop import Trainer
from training.segmenter import Segmenter, resolve_palette
from translate import data as tdata
from translate.class_maps import ConfusionMatrix, save_palette
from translate.datasets import make_dataset
from translate.datasets.maps import MAPS_PALETTE
from translate.errors import ConfigError
from translate.evaluate import evaluate_segmenter
from translate.segmenter import load_segmenter


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg") / "maps"
    make_dataset("maps", root, count=40, size=32, progress=False)
    return root


def config(data, out, **kw):
    return SegmenterConfig(**{**dict(data=str(data), out=str(out), size=32, load_size=32, netG="unet_32", ngf=8,
                                     batch_size=4, steps=60, workers=0, progress=False, export=False, val_every=0,
                                     sample_every=1000, checkpoint_every=1000, log_every=10), **kw})


def majority_scores(root, split):
    """The scores of the best constant guess: every pixel called the most frequent class of the split."""
    truths = []
    for src in tdata.find_pairs(root, split):
        _, labels = tdata.load_pair(src, "AtoB")
        truths.append(ConfusionMatrix(len(MAPS_PALETTE)))
        truths[-1].update(np.asarray(labels), np.asarray(labels), MAPS_PALETTE)
    counts = sum(m.matrix for m in truths).sum(axis=1)
    majority = int(counts.argmax())
    guess = ConfusionMatrix(len(MAPS_PALETTE))
    guess.matrix[:, majority] = counts
    return guess.scores()


def test_a_few_steps_recognise_the_classes_better_than_the_best_constant_guess(maps, tmp_path):
    Trainer(Segmenter, config(maps, tmp_path / "seg")).fit()
    seg = load_segmenter(tmp_path / "seg")
    assert seg.palette == MAPS_PALETTE and seg.photo_side == "A"  # the set's palette.json, its side B the labels
    got = evaluate_segmenter(seg, maps, split="train", progress=False)
    chance = majority_scores(maps, "train")
    assert got["pixel_accuracy"] > chance["pixel_accuracy"] + 0.05, (got, chance)
    assert got["mean_iou"] > chance["mean_iou"] + 0.1, (got, chance)
    assert got["count"] == len(tdata.find_pairs(maps, "train"))


def test_the_palette_comes_from_the_flag_the_data_set_or_the_label_maps(maps, tmp_path):
    assert resolve_palette(config(maps, tmp_path / "a")) == MAPS_PALETTE
    found = resolve_palette(config(maps, tmp_path / "b", palette="auto"))
    assert found.side == "B" and (242, 239, 233) in {tuple(c) for c in found.colours.tolist()}
    two = save_palette(type(MAPS_PALETTE)(MAPS_PALETTE.colours[:4], MAPS_PALETTE.names[:4]), tmp_path / "four.json")
    assert resolve_palette(config(maps, tmp_path / "c", palette=str(two))).names == MAPS_PALETTE.names[:4]


def test_a_wrong_direction_stops_the_run_naming_what_would_work(maps, tmp_path):
    with pytest.raises(ConfigError, match="palette.json says side B holds the label maps.*--direction AtoB"):
        resolve_palette(config(maps, tmp_path / "a", direction="BtoA"))
    # a palette file without a side: the aerial photos are no label maps of it
    plain = save_palette(type(MAPS_PALETTE)(MAPS_PALETTE.colours, MAPS_PALETTE.names), tmp_path / "plain.json")
    with pytest.raises(ConfigError, match=r"train/00000\.png.*side A is no label map of .*plain\.json"):
        resolve_palette(config(maps, tmp_path / "b", direction="BtoA", palette=str(plain)))


def test_a_translator_is_not_a_segmenter(tiny_pairs, tmp_path):
    from tests.conftest import tiny_pix2pix_config
    from training.pix2pix import Pix2Pix
    from translate.errors import ModelError

    run = Trainer(Pix2Pix, tiny_pix2pix_config(tiny_pairs, tmp_path / "p", steps=1, val_every=0)).fit()
    with pytest.raises(ModelError, match="a translation model, not a segmenter"):
        load_segmenter(run)
