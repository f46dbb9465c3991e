"""What a front-end is and costs: ``python -m elm_audio.describe frontend=<name|all> feature_size=<small|large>``.

Prints a table, one line a front-end and size (``--json``: one JSON object, or a list for
several; ``--help``: the usage): input, feature_dim, n_params, gflops_per_clip (multiply-adds x 2 of one clip's forward
pass from the network's input, the waveform or the log-mel spectrogram) and the layers whose
feature-map means form the vector. Shapes and FLOPs come from a pass over an empty batch,
so describing a 270-GFLOP network takes no time and no memory.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig

from .config import ConfigError, choices, compose, native_frontends
from .frontends.profile import profile
from .settings.components import build_frontend
from .settings.unknown_keys import check
from .settings.validate import imported_frontend

USAGE = "python -m elm_audio.describe [--json] [frontend=<name|all>] [feature_size=<small|large>] [key=value ...]"
DESCRIPTION = """\
What a front-end is and costs: its input, the length of its feature vector, its parameters, the
GFLOP of one clip's forward pass and the layers whose feature-map means form the vector. Nothing
is run: shapes and FLOPs come from a pass over an empty batch."""
EXAMPLES = """examples:
  python -m elm_audio.describe                              the default front-end and size (vgg, small)
  python -m elm_audio.describe frontend=all                 every front-end at both sizes
  python -m elm_audio.describe frontend=temporal            one front-end at both sizes
  python -m elm_audio.describe frontend=vgg feature_size=large --json"""
HEADER = ("front-end", "size", "input", "feature_dim", "parameters", "GFLOP/clip", "layers tapped")
NUMERIC = {3, 4, 5}  # the columns right-aligned


def describe(cfg: DictConfig) -> dict[str, Any]:
    imported_frontend(cfg)  # frontend=hear or embeddings: the key each needs is given (a ConfigError names it)
    return {"frontend": cfg.frontend.name, "feature_size": cfg.feature_size.name, **profile(build_frontend(cfg))}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m elm_audio.describe",
        usage=USAGE,
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="frontend=<name> (default vgg) or frontend=all (elm_audio's own front-ends); feature_size=small or "
        "large (both when a front-end is named and no size is); any key of python -m elm_audio --help",
    )
    p.add_argument(
        "--json", action="store_true", help="print JSON: one object, or a list for several front-ends or sizes"
    )
    return p.parse_intermixed_args(argv)


def rows(overrides: list[str]) -> list[dict[str, Any]]:
    """One description a front-end and size the overrides ask for."""
    given = dict(a.split("=", 1) for a in overrides if "=" in a)
    frontends = native_frontends() if given.get("frontend") == "all" else [given.get("frontend")]
    sizes = [given["feature_size"]] if "feature_size" in given else choices("feature_size")
    rest = [a for a in overrides if not a.startswith(("frontend=", "feature_size="))]
    if frontends == [None]:  # the config's default front-end at the requested (or default) size
        sizes = [given.get("feature_size")]
    # frontend=all is no option: check the keys of every front-end it stands for
    check([f"frontend={','.join(native_frontends())}" if a == "frontend=all" else a for a in overrides])
    out = []
    for fe in frontends:
        for size in sizes:
            chosen = [f"frontend={fe}"] * (fe is not None) + [f"feature_size={size}"] * (size is not None)
            out.append(describe(compose(chosen + rest)))
    return out


def layers(names: list[str]) -> str:
    """``pool``, or how many layers from the first to the last: ``5 (pool1 to pool5)``."""
    return names[0] if len(names) == 1 else f"{len(names)} ({names[0]} to {names[-1]})"


def table(described: list[dict[str, Any]]) -> str:
    """An aligned table, one line a front-end and size; text left-aligned, numbers right-aligned."""
    lines = [HEADER] + [
        (
            r["frontend"],
            r["feature_size"],
            f"{r['input']} {'x'.join(map(str, r['input_shape']))}",
            str(r["feature_dim"]),
            f"{r['n_params']:,}",
            f"{r['gflops_per_clip']:,.2f}",
            layers([layer["name"] for layer in r["layers"]]),
        )
        for r in described
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    aligned = [[cell.rjust(w) if i in NUMERIC else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))]
               for line in lines]  # fmt: skip
    return "\n".join("  ".join(cells).rstrip() for cells in aligned)


def main(argv: list[str] | None = None) -> None:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        out = rows(args.overrides)
    except (ConfigError, HydraException) as err:  # a mistyped option or key; what Hydra refuses
        raise SystemExit(f"elm_audio.describe: {err}") from None
    if args.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=1))
    else:
        print(table(out))
        print("GFLOP/clip: multiply-adds x 2 of one clip's forward pass. Each layer's shape and size: --json")


if __name__ == "__main__":
    main()
