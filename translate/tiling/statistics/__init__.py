"""The statistics modes: how the tiles of an image get their normalisation statistics.

Each ``statistics=`` name is a class with the interface of :class:`.base.Statistics`, chosen once per
model by :func:`choose`: ``per_tile``, ``estimate`` and ``exact`` layer by layer run the whole
rewritten graph over the tiles (:mod:`.passes`); ``hybrid`` and ``exact`` on a graph that splits run
its deep part once on the whole image (:mod:`.split`). ``auto`` is ``hybrid`` where the graph splits,
else ``exact``.
"""
from __future__ import annotations

from ..graph.cut import Cut
from .base import Network, Statistics
from .passes import Estimate, ExactByLayer, PerTile, Plain
from .split import ExactSplit, Hybrid

ON_TILES = {mode.name: mode for mode in (PerTile, Estimate, ExactByLayer)}  # the whole graph over the tiles
ON_SPLIT = {mode.name: mode for mode in (Hybrid, ExactSplit)}  # the deep part once, on the whole image
AUTO = "auto"  # hybrid where the graph splits, else exact


def choose(name: str, net: Network, model_bytes: bytes, graph: bytes) -> Statistics:
    """The mode for ``statistics=name`` on this model (``graph``: its statistics graph, see
    :func:`translate.tiling.graph.norms.statistics_graph`). A model without image-dependent
    normalisation runs one plain pass, whatever is asked."""
    if not net.layers:
        return Plain(net, graph)
    if name == AUTO or name in ON_SPLIT:  # these look for a cut first
        cut = Cut(model_bytes, net.input_nc, net.probe_side)
        if cut.split is not None:
            return ON_SPLIT["hybrid" if name == AUTO else name](net, graph, cut)
        if name == "hybrid":  # asked of a graph without a cut: every layer outer, from exact passes or the sample
            return Hybrid(net, graph, cut)
        del cut  # the parsed model goes before the sessions are made
        name = "exact"
    return ON_TILES[name](net, graph)
