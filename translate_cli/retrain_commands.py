"""`translate retrain NAME --data DIR`: fine-tune a stored model on new pairs, promote it if no worse by the task's
score."""
from __future__ import annotations

import contextlib
import json
import sys

from serving.store import ModelStore
from translate.options import add_arguments, given


def _cmd_retrain(args) -> None:
    from serving.retraining.jobs import RetrainOptions, run_retrain  # lazy: numpy

    options = RetrainOptions(**given(args, RetrainOptions))
    with contextlib.redirect_stdout(sys.stderr):  # training's messages; stdout is the outcome JSON alone
        status = run_retrain(ModelStore(args.store), args.name, args.data, steps=options.steps,
                             progress=not options.quiet)
    print(json.dumps({"job_id": status["id"], **status["outcome"]}, indent=2))


def register(subparsers) -> None:
    from serving.retraining.jobs import RetrainOptions  # lazy: numpy
    from serving.retraining.upload import HOLDOUT_FRACTION  # lazy: PIL

    p = subparsers.add_parser(
        "retrain", help="fine-tune a stored model on new paired data; promote it if no worse (held-out class IoU where "
             "the model's run had a palette, else L1)",
        description="Fine-tune the current version of NAME from its checkpoint on DIR (aligned A|B pairs, flat "
                    "or in train/ [val/ test/]), score old and new on the held-out pairs (DIR's test/ or val/, "
                    f"else a fixed {HOLDOUT_FRACTION:.0%} of its pairs), register the new version and promote it "
                    "if its task score is no worse: the class IoU of its outputs' class maps where the model's "
                    "training run had a palette, else L1. Prints the outcome as JSON, the score that decided "
                    "under 'decided_by'.")
    p.add_argument("name", help="model name in the store")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of aligned A|B pairs")
    p.add_argument("--store", metavar="DIR|URL", help="model store: a folder or s3://BUCKET/PREFIX "
                                                      "(default: $TRANSLATE_STORE or ./models)")
    add_arguments(p, RetrainOptions)
    p.set_defaults(func=_cmd_retrain)
