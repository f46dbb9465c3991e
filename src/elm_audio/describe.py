"""What a front-end is and costs: ``python -m elm_audio.describe frontend=<name|all> feature_size=<small|large>``.

Prints one JSON object (or, for ``frontend=all``, a list over every front-end and both sizes):
input, feature_dim, n_params, gflops_per_clip (multiply-adds x 2 of one clip's forward pass
from the network's input, the waveform or the log-mel spectrogram) and the layers whose
feature-map means form the vector. Shapes and FLOPs come from a pass over an empty batch,
so describing a 270-GFLOP network takes no time and no memory.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from omegaconf import DictConfig

from .components import build_frontend
from .config import choices, compose, native_frontends
from .frontends.profile import profile


def describe(cfg: DictConfig) -> dict[str, Any]:
    return {"frontend": cfg.frontend.name, "feature_size": cfg.feature_size.name, **profile(build_frontend(cfg))}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    given = dict(a.split("=", 1) for a in args if "=" in a)
    frontends = native_frontends() if given.get("frontend") == "all" else [given.get("frontend")]
    sizes = [given["feature_size"]] if "feature_size" in given else choices("feature_size")
    rest = [a for a in args if not a.startswith(("frontend=", "feature_size="))]
    if frontends == [None]:  # the config's default front-end at the requested (or default) size
        sizes = [given.get("feature_size")]
    out = []
    for fe in frontends:
        for size in sizes:
            overrides = [f"frontend={fe}"] * (fe is not None) + [f"feature_size={size}"] * (size is not None)
            out.append(describe(compose(overrides + rest)))
    print(json.dumps(out if len(out) > 1 else out[0], indent=1))


if __name__ == "__main__":
    main()
