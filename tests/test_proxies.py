"""The zero-cost proxies on a tiny network whose scores are worked out by hand, and on a real
front-end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers.frontends import frontend
from torch import nn

from elm_audio.extraction.proxies import has_proxies, naswot, synflow
from elm_audio.frontends.base import FrontEnd


class Tiny(FrontEnd):
    """Two one-channel convolutions of two taps, each map tapped: 3 samples -> 2 -> 1 units."""

    input_kind = "waveform"

    def __init__(self, w1: tuple[float, float], w2: tuple[float, float]):
        super().__init__()
        self.c1 = nn.Conv1d(1, 1, 2, bias=False)
        self.c2 = nn.Conv1d(1, 1, 2, bias=False)
        with torch.no_grad():
            self.c1.weight.copy_(torch.tensor([[w1]]))
            self.c2.weight.copy_(torch.tensor([[w2]]))

    @property
    def input_shape(self):
        return (3,)

    def features(self, x):
        h1 = F.relu(self.c1(x.unsqueeze(1)))
        h2 = F.relu(self.c2(h1))
        return torch.cat([self.tap("c1", h1), self.tap("c2", h2)], dim=1)


def test_naswot_by_hand():
    """w1 = (1, -1): layer 1 is relu(x0 - x1), relu(x1 - x2); w2 = (1, 1): layer 2 their sum.
    Clip a = (3, 2, 1): codes 1 1 | 1; b = (1, 2, 3): 0 0 | 0; c = (1, 3, 2): 0 1 | 1.
    Agreements (3 units minus Hamming): a-b 0, a-c 2, b-c 1; K = [[3,0,2],[0,3,1],[2,1,3]],
    det K = 3(9-1) - 0 + 2(0-6) = 12."""
    net = Tiny((1.0, -1.0), (1.0, 1.0))
    x = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]])
    assert naswot(net, x) == pytest.approx(math.log(12))


def test_synflow_by_hand():
    """|w1| sums to A, |w2| to B; with an input of ones layer 1 is A at both positions (mean A) and
    layer 2 is A B: R = A + A B; sum(theta dR/dtheta) = A (1 + B) + B A = A + 2 A B."""
    net = Tiny((0.5, -1.5), (-2.0, 0.25))
    a, b = 2.0, 2.25
    assert synflow(net) == pytest.approx(a + 2 * a * b)
    assert net.c1.weight[0, 0, 1].item() == -1.5  # the network itself is left as it was


def test_real_front_ends_have_finite_proxies_and_the_baseline_none():
    temporal = frontend("temporal")
    spec = temporal.prepare(0.1 * torch.randn(4, temporal.input_samples, generator=torch.Generator().manual_seed(0)))
    score = naswot(temporal, spec)
    units = sum(layer.shape[0] * layer.shape[1] for layer in temporal.trace(spec[:1]))
    # K's diagonal is the number of units: log det K is at most 4 log(units) (Hadamard)
    assert 0 < score <= 4 * math.log(units) + 1e-9
    assert synflow(temporal) > 0 and not has_proxies(frontend("mfcc"))
