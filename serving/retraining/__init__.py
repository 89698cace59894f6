"""Retraining on new paired data: validate an upload, fine-tune the current version from its
checkpoint as a background job, score old and new on the same held-out pairs, register the
new version and promote it only if it is no worse.

Three modules, one per concern (import them directly; this package re-exports nothing):

- :mod:`serving.retraining.upload`: a zip or a folder of pairs -> an aligned data set under
  the store (limits, path safety, held-out split); nothing is written for a refused upload.
- :mod:`serving.retraining.jobs`: the job queue and its worker: job records on disk, the
  heartbeat and stale detection, starting a job in a thread or a detached Ray actor,
  ``submit_from_zip`` (the service), ``run_retrain`` (the CLI), ``run_job``, ``job_status``,
  ``wait``.
- :mod:`serving.retraining.promotion`: the policy: fine-tune from the current version,
  evaluate old and new on the held-out pairs, register, promote only if no worse.

Files under the store root (hidden, so they are not model names)::

    .data/NAME-JOB/{train,val,test}/   the validated upload (upload); kept for the newest KEEP_UPLOADS finished
                                       jobs of each model, older ones deleted as a job ends (jobs)
    .runs/NAME-JOB/                    the fine-tuning run (config, metrics.jsonl, samples; its checkpoint
                                       and model.onnx are deleted once registered: the version has them)
    .jobs/JOB.json                     the job record, written atomically by the job's worker (jobs)
    .jobs/JOB.alive                    touched every HEARTBEAT_S by the worker while the job runs (jobs)
"""
