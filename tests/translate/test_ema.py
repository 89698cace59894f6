"""The weight average (translate/ema.py): the closed form of k updates, its warm-up, and buffers averaged or copied."""
import pytest
import torch
from torch import nn

from translate.ema import averaged_copy, decay_at, ema_update


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_k_updates_are_the_closed_form_average():
    """After k updates the average is prod(d) * w_0 + sum_i (1 - d_i) prod_{j > i} d_j * w_i, the weights w_i the
    network held at each update and d_i the warmed-up decay of update i."""
    net = _net()
    ema = averaged_copy(net)
    w0 = net[0].weight.detach().clone()
    seen, decays = [], []
    for i in range(6):
        with torch.no_grad():
            net[0].weight.add_(torch.randn_like(net[0].weight))
        seen.append(net[0].weight.detach().clone())
        decays.append(decay_at(0.9, i))
        ema_update(ema, net, 0.9, num_updates=i)
    expected = w0 * torch.tensor(decays).prod()
    for i, w in enumerate(seen):
        expected = expected + (1 - decays[i]) * torch.tensor(decays[i + 1:]).prod() * w
    assert torch.allclose(ema[0].weight, expected, atol=1e-6)
    assert not torch.allclose(ema[0].weight, net[0].weight, atol=1e-3)  # it trails the network
    assert not ema[0].weight.requires_grad


def test_decay_warms_up_then_holds():
    assert decay_at(0.999, 0) == pytest.approx(0.1)
    assert decay_at(0.999, 90) == pytest.approx(91 / 100)
    assert decay_at(0.999, 10**6) == 0.999 and decay_at(0.5, None) == 0.5


@pytest.mark.parametrize("average_buffers", [True, False])
def test_running_statistics_averaged_or_copied(average_buffers):
    net = _net()
    ema = averaged_copy(net)
    net.train()
    net(torch.randn(8, 3) * 3 + 2)  # moves the running statistics
    ema_update(ema, net, 0.75, average_buffers=average_buffers)
    bn, bn_ema = net[1], ema[1]
    if average_buffers:
        assert torch.allclose(bn_ema.running_mean, 0.25 * bn.running_mean)  # from 0
        assert torch.allclose(bn_ema.running_var, 0.75 + 0.25 * bn.running_var)  # from 1
    else:
        assert torch.equal(bn_ema.running_mean, bn.running_mean)
    assert bn_ema.num_batches_tracked.item() == 1  # a counter is copied
