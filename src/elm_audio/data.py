"""``python -m elm_audio.data check dataset=<name> dataset.root=<path> [overrides]``

Reads the dataset's layout and decodes every file (as a run would: its container, NaN or
infinite samples, clips too short for the front-end's input, silent clips), prints a report,
and exits 0 when the copy gives the dataset's protocol, 1 when it cannot, 2 when the dataset
cannot be read at all (no root, not a folder, no metadata).
"""

from __future__ import annotations

import sys

from .config import compose
from .datasets import DatasetError
from .datasets.check import CheckReport
from .extraction.inputs import min_samples
from .settings.components import build_dataset, build_frontend

USAGE = "usage: python -m elm_audio.data check dataset=<name> dataset.root=<path> [other overrides]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "check":
        print(USAGE, file=sys.stderr)
        return 2
    try:
        cfg = compose(args[1:])
        dataset = build_dataset(cfg)
        survey = dataset.survey(cfg.protocol.mode)
    except DatasetError as err:
        print(f"elm_audio: {err}", file=sys.stderr)
        return 2
    least = min_samples(build_frontend(cfg), cfg.audio.min_fraction)
    report = CheckReport.from_survey(dataset, survey, progress=sys.stderr.isatty(), decode_min_samples=least)
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
