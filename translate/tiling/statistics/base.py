"""What every statistics mode is: the common interface (:class:`Statistics`) and what the modes share.

A mode is chosen once per model (:func:`translate.tiling.statistics.choose`). For each image it
plans the tiles and passes (:meth:`Statistics.plan`, known before the first pass so that progress
can count tile runs), then runs the passes, finds every normalisation layer's statistics its own
way, renders the tiles with them and says what it did (:meth:`Statistics.render`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..band import Emit
from ..config import TileConfig
from ..geometry import TilePlan
from ..graph.norms import WEIGHT_INPUT, NormLayer

# read(y0, y1, x0, x1, count=True): network input (1, C, h, w) of a window of the padded canvas;
# count=False for hybrid's sample windows, which are not one of the plan's tile runs
Read = Callable[..., np.ndarray]


@dataclass
class Network:
    """What every mode is built from: the rewritten graph's normalisation layers, the tiling asked
    for, the canvas's alignment, and how sessions are made (the predictor's options and providers)."""

    layers: list[NormLayer]
    config: TileConfig
    align: int  # the size multiple and every normalised layer's stride divide it
    min_size: int
    input_nc: int
    probe_side: int  # a square input side the network accepts, to probe its graph with
    make_session: Callable[[bytes], Any]


def run(session, feeds: dict, fetch: Sequence[str] | None = None) -> dict:
    """Run ``session`` on the feeds it takes; the fetched outputs (all by default) by name."""
    names = [o.name for o in session.get_outputs()] if fetch is None else list(fetch)
    return dict(zip(names, session.run(names, {i.name: feeds[i.name] for i in session.get_inputs()}), strict=True))


class Statistics(ABC):
    """One way of giving the tiles of an image their normalisation statistics.

    ``name`` is the ``statistics=`` mode it implements (what ``last_info`` reports); ``session``
    renders the tiles (its first input is the image, its first output the result).
    """

    name: ClassVar[str]

    def __init__(self, net: Network, session):
        self.net = net
        self.layers = net.layers
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    @abstractmethod
    def plan(self, canvas: tuple[int, int]) -> TilePlan:
        """The tiles of a padded canvas and the passes over them."""

    @abstractmethod
    def render(self, plan: TilePlan, read: Read, emit: Emit) -> dict:
        """Run ``plan``'s passes over the tiles that ``read`` gives, hand finished output rows to
        ``emit`` top to bottom; return what was done (see :meth:`info`)."""

    def start(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per layer (mean, variance) before anything is measured (placeholders for layers that
        normalise by their own statistics)."""
        return [(np.zeros(layer.channels), np.ones(layer.channels)) for layer in self.layers]

    def feeds(self, x: np.ndarray, weight: np.ndarray | None, own: Sequence[float], stats: Sequence) -> dict:
        """Inputs of one run: the tiles ``x``, their weights, and per layer whether it normalises by
        its own statistics (1) or by ``stats`` (0)."""
        feeds: dict[str, Any] = {self.input_name: x}
        if self.layers:
            feeds[WEIGHT_INPUT] = weight
            for layer, flag, (m, v) in zip(self.layers, own, stats, strict=True):
                feeds[layer.mean], feeds[layer.var] = m.astype(np.float32), v.astype(np.float32)
                feeds[layer.own] = np.asarray(flag, np.float32)
        return feeds

    def info(self, plan: TilePlan, cost: float | None, layers: dict, **extra) -> dict:
        """What was done for one image, for the output's metadata: ``statistics`` is the mode used,
        ``asked`` the configured one (``auto`` resolves to ``hybrid`` or ``exact``), ``cost`` the
        network-equivalents computed (split modes), ``layers`` how many layers got their statistics how."""
        return {"statistics": self.name, "asked": self.net.config.statistics, "tile": list(plan.tile),
                "overlap": int(plan.overlap), "tiles": plan.count, "passes": plan.passes,
                "cost": None if cost is None else round(float(cost), 3), "layers": layers, **extra}
