"""CycleGAN on the shared loop: losses as the paper writes them, image pools, both directions
exported, reference CycleGAN checkpoints importable. Exact resume (pools included) is every
method's check: tests/training/test_every_method.py."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import translate
from tests.conftest import make_pairs
from tests.fp32 import FP32
from training.cyclegan import CycleGAN, CycleGANConfig
from training.loop import Trainer
from translate.errors import ConfigError
from translate.generators import load_generator
from translate.networks import to_inference
from translate.predictor import Predictor


def tiny_config(data, out, **kw):
    base = dict(data=str(data), out=str(out), size=32, load_size=36, netG="resnet_2blocks", ngf=8, ndf=8,
                batch_size=2, steps=6, workers=0, log_every=2, val_every=3, sample_every=3, checkpoint_every=100,
                progress=False, export=False)
    base.update(kw)
    return CycleGANConfig(**base)


@pytest.fixture(scope="module")
def tiny_unpaired(tmp_path_factory):
    """DIR/trainA (12) + DIR/trainB (10) + DIR/testA (2) + DIR/testB (1), cut from different aligned pairs."""
    pairs = make_pairs(tmp_path_factory.mktemp("pairs"), n_train=22, n_val=3)
    root = tmp_path_factory.mktemp("unpaired")
    for split, src, cut in (("train", "train", 12), ("test", "test", 2)):
        for d in (f"{split}A", f"{split}B"):
            (root / d).mkdir()
        for i, f in enumerate(sorted((pairs / src).glob("*.png"))):
            ab = np.asarray(Image.open(f))
            w = ab.shape[1] // 2
            side = "A" if i < cut else "B"
            Image.fromarray(ab[:, :w] if side == "A" else ab[:, w:]).save(root / f"{split}{side}" / f.name)
    return root


@pytest.fixture(scope="module")
def trained(tiny_pairs, tmp_path_factory):
    """A short run on aligned data (so validation is paired), exported at the end."""
    cfg = tiny_config(tiny_pairs, tmp_path_factory.mktemp("cg") / "run", steps=20, lr=1e-3, log_every=1,
                      val_every=10, sample_every=10, pool_size=8, export=True)
    torch.manual_seed(0)
    t = Trainer(CycleGAN, cfg)
    t.fit()
    return t


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_defaults_are_the_references():
    c = CycleGANConfig()
    assert (c.netG, c.netD, c.norm, c.ngf, c.ndf, c.gan_mode, c.dropout) == (
        "resnet_9blocks", "basic", "instance", 64, 64, "lsgan", False)
    assert (c.lambda_A, c.lambda_B, c.lambda_identity, c.pool_size) == (10.0, 10.0, 0.5, 50)
    assert (c.lr, c.beta1, c.beta2, c.size, c.load_size) == (2e-4, 0.5, 0.999, 256, 286)
    assert (c.epochs, c.decay_fraction, c.batch_size) == (200, 0.5, 1)


def test_one_step_computes_the_papers_losses(tiny_pairs, tmp_path):
    # lsgan: G loss mean((D(G(x)) - 1)^2); D loss 0.5 * (mean((D(real) - 1)^2) + mean(D(fake)^2));
    # cycle lambda * |G_B(G_A(a)) - a|; identity lambda_identity * lambda * |G_A(b) - b|
    t = Trainer(CycleGAN, tiny_config(tiny_pairs, tmp_path / "r", lambda_A=10.0, lambda_B=4.0, lambda_identity=0.5,
                                      amp=False))  # float32, to compare with the float32 formulas below
    m = t.method
    batch = torch.utils.data.default_collate([t.train_set[(i, i)] for i in range(2)])
    a, b = batch["A"], batch["B"]
    G_A, G_B, D_A, D_B = (copy.deepcopy(m.networks[k]) for k in ("G_A", "G_B", "D_A", "D_B"))
    losses = m.step(batch)
    with torch.no_grad():
        fake_B, fake_A = G_A(a), G_B(b)
        expected = {
            "G_A": ((D_A(fake_B) - 1) ** 2).mean(), "G_B": ((D_B(fake_A) - 1) ** 2).mean(),
            "cycle_A": 10.0 * (G_B(fake_B) - a).abs().mean(), "cycle_B": 4.0 * (G_A(fake_A) - b).abs().mean(),
            "idt_A": 0.5 * 4.0 * (G_A(b) - b).abs().mean(), "idt_B": 0.5 * 10.0 * (G_B(a) - a).abs().mean(),
            # the pools are empty before the first step: they hand back this step's fakes
            "D_A": 0.5 * (((D_A(b) - 1) ** 2).mean() + (D_A(fake_B) ** 2).mean()),
            "D_B": 0.5 * (((D_B(a) - 1) ** 2).mean() + (D_B(fake_A) ** 2).mean()),
        }
    assert set(losses) == set(expected)
    for k, v in expected.items():
        assert losses[k] == pytest.approx(v.item(), rel=1e-4), k
    # both generators and both discriminators moved
    for k, before in (("G_A", G_A), ("G_B", G_B), ("D_A", D_A), ("D_B", D_B)):
        assert not torch.equal(m.networks[k].state_dict()["model.1.weight" if k[0] == "G" else "model.0.weight"],
                               before.state_dict()["model.1.weight" if k[0] == "G" else "model.0.weight"]), k
    # lambda_identity 0 drops the identity terms
    t0 = Trainer(CycleGAN, tiny_config(tiny_pairs, tmp_path / "r0", lambda_identity=0.0))
    assert "idt_A" not in t0.method.step(batch)


def test_discriminators_see_images_from_the_pool(tiny_pairs, tmp_path):
    t = Trainer(CycleGAN, tiny_config(tiny_pairs, tmp_path / "r", batch_size=1, pool_size=2))
    m = t.method
    seen = []
    query = m.fake_B_pool.query
    m.fake_B_pool.query = lambda x: seen.append((x.detach().clone(), query(x))) or seen[-1][1]
    for i in range(8):
        m.step(torch.utils.data.default_collate([t.train_set[(i, i)]]))
    assert len(m.fake_B_pool) == 2 and len(m.fake_A_pool) == 2
    replayed = [i for i, (new, given) in enumerate(seen) if not torch.equal(new, given)]
    assert replayed and min(replayed) >= 2  # once the pool is full, some steps judge an older fake
    r = replayed[0]
    assert any(torch.equal(seen[r][1], new) for new, _ in seen[:r])


def test_short_run_lowers_the_cycle_loss(trained):
    rows = [r for r in _rows(trained.run_dir) if "cycle_A" in r]
    first = np.mean([r["cycle_A"] + r["cycle_B"] for r in rows[:5]])
    last = np.mean([r["cycle_A"] + r["cycle_B"] for r in rows[-5:]])
    assert last < 0.8 * first, (first, last)
    assert len(trained.method.fake_A_pool) == 8  # the pool filled (20 steps x 2 images > 8)


def test_paired_validation_scores_a_to_b_and_the_cycles(trained, tiny_unpaired, tmp_path):
    vals = [r for r in _rows(trained.run_dir) if "val/l1" in r]
    assert len(vals) == 2 and all(np.isfinite(r[k]) for r in vals for k in
                                  ("val/l1", "val/psnr", "val/ssim", "val/cycle_A_l1", "val/cycle_B_l1"))
    # unpaired validation data (testA/testB): the cycle L1 only
    t = Trainer(CycleGAN, tiny_config(tiny_unpaired, tmp_path / "u"))
    assert [s.name for s in t.val_set.a_sources] == ["000", "001"] and [s.name for s in t.val_set.b_sources] == ["002"]
    v = t.validate()
    assert set(v.metrics) == {"val/cycle_A_l1", "val/cycle_B_l1"} and v.score is None  # no targets, no best kept


def test_sample_grid_shows_both_cycles(trained):
    grid = np.asarray(Image.open(trained.run_dir / "samples" / "step_00000020.png"))
    # 4 fixed items x (real_A | fake_B | rec_A, real_B | fake_A | rec_B): 8 rows of 3 tiles of 32 px, 2 px padding
    assert grid.shape == (8 * 34 + 2, 3 * 34 + 2, 3)
    first = trained.method.sample_columns(trained._fixed_batch(), trained.method.eval_generators())
    tiles = [np.asarray(grid[2 + r * 34: 34 + r * 34, 2: 34]) for r in (0, 1)]
    real = [((first[0][r].permute(1, 2, 0).numpy() + 1) * 127.5).round() for r in (0, 1)]
    for tile, ref in zip(tiles, real, strict=True):  # column one alternates real_A and real_B
        assert np.abs(tile.astype(float) - ref).max() <= 1


def test_both_directions_export_and_match_pytorch(trained):
    run = trained.run_dir
    assert (run / "AtoB.onnx").exists() and (run / "BtoA.onnx").exists() and not (run / "model.onnx").exists()
    x = torch.rand(2, 3, 36, 44) * 2 - 1
    for direction, net in (("AtoB", "G_A"), ("BtoA", "G_B")):
        p = Predictor(run / f"{direction}.onnx", runtime=FP32)  # fp32: held to PyTorch at 1e-4
        assert p.metadata["direction"] == direction and p.metadata["method"] == "cyclegan"
        G, meta = load_generator(run, direction)
        with torch.no_grad():
            ref = to_inference(trained.method.networks[net], batch_stats=False)(x)
            torch.testing.assert_close(G(x), ref, atol=1e-5, rtol=0)  # the checkpoint holds this network
        assert np.abs(p.run(x.numpy()) - ref.numpy()).max() < 1e-4
    # odd sizes come back at their own size, through the run directory
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (97, 130, 3), dtype=np.uint8))
    for direction in ("AtoB", "BtoA"):
        assert translate.load(run, direction=direction)(img).size == (130, 97)
    a, b = (np.asarray(translate.load(run, direction=d)(img)) for d in ("AtoB", "BtoA"))
    assert not np.array_equal(a, b)


def test_direction_btoa_swaps_the_roles(tiny_unpaired, tmp_path):
    t = Trainer(CycleGAN, tiny_config(tiny_unpaired, tmp_path / "r", direction="BtoA"))
    specs = t.method.generators()
    assert (specs["BtoA"].network, specs["AtoB"].network) == ("G_A", "G_B")
    assert t.train_set.a_sources[0].path.parent.name == "trainB"


def test_bad_config_fields_are_named(tiny_pairs, tmp_path):
    with pytest.raises(ConfigError, match="size"):
        Trainer(CycleGAN, tiny_config(tiny_pairs, tmp_path / "x", size=30))
    with pytest.raises(ConfigError, match="lambda_identity"):
        Trainer(CycleGAN, tiny_config(tiny_pairs, tmp_path / "x", output_nc=1))
    with pytest.raises(ConfigError, match="pool_size"):
        Trainer(CycleGAN, tiny_config(tiny_pairs, tmp_path / "x", pool_size=-1))


def _reference_resnet_state_dict(n_blocks=9, ngf=8, nc=3, seed=0):
    """A reference ResnetGenerator (instance norm, no dropout) state dict, by its literal keys:
    model.1 7x7 conv, model.4 / model.7 strided convs, model.10.. residual blocks (conv_block.1, .5),
    two transposed convs, model.{17 + n_blocks} the 7x7 output conv. Instance norm has no weights."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"model.1": (ngf, nc, 7, 7), "model.4": (2 * ngf, ngf, 3, 3), "model.7": (4 * ngf, 2 * ngf, 3, 3)}
    for i in range(n_blocks):
        for j in (1, 5):
            shapes[f"model.{10 + i}.conv_block.{j}"] = (4 * ngf, 4 * ngf, 3, 3)
    k = 10 + n_blocks
    shapes.update({f"model.{k}": (4 * ngf, 2 * ngf, 3, 3), f"model.{k + 3}": (2 * ngf, ngf, 3, 3),
                   f"model.{k + 7}": (nc, ngf, 7, 7)})
    transposed = {f"model.{k}", f"model.{k + 3}"}  # ConvTranspose2d weights are (in, out, kh, kw)
    sd = {}
    for name, shape in shapes.items():
        sd[f"{name}.weight"] = torch.randn(shape, generator=g) * 0.05
        sd[f"{name}.bias"] = torch.randn(shape[1] if name in transposed else shape[0], generator=g) * 0.05
    return sd


def _reference_forward(sd, x, n_blocks=9):
    """The reference ResNet generator's arithmetic, written out with torch.nn.functional."""
    def conv(h, name, reflect=0, stride=1, padding=0):
        if reflect:
            h = F.pad(h, (reflect,) * 4, mode="reflect")
        return F.conv2d(h, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=stride, padding=padding)

    h = F.relu(F.instance_norm(conv(x, "model.1", reflect=3)))
    h = F.relu(F.instance_norm(conv(h, "model.4", stride=2, padding=1)))
    h = F.relu(F.instance_norm(conv(h, "model.7", stride=2, padding=1)))
    for i in range(n_blocks):
        r = F.relu(F.instance_norm(conv(h, f"model.{10 + i}.conv_block.1", reflect=1)))
        h = h + F.instance_norm(conv(r, f"model.{10 + i}.conv_block.5", reflect=1))
    k = 10 + n_blocks
    for name in (f"model.{k}", f"model.{k + 3}"):
        h = F.relu(F.instance_norm(F.conv_transpose2d(h, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=2,
                                                      padding=1, output_padding=1)))
    return torch.tanh(conv(h, f"model.{k + 7}", reflect=3))


def test_reference_cyclegan_checkpoint_predicts_like_pytorch(tmp_path):
    sd = _reference_resnet_state_dict()
    torch.save(sd, tmp_path / "latest_net_G_A.pth")
    p = translate.load(tmp_path / "latest_net_G_A.pth", runtime=FP32)  # fp32: held to PyTorch at 1e-4
    assert p.metadata["arch"]["name"].startswith("resnet") and p.metadata["arch"]["norm"] == "instance"
    x = torch.rand(1, 3, 48, 40) * 2 - 1
    with torch.no_grad():
        ref = _reference_forward(sd, x)
    assert np.abs(p.run(x.numpy()) - ref.numpy()).max() < 1e-4
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (97, 130, 3), dtype=np.uint8))
    assert p(img).size == (130, 97)
