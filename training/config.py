"""The trainers' configuration dataclasses (flags come from them through translate.options).

Every field becomes ``--field-name``; its help text is the field's ``help`` metadata.
The resolved config is written to the run directory (``config.json``) before step one.

Presets: a trainer's config class lists, in ``presets``, the tested settings of built-in data
sets (a :class:`Preset` each, named for the set). When the config is made, the preset of its
data (``--data ring8``, or a folder whose ``dataset.json`` names a built-in kind) fills the
options the user left unset, then the plain defaults fill the rest; ``--preset NAME`` asks for
one by name, ``--preset none`` for none. ``config.json`` records the preset and every value.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from translate.data import DIRECTIONS, PREPROCESS
from translate.datasets import dataset_kind
from translate.diffaugment import parse_policy
from translate.errors import ConfigError
from translate.losses import ALIASES, OBJECTIVE_NAMES, ObjectiveSettings, get_objective
from translate.networks import D_NAMES, parse_generator_name
from translate.object_storage import data_path, is_url
from translate.options import opt, plain_default

from .speed import resolve_amp, resolve_channels_last

CONFIG_FORMAT = 2  # 2: objectives from one table, None for "auto"
NO_PRESET = "none"

T = TypeVar("T")


def resolved(value: T | None) -> T:
    """An "auto" or preset option's value (a field typed ``X | None``) once the config has resolved it: in
    ``__post_init__``, or ``resolve_speed`` for the speed options. Reading one before is a bug, raised here."""
    if value is None:
        raise RuntimeError("an option read before the config resolved it")
    return value


@dataclass(frozen=True)
class Preset:
    """A built-in data set's tested settings for one trainer, applied to the options left unset.

    ``values`` hold for every objective; ``by_objective`` adds the settings tested with each
    objective (``gan_mode``, by its own name: an alias such as ``vanilla`` reads its objective's) on top.
    ``source`` says where the results they gave are written."""

    values: dict[str, Any]
    by_objective: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = ""

    def settings(self, gan_mode: str | None = None) -> dict[str, Any]:
        mode = ALIASES.get(gan_mode or "", gan_mode or "")
        return {**self.values, **self.by_objective.get(mode, {})}

    def fields(self) -> set[str]:
        return set(self.values).union(*self.by_objective.values())


@dataclass
class TrainConfig:
    """What every trainer shares: data, schedule length, device, logging, checkpoints."""

    data: str = opt("", "dataset folder, or an object-storage prefix s3://BUCKET/PREFIX (see `translate data make` "
                    "for built-in sets)")
    data_cache_gb: float = opt(0.0, "with --data in object storage: keep up to this many GB of its images on each "
                               "node's disk ($TRANSLATE_CACHE/data) instead of fetching them every epoch; 0: no cache")
    out: str = opt("", "run directory, or an object-storage prefix s3://BUCKET/PREFIX (written locally, uploaded at "
                   "each checkpoint) (default: runs/<method>-<dataset>-NNN)")
    # a trainer's preset may set these: None until __post_init__ (read them through resolved())
    steps: int | None = opt(0, "total optimizer steps (overrides --epochs when > 0)")
    epochs: int = opt(200, "total epochs (the reference's 100 constant + 100 decaying); --steps overrides")
    decay_fraction: float | None = opt(0.5, "fraction of the run over which the learning rate decays linearly to 0")
    batch_size: int | None = opt(1, "images per step", preset=True)
    device: str = opt("auto", "where to train", choices=("auto", "cpu", "cuda"))
    amp: bool | None = opt(None, "bf16 autocast (auto: on for CUDA; for pix2pix and cyclegan also on CPUs with "
                           "native bf16, AVX512-BF16 or AMX); losses and the exported model stay float32")
    compile: bool = opt(False, "torch.compile the networks (slow first steps; see BENCHMARKS.md)")
    workers: int = opt(2, "data loading worker processes (0: load in the main process)")
    seed: int = opt(0, "seed for weights, data order and augmentation")
    log_every: int = opt(10, "write losses to metrics.jsonl / TensorBoard every N steps")
    val_every: int = opt(200, "validate every N steps (L1, PSNR, SSIM and the task's score: class IoU with a "
                         "palette, else L1), keeping the best checkpoint by the score; 0 = only at the end")
    sample_every: int = opt(200, "write a sample grid every N steps")
    checkpoint_every: int = opt(500, "write a checkpoint every N steps (and always at the end)")
    keep_checkpoints: int = opt(3, "numbered checkpoints to keep besides latest.pt")
    val_fraction: float = opt(0.05, "share of train held out for validation when DIR has no val split")
    max_val_images: int = opt(64, "validate on at most this many images")
    time_limit: float = opt(0.0, "stop cleanly (with a checkpoint) after this many minutes; 0 = no limit")
    strict_data: bool = opt(False, "stop at the first unreadable image instead of skipping it")
    export: bool = opt(True, "export the generator to RUN/model.onnx at the end")
    init_from: str = opt("", "start from the networks of this checkpoint or run directory (fine-tuning; "
                         "optimizers and schedule start fresh)")
    progress: bool = opt(True, "show a progress bar")
    processes: int = opt(1, "training processes, data-parallel on Ray Train: each takes --batch-size samples a "
                         "step, so the global batch is processes x batch size (--workers is the data loaders'); "
                         "a resume may change it")
    address: str | None = opt(None, "the Ray cluster the processes run on (HOST:PORT, or 'auto' for the one this "
                              "machine belongs to); default: a local Ray started for the run")
    cpus_per_process: float | None = opt(None, "CPUs each process reserves, and its torch threads (auto: this "
                                         "machine's CPUs shared between the processes; 1 on a cluster)")
    gpus_per_process: float | None = opt(None, "GPUs each process reserves (auto: 1 when CUDA is there and --device "
                                         "allows it, else 0); NCCL with GPUs, gloo without")
    sync_batchnorm: bool = opt(False, "batch norm statistics over every process's batch (SyncBatchNorm; GPUs only); "
                               "without it each process normalises by its own batch")
    preset: str | None = opt(None, "tested settings of a built-in data set for the options left unset: a preset's "
                             "name, or 'none' (auto: the preset of --data, when it has one)")

    method: typing.ClassVar[str] = ""
    presets: typing.ClassVar[dict[str, Preset]] = {}  # by the name of the built-in data set they were tested on

    def __post_init__(self) -> None:
        """Fill the options left unset (None) from the preset, then from the plain defaults."""
        name = self.preset if self.preset is not None else self.data_preset()
        if name != NO_PRESET and name not in self.presets:
            known = ", ".join([*self.presets, NO_PRESET])
            raise ConfigError("preset", f"no preset {name!r} for {self.method or 'this trainer'} (known: {known})")
        self.preset = name
        chosen = self.presets[name].settings(getattr(self, "gan_mode", None)) if name != NO_PRESET else {}
        self.from_preset: set[str] = set()  # the options the preset filled (not a field: errors name it)
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is None:
                has_plain, plain = plain_default(f)
                if f.name in chosen:
                    setattr(self, f.name, chosen[f.name])
                    self.from_preset.add(f.name)
                elif has_plain:
                    setattr(self, f.name, plain)

    def data_preset(self) -> str:
        """The preset that goes with ``data``: a built-in set's name, or the kind a data set folder's
        ``dataset.json`` records; ``"none"`` when there is none."""
        if self.data in self.presets:
            return self.data
        kind = dataset_kind(self.data) if self.data and (is_url(self.data) or Path(self.data).is_dir()) else None
        return kind if kind in self.presets else NO_PRESET

    @classmethod
    def help_notes(cls) -> dict[str, str]:
        """For ``--help``: what each preset sets, by field (``ring8, grid25: 256``)."""
        notes: dict[str, dict[str, list[str]]] = {}  # field -> value text -> preset names
        for name, p in cls.presets.items():
            for f in p.fields():
                if f in p.values:
                    text = _show(p.values[f])
                else:  # by objective: "minimax, hinge 0.001, wgangp 0.002"
                    modes: dict[str, list[str]] = {}
                    for m, v in p.by_objective.items():
                        if f in v:
                            modes.setdefault(_show(v[f]), []).append(m)
                    text = ", ".join(f"{', '.join(ms)} {v}" for v, ms in modes.items())
                notes.setdefault(f, {}).setdefault(text, []).append(name)
        out = {f: "; ".join(f"preset {', '.join(names)}: {text}" for text, names in by_text.items())
               for f, by_text in notes.items()}
        if cls.presets:
            out["preset"] = "presets: " + ", ".join(cls.presets)
        return out

    def resolve_speed(self, device, amp_on_cpu: bool) -> None:
        """Turn the "auto" (None) speed settings into what this run uses on ``device`` (training/speed.py), so
        config.json records them; ``amp_on_cpu``: the method was measured faster in bf16 on CPUs that have it."""
        self.amp = resolve_amp(self.amp, device, cpu=amp_on_cpu)

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("data", "a dataset folder is required (--data DIR)")
        for name in ("batch_size",):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if resolved(self.steps) < 0 or self.epochs < 0:
            raise ConfigError("steps", "steps and epochs must be >= 0")
        decay_fraction = resolved(self.decay_fraction)
        if not 0.0 <= decay_fraction <= 1.0:
            raise ConfigError("decay_fraction", f"must be in [0, 1], got {decay_fraction}")
        if self.data_cache_gb < 0:
            raise ConfigError("data_cache_gb", f"must be >= 0, got {self.data_cache_gb}")
        if self.workers < 0:
            raise ConfigError("workers", f"must be >= 0, got {self.workers}")
        if self.processes < 1:
            raise ConfigError("processes", f"must be >= 1, got {self.processes}")

    def data_root(self):
        """``data`` as the data code reads it: a folder, or an object-storage prefix with this run's cache (listed
        once for the config: every data set of the run shares the listing)."""
        key = (self.data, self.data_cache_gb)
        if getattr(self, "_data_root", (None,))[0] != key:
            self._data_root = (key, data_path(self.data, int(self.data_cache_gb * 2**30)))
        return self._data_root[1]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "config_format": CONFIG_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names - {"method", "config_format"}
        if unknown:
            raise ConfigError(sorted(unknown)[0], f"unknown field for {cls.method} config")
        if "config_format" not in d:
            d = cls.upgrade(d)
        if "preset" not in d:  # written before presets: its missing fields had their plain defaults
            d = {**d, "preset": NO_PRESET}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """A config written before ``config_format`` 2, as this version reads it (same run, same math)."""
        return d

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _show(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


OPTIMIZERS = ("adam", "rmsprop")


@dataclass
class AdversarialConfig(TrainConfig):
    """The adversarial objective and its training settings, shared by every GAN trainer.

    Options left at None ("auto") take the objective's defaults (translate.losses.OBJECTIVES) when the
    config is made, so config.json records the values the run used."""

    gan_mode: str = opt("vanilla", "adversarial objective (vanilla = nonsaturating)", choices=OBJECTIVE_NAMES)
    optimizer: str | None = opt(None, "optimizer of G and D (auto: the objective's: rmsprop for wgan, else adam)",
                                choices=OPTIMIZERS)
    lr: float | None = opt(None, "learning rate of G and D (auto: the objective's: 2e-4; wgan 5e-5, wgangp 1e-4)")
    beta1: float | None = opt(None, "Adam beta1 (auto: the objective's: 0.5; wgangp 0)")
    beta2: float | None = opt(None, "Adam beta2 (auto: the objective's: 0.999; wgangp 0.9)")
    n_critic: int | None = opt(None, "D updates per G update (auto: the objective's: 5 for wgan and wgangp, else 1)")
    clip: float | None = opt(None, "clip D's weights to [-clip, clip] after each D update, 0 = off "
                             "(auto: the objective's: 0.01 for wgan, else off)")
    lambda_gp: float | None = opt(None, "weight of the gradient penalty on D, 0 = off "
                                  "(auto: the objective's: 10 for wgangp, else off)")
    lr_d: float | None = opt(None, "D's own learning rate (two time-scale updates, TTUR; auto: --lr)")
    ema_decay: float | None = opt(0.0, "keep an exponential moving average of G's weights and normalisation "
                                  "statistics with this decay (e.g. 0.999, warmed up over the first updates; 0 = "
                                  "off); the average is what is sampled, validated and exported", preset=True)

    def __post_init__(self) -> None:
        try:
            o = self.objective_settings()
        except ValueError as e:
            raise ConfigError("gan_mode", str(e)) from None
        super().__post_init__()  # the preset first: it may set the optimizer's options for this objective
        if self.optimizer is None:
            self.optimizer = o.optimizer
        # Adam asked for with an objective whose paper used another optimizer: the usual GAN betas
        betas = o.betas if o.optimizer == "adam" else (0.5, 0.999)
        for name, auto in (("lr", o.lr), ("beta1", betas[0]), ("beta2", betas[1]), ("n_critic", o.n_critic),
                           ("clip", o.clip), ("lambda_gp", o.gradient_penalty)):
            if getattr(self, name) is None:
                setattr(self, name, auto)
        if self.lr_d is None:
            self.lr_d = self.lr

    def objective_settings(self) -> ObjectiveSettings:
        """The training settings of the objective ``gan_mode`` names (a trainer with objectives of its own extends
        the lookup); ValueError for a name it does not know."""
        return get_objective(self.gan_mode)

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        # before one objective table: clipping and the penalty applied only in wgan / wgangp whatever their
        # values, and the image-to-image trainers always took one Adam step of D per step of G
        d = dict(super().upgrade(d))
        o = get_objective(d.get("gan_mode", cls.__dataclass_fields__["gan_mode"].default))
        if not o.clip:
            d["clip"] = 0.0
        if not o.gradient_penalty:
            d["lambda_gp"] = 0.0
        d.setdefault("optimizer", "adam")
        d.setdefault("n_critic", 1)
        return d

    def validate(self) -> None:
        super().validate()
        for name in ("lr", "lr_d", "n_critic"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
        for name in ("clip", "lambda_gp"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= resolved(self.ema_decay) < 1.0:
            raise ConfigError("ema_decay", f"must be in [0, 1), got {self.ema_decay}")


@dataclass
class TranslationConfig(AdversarialConfig):
    """What the image-to-image trainers (Pix2Pix, CycleGAN) share: data shaping, networks, the objective.
    Defaults are Pix2Pix's (the reference code's); a method re-defaults with ``redefault``."""

    direction: str = opt("AtoB", "translate A to B, or B to A", choices=DIRECTIONS)
    size: int | None = opt(256, "crop size the networks train on (--crop_size in the reference)", preset=True)
    load_size: int | None = opt(None, "resize to this before the random crop (auto: size * 286/256)")
    preprocess: str = opt("resize_and_crop", "how training images are scaled and cropped", choices=PREPROCESS)
    flip: bool = opt(True, "random horizontal flips (same for A and B)")
    input_nc: int = opt(3, "input channels (1 = grayscale, 3 = RGB)", choices=(1, 3))
    output_nc: int = opt(3, "output channels (1 = grayscale, 3 = RGB)", choices=(1, 3))
    netG: str | None = opt("unet_256", "generator: unet_256, unet_128, unet_<N> (any power of two >= 32), "
                           "resnet_9blocks, resnet_6blocks, resnet_<K>blocks", preset=True)
    netD: str = opt("basic", "discriminator: basic = 70x70 PatchGAN, n_layers, pixel", choices=D_NAMES)
    n_layers_D: int = opt(3, "discriminator depth when netD = n_layers")
    ngf: int | None = opt(64, "generator filters in the last conv layer", preset=True)
    ndf: int | None = opt(64, "discriminator filters in the first conv layer", preset=True)
    norm: str | None = opt("batch", "normalisation layers", choices=("batch", "instance", "none"), preset=True)
    dropout: bool = opt(True, "dropout in the generator's decoder (train time only)")
    init_type: str = opt("normal", "weight init", choices=("normal", "xavier", "kaiming", "orthogonal"))
    init_gain: float = opt(0.02, "scale of the weight init")
    spectral_norm: bool = opt(False, "spectral normalisation on the discriminator's convolutions")
    num_d: int = opt(1, "discriminators, the same --netD at 1, 1/2, 1/4... of the image (multi-scale, pix2pixHD); "
                     "their objectives are summed")
    feature_matching: float = opt(0.0, "weight of the feature-matching loss: L1 between D's features of real and "
                                  "generated images (pix2pixHD: 10; 0 = off)")
    diffaugment: str = opt("", "DiffAugment policy before the discriminator, e.g. 'color,translation,cutout' "
                           "(Zhao et al. 2020; differentiable, on real and generated images; empty = off)")
    channels_last: bool | None = opt(None, "channels-last memory layout for the networks (same math; auto: on "
                                     "CUDA for U-Nets, off on CPU, where it measured slower: BENCHMARKS.md)")
    palette: str = opt("", "the targets' classes when they are colour-coded class maps (validation then scores their "
                       "class IoU and keeps the best checkpoint by it): a palette JSON file, 'auto' to find them from "
                       "the training targets, or empty for DIR/palette.json when it is the target side's (else L1)")
    test_norm: str = opt("auto", "batch norm at test time: 'per-image' statistics (what the reference does at "
                         "batch size 1 without --eval), 'running' statistics, or 'auto' (per-image when "
                         "batch_size is 1)", choices=("auto", "per-image", "running"))

    def __post_init__(self) -> None:
        super().__post_init__()
        default_load_size(self)

    def resolve_speed(self, device, amp_on_cpu: bool) -> None:
        super().resolve_speed(device, amp_on_cpu)
        self.channels_last = resolve_channels_last(self.channels_last, resolved(self.netG), device)

    def validate(self) -> None:
        super().validate()
        check_image_options(self)
        if self.num_d < 1:
            raise ConfigError("num_d", f"must be >= 1, got {self.num_d}")
        if self.feature_matching < 0:
            raise ConfigError("feature_matching", f"must be >= 0, got {self.feature_matching}")
        try:
            parse_policy(self.diffaugment)
        except ValueError as e:
            raise ConfigError("diffaugment", str(e)) from None

    def check_size(self, size_multiple: int) -> None:
        """A ConfigError unless ``size`` fits a generator that needs a multiple of ``size_multiple``."""
        check_size(self, size_multiple)

    @property
    def batch_stats(self) -> bool:
        """Batch norm at test time from per-image statistics (exported as such), else running statistics."""
        if self.norm != "batch":
            return False
        if self.test_norm == "auto":
            return self.batch_size == 1
        return self.test_norm == "per-image"


@dataclass
class SegmenterConfig(TrainConfig):
    """The segmenter of the FCN-score protocol (``translate train segmenter``): real photos to the classes of
    their label maps, per-pixel cross-entropy. No adversary, so none of the GAN options."""

    direction: str = opt("AtoB", "which side is the photo: AtoB = A is the photo and B its label map, BtoA the "
                         "reverse", choices=DIRECTIONS)
    palette: str = opt("", "the label maps' classes: a palette JSON file, 'auto' to find them from the training "
                       "label maps, or empty for DIR/palette.json when the data set ships one (else auto)")
    size: int | None = opt(256, "crop size the segmenter trains on", preset=True)
    load_size: int | None = opt(None, "resize to this before the random crop (auto: size * 286/256)")
    preprocess: str = opt("resize_and_crop", "how training images are scaled and cropped", choices=PREPROCESS)
    flip: bool = opt(True, "random horizontal flips (same for photo and labels)")
    input_nc: int = opt(3, "photo channels (1 = grayscale, 3 = RGB)", choices=(1, 3))
    output_nc: int = opt(3, "label map channels as stored (RGB colours of the palette)", choices=(3,))
    netG: str | None = opt("unet_256", "the segmenter's U-Net: unet_<N> (any power of two >= 32)", preset=True)
    ngf: int | None = opt(32, "filters in the U-Net's last conv layer", preset=True)
    norm: str = opt("instance", "normalisation layers", choices=("batch", "instance", "none"))
    dropout: bool = False  # a generator option the U-Net builder takes; a segmenter trains without
    init_type: str = opt("normal", "weight init", choices=("normal", "xavier", "kaiming", "orthogonal"))
    init_gain: float = opt(0.02, "scale of the weight init")
    lr: float = opt(1e-3, "Adam learning rate")
    channels_last: bool | None = opt(None, "channels-last memory layout (same math; auto: on CUDA, off on CPU)")

    # the built-in maps set at the size its translators train (Pix2Pix's preset): a small U-Net learns its classes
    presets: typing.ClassVar[dict[str, Preset]] = {
        "maps": Preset(dict(size=128, netG="unet_128", ngf=16, batch_size=4), source="tests/training/test_segmenter.py"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        default_load_size(self)

    def resolve_speed(self, device, amp_on_cpu: bool) -> None:
        super().resolve_speed(device, amp_on_cpu)
        self.channels_last = resolve_channels_last(self.channels_last, resolved(self.netG), device)

    def validate(self) -> None:
        super().validate()
        check_image_options(self)
        if not resolved(self.netG).startswith("unet"):
            raise ConfigError("netG", f"the segmenter is a U-Net (unet_<N>), got {self.netG!r}")
        if self.lr <= 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr}")

    def check_size(self, size_multiple: int) -> None:
        """As a translator's U-Net: the same rule and advice."""
        check_size(self, size_multiple)

    @property
    def batch_stats(self) -> bool:
        return self.norm == "batch" and self.batch_size == 1


def default_load_size(c: TranslationConfig | SegmenterConfig) -> None:
    """``load_size`` at auto (None, or 0 in configs written before None meant auto): ``size`` * 286/256."""
    if not c.load_size:
        c.load_size = int(round(resolved(c.size) * 286 / 256))


def check_image_options(c: TranslationConfig | SegmenterConfig) -> None:
    """A ConfigError naming the field unless ``size`` is positive, ``netG`` names a generator and ``load_size``
    (what images are resized to before the crop) is at least ``size``."""
    size, load_size = resolved(c.size), resolved(c.load_size)
    if size < 1:
        raise ConfigError("size", f"must be positive, got {size}")
    try:
        parse_generator_name(resolved(c.netG))
    except ValueError as e:
        raise ConfigError("netG", str(e)) from None
    if load_size < size:
        raise ConfigError("load_size", f"must be >= size ({size}), got {load_size}")


def check_size(c: TranslationConfig | SegmenterConfig, size_multiple: int) -> None:
    """A ConfigError unless ``size`` fits a generator that needs a multiple of ``size_multiple``; it names
    where ``netG`` came from (a preset picks one the user never typed) and what would fit."""
    size, netG = resolved(c.size), resolved(c.netG)
    if size % size_multiple == 0:
        return
    origin = f" (the {c.preset} preset's generator)" if "netG" in getattr(c, "from_preset", ()) else ""
    power_of_two = size >= 32 and size & (size - 1) == 0
    fix = f"--netG unet_{size} (a U-Net for {size} px) or " if netG.startswith("unet") and power_of_two else ""
    raise ConfigError("size", f"{netG}{origin} needs a multiple of {size_multiple}, got {size}: "
                              f"pass {fix}a --size that is a multiple of {size_multiple}")
