"""The promotion policy of a retraining job: fine-tune the current version from its checkpoint,
score old and new on the same held-out pairs by the task's score, register the new version, promote
it only if it is no worse.

- **Fine-tune**: :class:`training.loop.Trainer` with the checkpoint's config, ``data`` = the
  upload, ``init_from`` = the current version's checkpoint (networks loaded, fresh optimizers
  and schedule), ``steps`` (default ``DEFAULT_STEPS``), export to ONNX at the end. The trainer
  comes from the checkpoint's method name (:func:`trainer`). The palette the checkpoint's run scored
  its targets' class maps with (``palette`` in the checkpoint) goes with it, so the fine-tuning
  validates the same way.
- **Evaluate** the current version's model and the new one with
  :func:`translate.evaluate.evaluate` on the same held-out pairs.
- **Register and decide** by the task's score, as training keeps its best checkpoint
  (:mod:`translate.task_score`): the class IoU of the outputs' class maps where the checkpoint has a
  palette (higher is better), else mean L1 on the [-1, 1] scale (lower is better), which L1 alone
  cannot tell a map from the mean map. The new version is promoted iff its score is no worse than
  the current version's (a tie promotes: same quality, fresher data). A worse version is still
  registered, not promoted, so it can be inspected or promoted by hand; the outcome names the
  score that decided (``metric``, ``decided_by``), and says so and why.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from translate.checkpoint import load_checkpoint
from translate.class_maps import PALETTE_FILE, Palette, save_palette
from translate.errors import ConfigError
from translate.predictor import Predictor

from ..store import ModelStore, PromotionConflict

if TYPE_CHECKING:  # torch: not when the CLI builds its parsers (translate predict/serve start without it)
    from translate.task_score import Score

DEFAULT_STEPS = 200


def trainer(method: str):
    """The trainer that fine-tunes checkpoints of ``method`` on uploaded pairs (training's registry)."""
    import training  # lazy: torch, only when a job runs

    found = training.method(method)
    if not found.retrain_on_pairs:
        supported = sorted(n for n, m in training.methods().items() if m.retrain_on_pairs)
        raise ConfigError("method", f"retraining supports {supported} models, not {method}")
    return found


def fine_tune_and_decide(store: ModelStore, job: dict, record: Callable[..., object], progress: bool = False,
                         threads: int = 0) -> dict:
    """Fine-tune, evaluate, register and decide for the job record ``job`` (keys used: id, name,
    base_version, steps, data_dir, data, run); returns the outcome.

    ``record(**fields)`` updates the job's record as the phases change (evaluate, register).
    """
    from training.loop import Trainer  # lazy: torch and the trainers, only in the job
    from translate.evaluate import evaluate  # lazy: torch
    from translate.metrics import METRIC_NAMES  # lazy: torch

    name, job_id, run = job["name"], job["id"], Path(job["run"])
    ckpt_path = store.checkpoint_path(name, job["base_version"])
    if ckpt_path is None:  # checked when the job was queued; a version's files can still go
        raise ConfigError("name", f"{name} {job['base_version']} has no training checkpoint to fine-tune from")
    ckpt = load_checkpoint(ckpt_path)
    method = trainer(ckpt["method"])
    config = method.config_class.from_dict({k: v for k, v in ckpt["config"].items() if k != "method"})
    steps = job["steps"]
    palette = None  # the palette the checkpoint's run scored its targets' class maps with, where it had one
    if ckpt.get("palette"):
        run.mkdir(parents=True, exist_ok=True)
        palette = save_palette(Palette.from_json(ckpt["palette"], str(ckpt_path)), run / PALETTE_FILE)
    config = dataclasses.replace(
        config, data=job["data_dir"], out=str(run), init_from=str(ckpt_path), steps=steps, workers=0, device="auto",
        progress=progress, export=True, strict_data=True, time_limit=0.0, log_every=1, val_every=0,
        sample_every=steps, checkpoint_every=steps, keep_checkpoints=1, palette=str(palette or ""))
    Trainer(method, config).fit()

    record(phase="evaluate", progress={"step": steps, "total": steps})
    current = store.current(name)  # what serves now (normally the version we started from)
    split = job["data"]["eval_split"]

    def score(model: Path) -> tuple[Score, dict, int]:
        res = evaluate(Predictor(model, threads=threads), job["data_dir"], split=split, progress=progress,
                       palette=str(palette) if palette else None)
        found = {k: res[k] for k in METRIC_NAMES}
        if "class_map" in res:
            found.update({k: res["class_map"][k] for k in ("pixel_accuracy", "mean_class_accuracy", "mean_iou")})
        return held_out_score(found), found, res["count"]

    (new_score, new, count), (cur_score, cur, _) = score(run / "model.onnx"), score(store.model_path(name, current))
    promote = not cur_score.better_than(new_score)
    metric = new_score.name

    record(phase="register")
    evaluation = {"metric": metric, "decided_by": decided_by(new_score), "split": split,
                  "held_out": job["data"]["held_out"], "count": count,
                  "compared_with": {"version": current, "metrics": cur}, "promoted": promote}
    meta = {"source": "retrain", "job_id": job_id, "base_version": job["base_version"], "steps": steps,
            "data": job["data"], "metrics": new, "evaluation": evaluation}
    version = store.register(name, run / "model.onnx", meta=meta, checkpoint=run / "checkpoints" / "latest.pt")
    conflict = ""
    if promote:
        try:  # only over the version it was compared with: a promotion made during the job wins
            store.promote(name, version, expected=current)
        except PromotionConflict:
            promote, conflict = False, f"; the promoted version changed during the job, so {version} was not promoted"
    # the version now holds the model and the weights to fine-tune from: the run's copies (the full training
    # state with optimizers, hundreds of MB for a 256 px Pix2Pix) would only fill the disk job after job
    shutil.rmtree(run / "checkpoints", ignore_errors=True)
    (run / "model.onnx").unlink(missing_ok=True)
    verdict = "no worse than" if promote else "worse than"
    reason = (f"decided by {decided_by(new_score)}: held-out {metric} {new_score.value:.4f} (new) vs "
              f"{cur_score.value:.4f} ({current}) on {count} pairs of '{split}': {verdict} the current version, "
              + (f"{version} promoted" if promote else f"{version} registered but not promoted; {current} stays")
              + conflict)
    return {"promoted": promote, "new_version": version, "current_version": store.current(name),
            "compared_with": current, "metric": metric, "decided_by": decided_by(new_score),
            "new_metric": new_score.value, "current_metric": cur_score.value,
            "new_metrics": new, "current_metrics": cur, "eval_split": split, "eval_count": count,
            "reason": reason}


def held_out_score(metrics: dict[str, Any]) -> Score:
    """The task's score among a version's held-out metrics (:func:`translate.evaluate.evaluate`'s): the class IoU
    where its outputs were scored as class maps, else mean L1, the order of :func:`translate.task_score.task_score`."""
    from translate.task_score import Score  # lazy: torch
    if "mean_iou" in metrics:
        return Score("mean_iou", metrics["mean_iou"], higher_is_better=True)
    return Score("l1", metrics["l1"], higher_is_better=False)


def decided_by(score: Score) -> str:
    """What decided a promotion, in words."""
    what = "class IoU of the outputs' class maps" if score.name == "mean_iou" else "mean L1 on [-1, 1]"
    return f"{score.name} ({what}; {'higher' if score.higher_is_better else 'lower'} is better)"
