"""The promotion policy of a retraining job: fine-tune the current version from its checkpoint,
score old and new on the same held-out pairs, register the new version, promote it only if it
is no worse.

- **Fine-tune**: :class:`training.loop.Trainer` with the checkpoint's config, ``data`` = the
  upload, ``init_from`` = the current version's checkpoint (networks loaded, fresh optimizers
  and schedule), ``steps`` (default ``DEFAULT_STEPS``), export to ONNX at the end. The trainer
  comes from the checkpoint's method name (:func:`trainer`).
- **Evaluate** the current version's model and the new one with
  :func:`translate.evaluate.evaluate` on the same held-out pairs.
- **Register and decide**. The metric is mean L1 on the [-1, 1] scale (lower is better). The
  new version is promoted iff ``new L1 <= current L1`` (a tie promotes: same quality, fresher
  data). A worse version is still registered, not promoted, so it can be inspected or promoted
  by hand; the outcome says so and why.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable

from translate.checkpoint import load_checkpoint
from translate.errors import ConfigError
from translate.predictor import Predictor

from ..store import ModelStore, PromotionConflict

DEFAULT_STEPS = 200
METRIC = "l1"  # mean L1 on [-1, 1]; lower is better
# trainers that can fine-tune on paired data, by checkpoint method name
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
    config = dataclasses.replace(
        config, data=job["data_dir"], out=str(run), init_from=str(ckpt_path), steps=steps, workers=0, device="auto",
        progress=progress, export=True, strict_data=True, time_limit=0.0, log_every=1, val_every=0,
        sample_every=steps, checkpoint_every=steps, keep_checkpoints=1)
    Trainer(method, config).fit()

    record(phase="evaluate", progress={"step": steps, "total": steps})
    current = store.current(name)  # what serves now (normally the version we started from)
    split = job["data"]["eval_split"]

    def score(model: Path) -> tuple[dict, int]:
        res = evaluate(Predictor(model, threads=threads), job["data_dir"], split=split, progress=progress)
        return {k: res[k] for k in METRIC_NAMES}, res["count"]

    (new, count), (cur, _) = score(run / "model.onnx"), score(store.model_path(name, current))
    promote = new[METRIC] <= cur[METRIC]

    record(phase="register")
    evaluation = {"metric": METRIC, "split": split, "held_out": job["data"]["held_out"], "count": count,
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
    reason = (f"held-out {METRIC} {new[METRIC]:.4f} (new) vs {cur[METRIC]:.4f} ({current}) on {count} "
              f"pairs of '{split}': {verdict} the current version, "
              + (f"{version} promoted" if promote else f"{version} registered but not promoted; {current} stays")
              + conflict)
    return {"promoted": promote, "new_version": version, "current_version": store.current(name),
            "compared_with": current, "metric": METRIC, "new_metric": new[METRIC], "current_metric": cur[METRIC],
            "new_metrics": new, "current_metrics": cur, "eval_split": split, "eval_count": count,
            "reason": reason}
