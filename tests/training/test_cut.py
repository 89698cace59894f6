"""CUT and FastCUT on the shared loop: the modes' settings, what a step runs in each, PatchNCE falling in a short
run, validation, unpaired folders of different channels. Exact resume, export and two processes are every method's
checks (test_every_method.py, test_distributed.py); the command line: test_cut_cli.py."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.training.test_cyclegan import tiny_unpaired  # noqa: F401  (fixture)
from training.cut import CUT, CUTConfig
from training.loop import Trainer
from translate.errors import ConfigError


def tiny(data, out, **kw):
    return CUT.tiny_config(data, out, **kw)


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_defaults_are_the_papers():
    cut, fast = CUTConfig(data="x"), CUTConfig(data="x", mode="fastcut")
    assert (cut.lambda_NCE, cut.nce_idt, cut.flip_equivariance) == (1.0, True, False)
    assert (fast.lambda_NCE, fast.nce_idt, fast.flip_equivariance) == (10.0, False, True)
    for c in (cut, fast):
        assert (c.netG, c.netD, c.norm, c.gan_mode, c.init_type, c.dropout) == (
            "resnet_9blocks", "basic", "instance", "lsgan", "xavier", False)
        assert (c.num_patches, c.nce_T, c.netF_nc, c.lambda_GAN) == (256, 0.07, 256, 1.0)
        assert (c.lr, c.beta1, c.beta2, c.size, c.load_size) == (2e-4, 0.5, 0.999, 256, 286)
    # an option given wins over the mode's value, and the config records what the run uses
    mixed = CUTConfig(data="x", mode="fastcut", nce_idt=True, lambda_NCE=2.0)
    assert (mixed.lambda_NCE, mixed.nce_idt, mixed.flip_equivariance) == (2.0, True, True)
    assert json.loads(mixed.dumps())["nce_idt"] is True


def test_the_paper_layers_get_one_head_each(tiny_pairs, tmp_path):
    m = CUT(CUT.tiny_config(tiny_pairs, tmp_path / "r", netG="resnet_9blocks"), torch.device("cpu"))
    assert len(m.layers) == 5 and len(m.F.heads) == 5
    assert [h[0].in_features for h in m.F.heads] == [3, 8, 16, 16, 16]  # ngf 4: input, 2 ngf, 4 ngf x 3
    assert set(m.networks) == {"G", "F", "D"}
    assert {id(p) for p in m.optimizers["G"].param_groups[0]["params"]} == {
        id(p) for net in (m.G, m.F) for p in net.parameters()}


def _inputs_of_G(m: CUT, batch: dict) -> list[torch.Tensor]:
    """The batches G translated during one step (its forward calls, not its encoder's features)."""
    seen = []
    hook = m.G.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    try:
        losses = m.step(batch)
    finally:
        hook.remove()
    return seen, losses


@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_a_step_runs_what_its_mode_asks(mode, tiny_pairs, tmp_path):
    torch.manual_seed(0)
    m = CUT(tiny(tiny_pairs, tmp_path / "r", mode=mode), torch.device("cpu"))
    train, _ = m.datasets()
    batch = torch.utils.data.default_collate([train[(i, 0)] for i in range(2)])
    flips = 0
    for i in range(8):
        seen, losses = _inputs_of_G(m, batch)
        m.steps_done = i + 1
        assert len(seen) == 1  # one pass of G a step
        if mode == "cut":  # A and B through G at once: the identity term's input is the B images
            assert set(losses) == {"G_GAN", "NCE", "NCE_Y", "D"}
            torch.testing.assert_close(seen[0], torch.cat((batch["A"], batch["B"])))
        else:  # A alone, mirrored on about half of the steps
            assert set(losses) == {"G_GAN", "NCE", "D"}
            flipped = torch.equal(seen[0], batch["A"].flip(3))
            assert flipped or torch.equal(seen[0], batch["A"])
            flips += flipped
    assert (flips == 0) if mode == "cut" else (0 < flips < 8)


def test_fastcut_weighs_patchnce_ten_times(tiny_pairs, tmp_path):
    # the same networks and batch (and the same draws of locations and flip): NCE is lambda_NCE x PatchNCE
    losses = {}
    for lam in (1.0, 10.0):
        torch.manual_seed(0)
        m = CUT(tiny(tiny_pairs, tmp_path / f"r{lam}", mode="fastcut", lambda_NCE=lam), torch.device("cpu"))
        train, _ = m.datasets()
        torch.manual_seed(1)
        losses[lam] = m.step(torch.utils.data.default_collate([train[(i, 0)] for i in range(2)]))["NCE"]
    assert losses[10.0] == pytest.approx(10 * losses[1.0], rel=1e-5)


@pytest.fixture(scope="module")
def trained(tiny_pairs, tmp_path_factory):
    """A short CUT run on aligned data (so validation is scored), exported at the end."""
    cfg = tiny(tiny_pairs, tmp_path_factory.mktemp("cut") / "run", steps=40, lr=1e-3, ngf=8, netF_nc=16, log_every=1,
               val_every=20, sample_every=20, export=True)
    return Trainer(CUT, cfg).fit()


def test_patchnce_falls_below_chance_in_a_short_run(trained):
    # per term, chance is log(16): a patch that cannot tell its own input patch from the 15 others sampled
    nce = [(r["NCE"] + r["NCE_Y"]) / 2 for r in _rows(trained) if "NCE" in r]
    early, late = np.mean(nce[1:6]), np.mean(nce[-5:])
    assert late < 0.9 * np.log(16) and late < early - 0.2, (early, late)


def test_paired_validation_scores_a_to_b_and_samples_show_four_columns(trained, tiny_unpaired, tmp_path):  # noqa: F811
    vals = [r for r in _rows(trained) if "val/l1" in r]
    assert len(vals) == 2 and all(np.isfinite(r[k]) for r in vals for k in ("val/l1", "val/psnr", "val/ssim"))
    grid = np.asarray(Image.open(trained / "samples" / "step_00000040.png"))
    assert grid.shape[1] == 4 * 34 + 2  # real_A | G(real_A) | real_B | G(real_B)
    assert sorted(p.name for p in trained.glob("*.onnx")) == ["model.onnx"]
    # unpaired validation data (testA/testB): no targets, nothing to score
    t = Trainer(CUT, tiny(tiny_unpaired, tmp_path / "u"))
    v = t.validate()
    assert v.metrics == {} and v.score is None


@pytest.fixture
def rgb_and_grey(tiny_unpaired, tmp_path):  # noqa: F811
    """trainA in colour, trainB in greyscale (mode L)."""
    root = tmp_path / "mixed"
    for d in ("trainA", "trainB"):
        (root / d).mkdir(parents=True)
        for f in sorted((tiny_unpaired / d).glob("*.png")):
            img = Image.open(f)
            (img if d == "trainA" else img.convert("L")).save(root / d / f.name)
    return root


def test_a_greyscale_folder_beside_a_colour_one_is_read_with_the_runs_channels(rgb_and_grey, tmp_path):
    t = Trainer(CUT, tiny(rgb_and_grey, tmp_path / "r", steps=2))
    item = t.train_set[(0, 0)]
    assert item["A"].shape[0] == item["B"].shape[0] == 3
    assert torch.equal(item["B"][0], item["B"][1]) and torch.equal(item["B"][1], item["B"][2])  # grey, as 3
    t.fit()
    assert all(np.isfinite(r["NCE"]) for r in _rows(t.run_dir) if "NCE" in r)


def test_different_channel_counts_are_refused_naming_the_folders_and_flags(rgb_and_grey, tiny_pairs, tmp_path):
    with pytest.raises(ConfigError) as e:
        Trainer(CUT, tiny(rgb_and_grey, tmp_path / "r", output_nc=1))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("output_nc: ")
    assert f"{rgb_and_grey / 'trainA'} are read with 3 channels (--input-nc)" in msg
    assert f"{rgb_and_grey / 'trainB'} with 1 (--output-nc)" in msg
    with pytest.raises(ConfigError, match=f"the B sides of {tiny_pairs}'s pairs are read with 1 channels"):
        Trainer(CUT, tiny(tiny_pairs, tmp_path / "p", input_nc=1, direction="BtoA"))


def test_bad_config_fields_are_named(tiny_pairs, tmp_path):
    for field, kw in (("netG", dict(netG="unet_32")), ("lambda_NCE", dict(lambda_NCE=-1.0)),
                      ("num_patches", dict(num_patches=0)), ("nce_T", dict(nce_T=0.0))):
        with pytest.raises(ConfigError, match=f"^{field}: "):
            Trainer(CUT, tiny(tiny_pairs, tmp_path / field, **kw))
