"""The checks every registered method passes (``training.TRAINERS``), each on the method's own tiny config
(``Method.tiny_config``): every objective trains in an adversarial method, a resumed run is the run
that was never stopped, the run exports every generator, and two processes train the run of one
(tests/training/test_distributed.py, on Ray). The tests run them over :func:`registered`, so a new
method is tested by its registry line; tests/training/test_registry.py shows it with the toy methods."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import training
from training.config import AdversarialConfig
from training.loop import Trainer
from training.method_base import Method
from translate.checkpoint import load_checkpoint
from translate.generators import load_generator
from translate.losses import OBJECTIVES, get_objective
from translate.onnx_meta import decode_metadata
from translate.options import flag_names


def registered() -> list[str]:
    """The registered methods by name, in registry order."""
    return list(training.methods())


def adversarial() -> list[str]:
    """The registered methods trained against a discriminator (their config takes ``--gan-mode``)."""
    return [name for name, m in training.methods().items() if issubclass(m.config_class, AdversarialConfig)]


def objective_cases() -> list[tuple[str, str]]:
    """(method, objective) for every objective in every adversarial method."""
    return [(name, objective) for name in adversarial() for objective in OBJECTIVES]


def _rows(run: Path, key: str = "lr") -> list[dict[str, Any]]:
    """The metrics rows holding ``key`` (training rows by default), without the timing that varies by run."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "it_per_s"} for r in rows if key in r]


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """``a`` and ``b`` equal to the bit, through dicts, lists and tensors."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), (where, a.keys() ^ b.keys())
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def _built(method: type[Method], config) -> tuple[Method, torch.utils.data.Dataset]:
    """The method on CPU with its networks built, as the loop builds them, and its training set."""
    torch.manual_seed(0)
    m = method(config, torch.device("cpu"))
    train, _ = m.datasets()
    if m.sized_by_batch:
        m.size_networks(torch.utils.data.default_collate([train[i] for i in range(config.batch_size)]))
    return m, train


# ------------------------------------------------------------------ the checks
def check_objective(method: type[Method], name: str, data: Path, out: Path) -> None:
    """The objective ``name`` trains in ``method``: its optimizer and defaults, G's updates every n_critic D updates,
    its gradient penalty, D's clipped weights; six steps as the loop drives them, every loss finite."""
    o = get_objective(name)
    cfg = method.tiny_config(data, out, gan_mode=name, steps=6, val_every=0, sample_every=100, checkpoint_every=100,
                             log_every=1)
    # the objective's settings, unless overridden
    assert (cfg.optimizer, cfg.lr, cfg.n_critic, cfg.clip, cfg.lambda_gp) == (
        o.optimizer, o.lr, o.n_critic, o.clip, o.gradient_penalty)
    m, train = _built(method, cfg)
    assert {type(opt) for opt in m.optimizers.values()} == {torch.optim.RMSprop if o.optimizer == "rmsprop"
                                                           else torch.optim.Adam}
    G = next(n for k, n in m.networks.items() if k.startswith("G"))
    before = [p.detach().clone() for p in G.parameters()]
    b = cfg.batch_size
    for i in range(1, 7):  # as the loop drives a method
        batch = torch.utils.data.default_collate([train[(j % len(train), 0)] for j in range(i * b, (i + 1) * b)])
        losses = m.step(batch)
        m.steps_done = i
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
        g_unchanged = all(torch.equal(x, y) for x, y in zip(before, G.parameters(), strict=True))
        assert g_unchanged == (i < o.n_critic), (i, o.n_critic)  # G waits for its n_critic-th D update
        assert ("GP" in losses) == (o.gradient_penalty > 0)
        if o.gradient_penalty:
            assert losses["GP"] >= 0
    if o.clip:
        Ds = [n for k, n in m.networks.items() if k.startswith("D")]
        assert max(p.abs().max().item() for D in Ds for p in D.parameters()) <= o.clip + 1e-7


def check_exact_resume(method: type[Method], data: Path, tmp: Path, **overrides: Any) -> None:
    """A run stopped after 5 of 8 steps (the learning rate already decaying) and resumed ends where the run that
    was never stopped ends, to the bit: networks, optimizers, the method's own state, every logged value, the best
    checkpoint's step and score (validated at 3, 6 and 8: the stop at 5 comes between two). ``overrides``: config
    fields on top of the method's tiny config (a recipe's flags)."""
    kw = dict(steps=8, decay_fraction=0.5, log_every=1, val_every=3, sample_every=100, checkpoint_every=100,
              **overrides)
    straight = Trainer(method, method.tiny_config(data, tmp / "a", **kw))
    straight.fit()
    first = Trainer(method, method.tiny_config(data, tmp / "b", **kw))
    first.fit(stop_after=5)
    assert first.step == 5
    resumed = Trainer(method, method.config_class(), resume=tmp / "b")  # the run's own config, not this one
    assert resumed.step == resumed.method.steps_done == 5
    resumed.fit()
    a, b = straight.method, resumed.method
    assert_same({k: n.state_dict() for k, n in a.networks.items()}, {k: n.state_dict() for k, n in b.networks.items()},
                "networks")
    assert_same({k: o.state_dict() for k, o in a.optimizers.items()},
                {k: o.state_dict() for k, o in b.optimizers.items()}, "optimizers")
    assert_same(a.extra_state(), b.extra_state(), "extra state")
    # what was logged after the last checkpoint of the stopped run is not kept twice; the rest is the same
    assert _rows(tmp / "a", "step") == _rows(tmp / "b", "step")
    best = [load_checkpoint(run / "checkpoints" / "latest.pt")["best"] for run in (tmp / "a", tmp / "b")]
    assert best[0] == best[1], best
    if best[0] is not None:  # a method with a score to validate by
        assert [json.loads((run / "best.json").read_text()) for run in (tmp / "a", tmp / "b")] == best
        assert_same(load_checkpoint(tmp / "a" / "checkpoints" / "best.pt")["networks"],
                    load_checkpoint(tmp / "b" / "checkpoints" / "best.pt")["networks"], "best networks")


def check_export(method: type[Method], data: Path, tmp: Path) -> Path:
    """The run exports every generator at its end (model.onnx for one, <direction>.onnx for several), verified
    against PyTorch by the export itself, each carrying the run's step; the checkpoint rebuilds each one."""
    import onnxruntime as ort

    run = Trainer(method, method.tiny_config(data, tmp / "run", steps=2, export=True, val_every=0,
                                             sample_every=100, checkpoint_every=100)).fit()
    specs = load_checkpoint(run / "checkpoints" / "latest.pt")["generators"]
    files = {d: run / ("model.onnx" if len(specs) == 1 else f"{d}.onnx") for d in specs}
    assert sorted(p.name for p in run.glob("*.onnx")) == sorted(f.name for f in files.values())
    for direction, path in files.items():
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert decode_metadata(sess.get_modelmeta().custom_metadata_map)["step"] == 2, path
        _, meta = load_generator(run, direction)
        assert meta["step"] == 2 and meta["method"] == method.name
    return run


# ------------------------------------------------------- two processes (Ray)
def parallel_config(method: type[Method], data: Path, out: Path, processes: int = 2, **overrides):
    """The method's tiny run for the data-parallel check: six steps, checkpoints every two, exported; with its
    ``exact_settings``; the batch of one process of ``processes`` (one process takes the sum of theirs)."""
    batch = method.tiny_config(data, out).batch_size
    kw = dict(steps=6, log_every=1, val_every=100, sample_every=100, checkpoint_every=2, export=True,
              batch_size=batch * (2 // processes), processes=processes, **(method.exact_settings or {}))
    return method.tiny_config(data, out, **{**kw, **overrides})


def check_data_parallel(method: type[Method], two: Path, data: Path, tmp: Path) -> None:
    """``two``: the method's run on two processes (:func:`parallel_config`). One run directory, written once, every
    step logged, exported, every process's state checkpointed; when the method has ``exact_settings``, the same
    losses, schedule and weights as one process at twice the batch, up to the order of float sums."""
    rows = _rows(two)
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert all(torch.isfinite(torch.tensor(v)) for r in rows for v in r.values() if isinstance(v, float))
    config = json.loads((two / "config.json").read_text())
    assert config["processes"] == 2 and not (two / ".ray_train").exists()
    ckpt = load_checkpoint(two / "checkpoints" / "latest.pt")
    assert len(ckpt["rng_ranks"]) == 1 and len(ckpt["extra_ranks"]) == 1
    assert ckpt["extra_ranks"][0].keys() == ckpt["extra"].keys()
    assert list(two.glob("*.onnx"))
    if method.exact_settings is None:
        return
    one = Trainer(method, parallel_config(method, data, tmp / "one", processes=1)).fit()
    for ra, rb in zip(_rows(one), rows, strict=True):
        assert ra.keys() == rb.keys(), ra["step"]
        assert rb["lr"] == ra["lr"]
        # the first steps agree to float noise; later ones by less: the noise Adam turns into steps (below) moves
        # the losses by up to 1e-3 by step 5 where the CPU's kernels differ between batch 1 and batch 2 (CycleGAN
        # on an AMD EPYC with avx512, 2026-12-07, at the commit CI had passed on another machine of this kind); a
        # process that trained on its own half without the others' gradients is off by far more than this
        rel = 1e-4 if ra["step"] <= 2 else 5e-3
        for k, v in ra.items():
            if k not in ("step", "epoch", "lr", "it_per_s"):
                assert rb[k] == pytest.approx(v, rel=rel, abs=1e-5), (ra["step"], k)
    # the weights agree as closely as float sums in another order allow, but for one kind: a bias before a
    # normalisation layer has a gradient that is zero in theory, and Adam turns the float noise on it into steps of
    # up to lr either way, so those agree to 2 x lr a step only (the losses and validation above show it is noise)
    wa = load_checkpoint(one / "checkpoints" / "latest.pt")["networks"]
    noise = 2 * len(rows) * max(r["lr"] for r in rows)
    for net, sd in ckpt["networks"].items():
        weights = [k for k in sd if not k.endswith("bias")]
        flat_a = torch.cat([wa[net][k].float().flatten() for k in weights])
        flat_b = torch.cat([sd[k].float().flatten() for k in weights])
        # 3e-3: the noise above, measured at up to 7.7e-4 (CycleGAN's G_A, the machine above); six steps at lr 2e-4
        # move weights of init scale 0.02 by some per cent (estimated), so a process that trained on its half
        # without the others' gradients should land far outside it
        assert (flat_a - flat_b).norm() < 3e-3 * flat_a.norm(), net
        for k in set(sd) - set(weights):
            assert (wa[net][k].float() - sd[k].float()).abs().max() <= noise, (net, k)
    for k, v in _rows(one, "step")[-1].items():  # the validation at the end, on the same weights
        if k.startswith("val/"):
            assert _rows(two, "step")[-1][k] == pytest.approx(v, rel=5e-3, abs=1e-5), k


def cli_flags(config) -> list[str]:
    """The `translate train METHOD` flags that make ``config`` (those that differ from the defaults for its data)."""
    default = type(config)(data=config.data)
    flags = ["--data", str(config.data)]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "data" or value == getattr(default, f.name):
            continue
        flag = flag_names(f.name)[0]
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, str(value)]
    return flags
