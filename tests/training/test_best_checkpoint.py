"""The best checkpoint: validation by the task's score keeps it beside the latest, with its step and score in the
run's records; a resume keeps both; `translate export` takes it by default (`--checkpoint latest|best|STEP`).

The scores are rigged (a sequence given to the real loop through the method's validation) so that the best step is
known; the weights are the run's own."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.conftest import tiny_pix2pix_config
from training.loop import Trainer
from training.method_base import Validation
from training.pix2pix import Pix2Pix
from translate.checkpoint import load_checkpoint
from translate.task_score import Score
from translate_cli.main import main

#: validation at steps 2, 4, 6, 8 (L1: lower is better): the best is step 4, then the run drifts
RIGGED = {2: 0.5, 4: 0.3, 6: 0.4, 8: 0.6}


@pytest.fixture
def rigged(monkeypatch):
    """Pix2Pix's validation scores are RIGGED by step (the step the loop is at: steps done + 1); the weights
    each validation saw are kept by step."""
    seen: dict[int, dict[str, torch.Tensor]] = {}
    scores = dict(RIGGED)

    def validation(self, val_set, max_images):
        step = self.steps_done + 1
        seen[step] = {k: v.clone() for k, v in self.G.state_dict().items()}
        return Validation({"l1": scores[step]}, Score("l1", scores[step], higher_is_better=False))

    monkeypatch.setattr(Pix2Pix, "validation", validation)
    return scores, seen


def _config(data, out, **kw):
    return tiny_pix2pix_config(data, out, **{**dict(steps=8, val_every=2, checkpoint_every=100, keep_checkpoints=10,
                                                    log_every=1, sample_every=100), **kw})


def _best(run):
    return json.loads((run / "best.json").read_text())


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_best_validation_score_keeps_its_step_beside_the_latest(rigged, tiny_pairs, tmp_path):
    _, seen = rigged
    run = Trainer(Pix2Pix, _config(tiny_pairs, tmp_path / "run")).fit()
    ckpts = run / "checkpoints"
    assert _best(run) == {"step": 4, "score": "l1", "value": 0.3, "higher_is_better": False,
                          "checkpoint": "checkpoints/best.pt"}
    best, latest = load_checkpoint(ckpts / "best.pt"), load_checkpoint(ckpts / "latest.pt")
    assert best["step"] == 4 and latest["step"] == 8 and latest["best"]["step"] == 4
    assert _same_weights(best["networks"]["G"], seen[4]) and not _same_weights(best["networks"]["G"], seen[8])
    # the best's checkpoints are written when they are found (2 and 4 improved; 6 and 8 did not), the last one always
    assert sorted(p.name for p in ckpts.glob("step_*.pt")) == ["step_00000002.pt", "step_00000004.pt",
                                                                "step_00000008.pt"]
    # the score is a curve: val/l1 at every validation
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["step"]: r["val/l1"] for r in rows if "val/l1" in r} == RIGGED


def test_a_score_that_goes_higher_is_better_keeps_the_highest(monkeypatch, tiny_pairs, tmp_path):
    ious = {2: 0.2, 4: 0.1, 6: 0.7, 8: 0.5}

    def validation(self, val_set, max_images):
        value = ious[self.steps_done + 1]
        return Validation({"mean_iou": value}, Score("mean_iou", value, higher_is_better=True))

    monkeypatch.setattr(Pix2Pix, "validation", validation)
    run = Trainer(Pix2Pix, _config(tiny_pairs, tmp_path / "run")).fit()
    assert _best(run)["step"] == 6 and load_checkpoint(run / "checkpoints" / "best.pt")["step"] == 6


def test_a_resume_keeps_the_best_through_later_worse_scores(rigged, tiny_pairs, tmp_path):
    scores, seen = rigged
    Trainer(Pix2Pix, _config(tiny_pairs, tmp_path / "run")).fit(stop_after=5)
    run = tmp_path / "run"
    assert _best(run)["step"] == 4 and load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 5
    Trainer(Pix2Pix, Pix2Pix.config_class(), resume=run).fit()  # 6 and 8 score worse than 4
    assert _best(run)["step"] == 4
    assert load_checkpoint(run / "checkpoints" / "best.pt")["step"] == 4
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 8
    # a resume that extends the run beats the best with a better score, and keeps that one
    scores.update({10: 0.25, 12: 0.35})
    Trainer(Pix2Pix, Pix2Pix.config_class(), resume=run, overrides={"steps": 12}).fit()
    assert _best(run)["step"] == 10 and _best(run)["value"] == 0.25
    assert _same_weights(load_checkpoint(run / "checkpoints" / "best.pt")["networks"]["G"], seen[10])


def test_a_run_without_a_score_keeps_no_best(monkeypatch, tiny_pairs, tmp_path, capsys):
    monkeypatch.setattr(Pix2Pix, "validation", lambda self, val_set, max_images: Validation({}))
    run = Trainer(Pix2Pix, _config(tiny_pairs, tmp_path / "run")).fit()
    assert not (run / "best.json").exists() and not (run / "checkpoints" / "best.pt").exists()
    main(["export", run, "--out", tmp_path / "m.onnx"])  # the latest, the only one there is
    assert f"from {run / 'checkpoints' / 'latest.pt'}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export", run, "--out", tmp_path / "b.onnx", "--checkpoint", "best"])
    err = capsys.readouterr().err.strip()
    assert err == f"error: checkpoint: {run} has no checkpoints/best.pt (it holds: latest, 8)"


def _outputs(model) -> np.ndarray:
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_export_takes_the_best_by_default_latest_or_a_kept_step_when_asked(rigged, tiny_pairs, tmp_path, capsys):
    run = Trainer(Pix2Pix, _config(tiny_pairs, tmp_path / "run", export=True)).fit()
    capsys.readouterr()
    for which in ("default", "best", "4", "latest", "8"):
        flags = [] if which == "default" else ["--checkpoint", which]
        main(["export", run, "--out", tmp_path / f"{which}.onnx", *flags])
    out = {w: _outputs(tmp_path / f"{w}.onnx") for w in ("default", "best", "4", "latest", "8")}
    np.testing.assert_array_equal(out["default"], out["best"])
    np.testing.assert_array_equal(out["best"], out["4"])  # the best is step 4's weights
    np.testing.assert_array_equal(out["latest"], out["8"])
    assert not np.allclose(out["best"], out["latest"], atol=1e-4)
    np.testing.assert_array_equal(_outputs(run / "model.onnx"), out["best"])  # the run's own export: the best too
    # a step the run did not keep, or no step at all: one line naming what the run holds
    for which, needle in (("6", f"{run} kept no checkpoint of step 6 (it holds: latest, best, 2, 4, 8)"),
                          ("first", "checkpoint: must be latest, best or a step number, got 'first'")):
        with pytest.raises(SystemExit) as e:
            main(["export", run, "--out", tmp_path / "x.onnx", "--checkpoint", which])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and needle in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["export", run / "model.onnx", "--out", tmp_path / "x.onnx", "--checkpoint", "best"])
    assert "model.onnx is a file: --checkpoint picks one of a run directory's checkpoints" in capsys.readouterr().err


# ---------------------------------------------------------------- the task's score with class maps
@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    """The built-in maps set at 32 px: its map side (B) is class maps, its palette.json says so."""
    from translate.datasets import make_dataset

    root = tmp_path_factory.mktemp("maps") / "maps"
    make_dataset("maps", root, count=12, size=32, progress=False)
    return root


def test_class_map_targets_are_validated_by_class_iou(maps, tmp_path):
    run = Trainer(Pix2Pix, _config(maps, tmp_path / "run", steps=4)).fit()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ious = [r["val/mean_iou"] for r in rows if "val/l1" in r]
    assert len(ious) == 2 and all(0 <= v <= 1 for v in ious)  # beside L1, PSNR, SSIM, as a curve
    best = _best(run)
    assert best["score"] == "mean_iou" and best["higher_is_better"] and best["value"] == max(ious)
    assert best["step"] == 2 * (1 + ious.index(max(ious)))
    # the palette the run scored with goes with its checkpoints (retraining's promotion gate scores the same way)
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["palette"] == json.loads((maps / "palette.json").read_text())


def test_the_other_direction_has_no_class_maps_to_score(maps, tmp_path):
    run = Trainer(Pix2Pix, _config(maps, tmp_path / "run", steps=2, direction="BtoA")).fit()  # map -> aerial photo
    assert _best(run)["score"] == "l1" and load_checkpoint(run / "checkpoints" / "latest.pt")["palette"] is None


def test_palette_auto_finds_the_classes_of_the_training_targets(maps, tmp_path):
    t = Trainer(Pix2Pix, _config(maps, tmp_path / "run", steps=2, palette="auto"))
    shipped = json.loads((maps / "palette.json").read_text())["classes"]
    found = {tuple(int(v) for v in c) for c in t.method.palette.colours}
    assert t.method.palette.side == "B" and len(found & {tuple(c["colour"]) for c in shipped}) >= 3


def test_a_palette_that_is_not_the_targets_is_refused_naming_the_file(maps, tiny_pairs, tmp_path):
    from translate.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train/000\.png: side B \(the target of --direction AtoB\) is no class map "
                                          r"of .*palette\.json: \d+% of its pixels are far"):
        Trainer(Pix2Pix, _config(tiny_pairs, tmp_path / "a", palette=str(maps / "palette.json")))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not JSON"):
        Trainer(Pix2Pix, _config(tiny_pairs, tmp_path / "b", palette=str(tmp_path / "bad.json")))
