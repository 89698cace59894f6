"""Running a method to completion: :class:`Trainer`, the one entry point of a training run.

A Trainer opens the run (a new run directory, or a resumed one with the overrides a resume may
make) and runs the shared loop (``training.process_loop``) in this process; when the config asks
for more than one process and no :class:`training.world.World` is given, it starts them on Ray
Train instead (``training.distributed``, which runs that loop in each) and follows them. The
command line, the retraining service and scripts all train through it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from translate.object_storage import is_url

from . import distributed
from .config import TrainConfig, resolved
from .method_base import Method
from .process_loop import ProcessLoop, open_run
from .world import World


class Trainer(ProcessLoop):
    """Runs a method to completion, from scratch or from a run directory's latest checkpoint: here, or in
    ``config.processes`` processes on Ray Train."""

    def __init__(self, method_class: type[Method], config: TrainConfig, resume: str | os.PathLike | None = None,
                 overrides: dict[str, Any] | None = None, world: World | None = None):
        """``world``: this process's place in a data-parallel run it is one of (a script's own process group).
        A config with ``processes`` > 1 and no world makes a launcher: :meth:`fit` starts the processes."""
        self.overrides = dict(overrides or {})
        run = open_run(method_class, config, resume, self.overrides)
        self.launcher = run.config.processes > 1 and world is None
        if not self.launcher:
            super().__init__(method_class, run, world)
            return
        # fit() runs the processes; nothing is built here
        self.method_class, self.world = method_class, world
        self.config, self.run_dir, self.checkpoint, self.step = run.config, run.run_dir, run.checkpoint, run.step

    def fit(self, stop_after: int | None = None) -> Path:
        """Train to the configured length; ``stop_after`` (one process) stops cleanly, with a checkpoint, after that
        many steps in this call, as an interruption would."""
        if self.launcher:
            return self._launch()
        return super().fit(stop_after)

    def _launch(self) -> Path:
        c = self.config
        if not is_url(c.out):
            c.out = str(self.run_dir.resolve())
        for name in ("data", "init_from"):  # the processes run in other working directories
            value = getattr(c, name)
            if value and Path(value).exists():
                setattr(c, name, str(Path(value).resolve()))
        steps = resolved(c.steps)
        total = steps if steps > 0 else None
        return distributed.fit(self.method_class.name, c, self.run_dir.resolve(), resume=self.checkpoint is not None,
                               overrides=self.overrides, total=total, start=self.step)


__all__ = ["Trainer"]
