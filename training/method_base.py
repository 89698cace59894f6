"""What a training method provides to the shared loop: the :class:`Method` base class.

A method brings its networks, optimizers, losses and ``step``; the loop (``training.process_loop``)
owns everything else. DESIGN.md ("Adding a trainer") is the recipe.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from translate import metrics as qmetrics
from translate.checkpoint import GeneratorSpec
from translate.class_maps import Palette
from translate.ema import averaged_copy, ema_update
from translate.export import export_run
from translate.task_score import Score, task_score

from .config import TrainConfig, resolved
from .speed import compile_networks


@dataclass
class Validation:
    """What one validation found: its metrics (names without the 'val/' prefix) and the task's score, which the
    loop keeps the best checkpoint by (None: the method has no targets to score, and the run keeps no best)."""

    metrics: dict[str, float] = field(default_factory=dict)
    score: Score | None = None


class Method:
    """Base class of a training method: its networks, losses and ``step``.

    Subclasses implement :meth:`datasets`, :meth:`step`, :meth:`generators`, :meth:`eval_generators`,
    :meth:`sample_columns` and, for the test suite, :meth:`tiny_config` (and ``exact_settings``); they keep
    their networks with :meth:`place` and their optimizers in ``optimizers`` (dicts by paper name). Methods
    without paired targets override :meth:`validate` (or :meth:`validation`, to give a score), :meth:`sample_grid`
    and :meth:`export`. A method whose
    networks take their sizes from the data sets ``sized_by_batch`` and builds them in :meth:`size_networks`.
    Datasets are indexed with ``(index, seed)`` tuples from :class:`translate.data.EpochSampler` and return
    dicts of tensors.
    """

    name = ""  # the method's one name: CLI subcommand, run directory prefix, config.json and checkpoint tag
    config_class: type[TrainConfig] = TrainConfig
    retrain_on_pairs = False  # the service can fine-tune it on uploaded aligned pairs and score it by L1
    amp_on_cpu = False  # auto AMP includes CPUs with native bf16 (measured faster for this method; see speed.py)
    sized_by_batch = False  # the loop calls size_networks(first batch) before it restores a checkpoint
    #: Overrides of :meth:`tiny_config` under which a step's math depends on its batch alone, in float32 (no dropout,
    #: no image pool, per-sample normalisation): the suite then holds two processes at batch b to one at batch 2b.
    #: None for a method whose step draws random numbers (a GAN's latents): two processes only have to complete.
    exact_settings: ClassVar[dict[str, Any] | None] = {}
    #: Whether a weight average (:meth:`keep_averages`) averages the networks' floating-point buffers (batch norm's
    #: running statistics) with their weights, or copies them from the trained network.
    average_buffers: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            cls.config_class.method = cls.name  # written once, here

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config = config
        self.device = device
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        config.resolve_speed(device, amp_on_cpu=self.amp_on_cpu)  # "auto" settings, once the device is known
        self.use_amp = bool(config.amp)
        self.steps_done = 0  # loop steps completed before the current one (set by the loop)
        #: the palette of the targets when they are class maps (set with the data sets): validation's score is then
        #: their class IoU, and checkpoints keep it for retraining's promotion gate
        self.palette: Palette | None = None
        self.averages: dict[str, str] = {}  # weight average's network name -> the network it averages
        self.ema_decay = 0.0

    # --- the network preamble every method shares
    def place(self, networks: dict[str, nn.Module], channels_last: bool = False) -> None:
        """Make ``networks`` this method's (by the names checkpoints, the data-parallel broadcast and
        ``--compile`` use): on the run's device, in channels-last memory layout when asked."""
        for net in networks.values():
            net.to(self.device)
            if channels_last:
                net.to(memory_format=torch.channels_last)
        self.networks.update(networks)

    def keep_averages(self, decay: float, *names: str) -> None:
        """With ``decay`` > 0 (``--ema-decay``), keep an exponential moving average (translate.ema) of each network
        named, as one more network of the method (``G`` -> ``G_ema``): checkpointed, restored and broadcast with the
        others, and started from its network by a fine-tuning run whose source kept none. The method calls
        :meth:`update_averages` after each update of those networks and samples, validates and exports
        :meth:`averaged`. Call it after :meth:`place`."""
        if decay <= 0:
            return
        self.ema_decay = decay
        for name in names:
            self.averages[f"{name}_ema"] = name
            self.networks[f"{name}_ema"] = averaged_copy(self.networks[name])

    def update_averages(self, num_updates: int) -> None:
        """Move each kept average toward its network; ``num_updates``: updates of the average before this one (its
        decay warms up over them, translate.ema.decay_at), counted from the steps done so a resume continues it."""
        for average, name in self.averages.items():
            ema_update(self.networks[average], self.networks[name], self.ema_decay, num_updates,
                       average_buffers=self.average_buffers)

    def averaged_name(self, name: str) -> str:
        """The name of the network that stands for ``name`` at test time: its average when kept, else itself."""
        return f"{name}_ema" if f"{name}_ema" in self.averages else name

    def averaged(self, name: str) -> nn.Module:
        """The network that stands for ``name`` at test time (samples, validation, export): its average when kept."""
        return self.networks[self.averaged_name(name)]

    def autocast(self):
        """bf16 autocast on the run's device when AMP is on; a no-op otherwise."""
        if self.use_amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def compile(self, **options) -> None:
        """``torch.compile`` the networks in place (``--compile``); their state dicts are unchanged."""
        compile_networks(self.networks, self.device, **options)

    # --- what a method provides
    @classmethod
    def tiny_config(cls, data: str, out: str, **overrides) -> TrainConfig:
        """The config the test suite trains this method with (tests/training/shared_checks.py): tiny networks,
        batches of a few images, CPU. ``data`` is a folder of small aligned pairs (a method with data of its own
        may ignore it); ``overrides`` (steps, logging, export...) win over the method's values."""
        raise NotImplementedError(f"{cls.__name__} gives no tiny_config: the suite cannot test it")

    def datasets(self) -> tuple[Dataset, Dataset]:
        """(train set, validation set); items are dicts of tensors."""
        raise NotImplementedError

    def size_networks(self, batch: dict) -> None:
        """For a method with ``sized_by_batch``: build (and :meth:`place`) the networks and their optimizers from
        the shapes of a first training batch (on the run's device). The loop calls it once, after
        :meth:`datasets` and before it compiles, joins a data-parallel world, restores a checkpoint or loads
        ``--init-from`` weights, so all of those find the networks built."""
        raise NotImplementedError

    def step(self, batch: dict) -> dict[str, float]:
        raise NotImplementedError

    def generators(self) -> dict[str, GeneratorSpec]:
        """The exportable generators by direction, e.g. {'AtoB': spec}."""
        raise NotImplementedError

    def eval_generators(self) -> dict[str, nn.Module]:
        """Test-time copies of the generators (as exported), made once per validation."""
        raise NotImplementedError

    def sample_columns(self, batch: dict, gens: dict[str, nn.Module]) -> list[torch.Tensor]:
        """Columns of the sample grid, e.g. [input, output, target] (NCHW in [-1, 1])."""
        raise NotImplementedError

    def validation_pairs(self, batch: dict, gens: dict[str, nn.Module]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(output, target) to score with L1/PSNR/SSIM, or None when the method has no targets."""
        return None

    def validation_batches(self, val_set: Dataset, max_images: int) -> Iterator[dict]:
        """The first ``max_images`` items of ``val_set`` in batches of the run's batch size, on the run's device."""
        n = min(dataset_size(val_set), max_images)
        batch_size = max(1, resolved(self.config.batch_size))
        loader = DataLoader(Subset(val_set, range(n)), batch_size=batch_size, shuffle=False, num_workers=0)
        for batch in loader:
            yield to_device(batch, self.device)

    @torch.no_grad()
    def validation(self, val_set: Dataset, max_images: int) -> Validation:
        """Validation metrics and the task's score (:func:`translate.task_score.task_score`: class IoU where the
        targets are class maps of :attr:`palette`, else L1). Default: L1/PSNR/SSIM and the score of the test-time
        generators' outputs against the targets of ``validation_pairs``; a method without them (or whose
        ``validation_pairs`` gives None) gives :meth:`validate`'s metrics and no score."""
        if type(self).validation_pairs is Method.validation_pairs:
            return Validation(self.validate(val_set, max_images))
        acc = qmetrics.MeanMetrics()
        gens = self.eval_generators()
        outputs, targets = [], []
        for batch in self.validation_batches(val_set, max_images):
            pair = self.validation_pairs(batch, gens)
            if pair is None:
                return Validation(self.validate(val_set, max_images))
            output, target = pair[0].float().clamp(-1, 1), pair[1].float()
            acc.update(output, target)
            outputs.append(output.cpu())
            targets.append(target.cpu())
        return scored(acc.compute(), outputs, targets, self.palette)

    @torch.no_grad()
    def validate(self, val_set: Dataset, max_images: int) -> dict[str, float]:
        """Validation metrics (without the 'val/' prefix) of a method without paired targets; default none."""
        return {}

    @torch.no_grad()
    def sample_grid(self, batch: dict) -> torch.Tensor:
        """The sample image (3, H, W) in [0, 1]. Default: one row per item of ``sample_columns``."""
        import torchvision.utils as vutils

        cols = [c.detach().float().cpu().clamp(-1, 1) for c in self.sample_columns(batch, self.eval_generators())]
        cols = [c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c for c in cols]
        rows = torch.stack(cols, dim=1).flatten(0, 1)  # n x cols, row-major
        return vutils.make_grid(rows, nrow=len(cols), padding=2, normalize=True, value_range=(-1, 1))

    def export(self, run_dir: Path, verbose: bool = True) -> None:
        """Write the run's deployable models at the end of training. Default: ONNX per generator."""
        export_run(run_dir, verbose=verbose)

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


def scored(metrics: dict[str, float], outputs: list[torch.Tensor], targets: list[torch.Tensor],
           palette: Palette | None = None) -> Validation:
    """``metrics`` with the task's score of the validation ``outputs`` against their ``targets`` beside them."""
    if not outputs:
        return Validation(metrics)
    score = task_score(torch.cat(outputs), torch.cat(targets), palette=palette)
    return Validation({**metrics, score.name: score.value}, score)


def dataset_size(dataset: Dataset) -> int:
    """The number of items of a method's data set, which is map-style (torch's ``Dataset`` type leaves
    ``__len__`` out, as iterable data sets have none)."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{type(dataset).__name__} has no length: a method's data sets are map-style")
    return len(dataset)


def to_device(batch: dict, device: torch.device) -> dict:
    """A batch's tensors on ``device`` (other values as they are)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


__all__ = ["Method", "Validation", "dataset_size", "scored", "to_device"]
