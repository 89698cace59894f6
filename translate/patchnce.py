"""PatchNCE (Park et al. 2020, "Contrastive Learning for Unpaired Image-to-Image Translation"): an output
patch must pick the input patch at its own location among the other patches of the same image.

The generator's encoder reads the input and the output (:meth:`translate.networks.ResnetGenerator.features`, at
the paper's layers: :func:`encoder_layers`); at ``num_patches`` locations per layer, the same locations in both,
a two-layer MLP head per layer (:class:`PatchHeads`, "F" in the paper) maps each feature vector to a unit vector;
:func:`patchnce_loss` is InfoNCE over them (temperature 0.07): the positive is the input's vector at the output
vector's location, the negatives the input's vectors at the other sampled locations of the same image. The input's
side is a fixed target (no gradient), as in the reference code; :func:`patchnce` puts the pieces together.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .networks import ResnetBlock, ResnetGenerator, init_weights

#: The paper's temperature and head width, and its patches per layer.
TEMPERATURE = 0.07
HEAD_WIDTH = 256
NUM_PATCHES = 256


def encoder_layers(G: ResnetGenerator) -> tuple[int, ...]:
    """The paper's layers of a ResNet generator, as indices into ``G.model``: the (padded) input pixels, the two
    down-sampling convolutions, the first residual block and the fifth (the last, in a generator with fewer)."""
    downsampling = [i for i, m in enumerate(G.model) if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    blocks = [i for i, m in enumerate(G.model) if isinstance(m, ResnetBlock)]
    picked = [0, *downsampling, *([blocks[0], blocks[min(4, len(blocks) - 1)]] if blocks else [])]
    return tuple(sorted(set(picked)))


def feature_channels(G: ResnetGenerator, layers: Sequence[int]) -> list[int]:
    """The channels of ``G.features(x, layers)``'s maps (a residual block keeps its input's)."""
    channels, out = G.input_nc, []
    for i, m in enumerate(G.model[: max(layers) + 1]):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            channels = m.out_channels
        if i in layers:
            out.append(channels)
    return out


def sample_locations(n: int, num_patches: int, device: torch.device) -> Tensor | None:
    """``num_patches`` distinct locations of ``n`` at random (torch's generator), or None for all of them when
    there are no more than that (every location, in order: the loss does not depend on the order)."""
    if num_patches >= n:
        return None
    return torch.randperm(n)[:num_patches].to(device)


class PatchHeads(nn.Module):
    """One MLP head per encoder layer (Linear, ReLU, Linear to ``width``): feature vectors at sampled locations ->
    unit vectors."""

    def __init__(self, channels: Sequence[int], width: int = HEAD_WIDTH, init_type: str = "xavier",
                 init_gain: float = 0.02):
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Linear(c, width), nn.ReLU(), nn.Linear(width, width))
                                   for c in channels)
        init_weights(self, init_type, init_gain)

    def forward(self, feats: Sequence[Tensor], num_patches: int, locations: Sequence[Tensor | None] | None = None
                ) -> tuple[list[Tensor], list[Tensor | None]]:
        """(per layer a (B, P, width) tensor of unit vectors, the locations used): at ``locations`` (as returned
        by a previous call, so that two images are read at the same places) or at new ones."""
        out, used = [], []
        for i, (feat, head) in enumerate(zip(feats, self.heads, strict=True)):
            flat = feat.flatten(2).transpose(1, 2)  # B, H*W, C
            where = locations[i] if locations is not None else sample_locations(flat.shape[1], num_patches,
                                                                               feat.device)
            picked = flat if where is None else flat[:, where]
            out.append(F.normalize(head(picked.float()), dim=-1))
            used.append(where)
        return out, used


def patchnce_loss(q: Tensor, k: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """InfoNCE of output vectors ``q`` against input vectors ``k`` (both (B, P, D)), averaged over the B x P
    patches: patch p of image b must pick ``k[b, p]`` among ``k[b, :]``. ``k`` is a fixed target (detached)."""
    B, P, _ = q.shape
    logits = torch.bmm(q.float(), k.detach().float().transpose(1, 2)) / temperature  # B, P, P: diagonal positive
    return F.cross_entropy(logits.flatten(0, 1), torch.arange(P, device=q.device).repeat(B))


def patchnce(G: ResnetGenerator, heads: PatchHeads, source: Tensor, output: Tensor, layers: Sequence[int],
             num_patches: int = NUM_PATCHES, temperature: float = TEMPERATURE, flipped: bool = False) -> Tensor:
    """PatchNCE between ``source`` and the generator's ``output`` for it, averaged over ``layers``. ``flipped``:
    the output is G's answer to the mirrored source, so its maps are mirrored back first (FastCUT's flip
    equivariance). The source's side takes no gradient, so its features are computed without one."""
    feats_q = G.features(output, layers)
    if flipped:
        feats_q = [f.flip(3) for f in feats_q]
    with torch.no_grad():
        feats_k = G.features(source, layers)
        k, locations = heads(feats_k, num_patches)
    q, _ = heads(feats_q, num_patches, locations)
    return torch.stack([patchnce_loss(qi, ki, temperature) for qi, ki in zip(q, k, strict=True)]).mean()


__all__ = ["TEMPERATURE", "HEAD_WIDTH", "NUM_PATCHES", "encoder_layers", "feature_channels", "sample_locations",
           "PatchHeads", "patchnce_loss", "patchnce"]
