"""A kind of generator written by following translate/kinds.py's recipe, and nothing else: this module
(its loader, exporter and evaluate handler) and one entry in KINDS, which tests/translate/test_kinds.py
adds. A latent-only decoder, as a VAE's would be: latents in, an image out; not an image translator."""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch import nn

from translate.checkpoint import generator_state
from translate.files import atomic_path
from translate.kinds import GeneratorKind
from translate.onnx_meta import OPSET, add_metadata, encode_metadata

KIND = GeneratorKind(name="toy", summary="a latent in, an image out", inputs=("latent",),
                     load="tests.translate.toy_kind:load", export="tests.translate.toy_kind:export",
                     evaluate="tests.translate.toy_kind:evaluate", translates=False, samples=True,
                     use_instead="use `toy-sample` with the run", onnx_kind="toy_decoder")


class Decoder(nn.Module):
    def __init__(self, nz: int = 2, size: int = 4):
        super().__init__()
        self.nz, self.size = nz, size
        self.fc = nn.Linear(nz, 3 * size * size)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 3, self.size, self.size)


def load(raw, spec, meta, use_ema):
    G = Decoder(**spec.arch)
    G.load_state_dict(generator_state(raw, spec))
    return G.eval().requires_grad_(False), meta


def export(G, meta, out=None, tolerance=None):
    buf = io.BytesIO()
    torch.onnx.export(G, (torch.zeros(1, G.nz),), buf, dynamo=False, opset_version=OPSET, input_names=["z"],
                      output_names=["output"], dynamic_axes={"z": {0: "batch"}, "output": {0: "batch"}})
    data = add_metadata(buf.getvalue(), encode_metadata({"kind": KIND.onnx_name, "nz": G.nz}))
    if out is not None:
        with atomic_path(out) as tmp:
            Path(tmp).write_bytes(data)
    return data, 0.0


def evaluate(args):
    print(json.dumps({"toy": str(args.model)}))
