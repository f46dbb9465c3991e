"""Zero-cost proxies of a front-end at initialization: the predictors a sceptic tries before
believing that random-weight accuracy says anything about trained accuracy (ZiCo, ICLR 2023).

- NASWOT (Mellor et al., ICML 2021): on a minibatch of N clips, each clip's binary code says which
  units are active (> 0); K[i, j] = number of units minus the Hamming distance of codes i and j;
  the score is log |det K|. The units are those of every map whose means form the feature vector
  (``FrontEnd.maps``): the units the method reads.
- synflow (Tanaka et al., NeurIPS 2020): with every weight replaced by its absolute value and an
  input of ones, R = the sum of the feature vector; the score is sum(theta * dR/dtheta). Data-free.

The MFCC baseline has no weights and no activations: it has no proxies.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from ..datasets.index import Clip
from ..frontends.base import FrontEnd
from ..frontends.imported import Imported
from .extract import ClipAudio
from .inputs import InputSettings, network_inputs

CHUNK = 1 << 20  # units turned into float64 codes at a time


def has_proxies(frontend: FrontEnd) -> bool:
    """Only the project's own random-weight front-ends: an imported model's proxies would not
    describe the maps its vector is made of."""
    return not isinstance(frontend, Imported) and any(True for _ in frontend.parameters())


@torch.no_grad()
def naswot(frontend: FrontEnd, x: torch.Tensor) -> float:
    """log |det K| of the activation codes of the prepared inputs ``x`` (a minibatch)."""
    k = torch.zeros(len(x), len(x), dtype=torch.float64)

    def count(name: str, fmap: torch.Tensor, reduction: str) -> None:
        flat = fmap.flatten(1)
        for s in range(0, flat.shape[1], CHUNK):
            c = (flat[:, s : s + CHUNK] > 0).to(torch.float64).cpu()
            k.add_(c @ c.T + (1 - c) @ (1 - c).T)  # units where codes i and j agree

    with frontend.maps(count):
        frontend.features(x)
    return float(torch.linalg.slogdet(k).logabsdet)


def synflow(frontend: FrontEnd) -> float:
    """sum(theta * dR/dtheta) of the network with |theta| and an input of ones, in float64."""
    net = copy.deepcopy(frontend).to("cpu", torch.float64).trainable()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.features(torch.ones((1, *net.input_shape), dtype=torch.float64)).sum().backward()
    return float(sum((p.detach() * p.grad).sum() for p in net.parameters() if p.grad is not None))


def minibatch(frontend: FrontEnd, clips: Sequence[Clip], settings: InputSettings, size: int, device: torch.device) -> torch.Tensor:
    """The prepared inputs of up to ``size`` of ``clips`` that decode, drawn with a fixed seed
    (the same clips for every front-end and seed)."""
    pick = np.random.default_rng(0).permutation(len(clips))
    audio = ClipAudio([clips[i] for i in pick], frontend, settings)
    signals = []
    for i in range(len(audio)):
        _, signal, _, _ = audio[i]
        if signal is not None:
            signals.append(signal)
        if len(signals) == size:
            break
    return torch.cat([x for _, x in network_inputs(frontend, signals, device, settings)])


def proxies(frontend: FrontEnd, clips: Sequence[Clip], settings: InputSettings, size: int, device: torch.device) -> dict[str, float]:
    """The metrics ``naswot`` (on a minibatch of ``size`` of ``clips``) and ``synflow``; none for
    a front-end without weights."""
    if not has_proxies(frontend):
        return {}
    net = frontend.to(device).eval()
    return {"naswot": naswot(net, minibatch(net, clips, settings, size, device)), "synflow": synflow(frontend)}
