"""A trainer written by following DESIGN.md's recipe, and nothing else: one module, one registry line
(tests/training/test_registry.py adds the line). It fits a small U-Net to aligned pairs with L1 only."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from training.config import TrainConfig
from training.method_base import Method
from translate import data as tdata
from translate.checkpoint import GeneratorSpec
from translate.networks import define_G, to_inference
from translate.options import opt


@dataclass
class ToyConfig(TrainConfig):
    size: int = opt(32, "crop size")
    ngf: int = opt(4, "generator filters")
    lr: float = opt(1e-3, "Adam learning rate")


class Toy(Method):
    """Toy: a U-Net fitted to aligned pairs by L1 alone."""

    name = "toy"
    config_class = ToyConfig

    def __init__(self, config: ToyConfig, device: torch.device):
        super().__init__(config, device)
        self.arch = dict(name="unet_32", ngf=config.ngf, norm="instance", use_dropout=False)
        self.G = define_G(**self.arch)
        self.place({"G": self.G})
        self.optimizers = {"G": torch.optim.Adam(self.G.parameters(), lr=config.lr)}

    @classmethod
    def tiny_config(cls, data, out, **overrides):
        return ToyConfig(**{**dict(data=str(data), out=str(out), batch_size=2, steps=6, workers=0, progress=False,
                                   export=False), **overrides})

    def datasets(self):
        c = self.config
        train, val = tdata.split_holdout(tdata.find_pairs(c.data, "train"), c.val_fraction, c.seed)
        common = dict(size=c.size, seed=c.seed, preprocess="resize")
        return tdata.PairedImages(train, train=True, **common), tdata.PairedImages(val or train[:1], train=False,
                                                                                   **common)

    def step(self, batch):
        loss = torch.nn.functional.l1_loss(self.G(batch["A"]), batch["B"])
        self.optimizers["G"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["G"].step()
        return {"L1": loss.item()}

    def generators(self):
        return {"AtoB": GeneratorSpec(network="G", arch=self.arch, method=self.name)}

    def eval_generators(self):
        return {"AtoB": to_inference(self.G, batch_stats=False)}

    def validation_pairs(self, batch, gens):
        return gens["AtoB"](batch["A"]), batch["B"]

    def sample_columns(self, batch, gens):
        return [batch["A"], gens["AtoB"](batch["A"]), batch["B"]]
