"""``python -m elm_audio.report [--tracking-uri URI] [--dataset NAME ...] [--out DIR]``

For each dataset with runs (or those named), writes into ``<out>/<dataset>/`` and into an MLflow
run of its own (tag elm_audio.role=report): table.md (the answer first: per column, the best
front-end, its lead over the runner-up and whether that is significant; printed first too) and
table.csv, bars_<size>.png, significance_<size>_<classifier>.png with
pairs_<size>_<classifier>.csv, and cost.png. Runs are compared on their task kind's primary
metric (accuracy, mAP, R²); an experiment holding several kinds gets a report per kind, the
kinds other than multiclass in ``<out>/<dataset>/<kind>/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import ConfigError
from ..stores.tracking import open_store, resolve_uri, ui_link
from .build import build_all
from .collect import experiments, refused_experiments
from .markdown import one_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m elm_audio.report", description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="MLflow store (default: as runs use: MLFLOW_TRACKING_URI or ./mlruns)")
    parser.add_argument("--dataset", action="append", help="report this dataset only (repeatable)")
    parser.add_argument("--out", default="reports", help="output folder (default: reports)")
    parser.add_argument("--cache-dir", type=Path, help="feature cache to read features from (default: as runs use; else MLflow's copies)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # predictions and features are fetched quietly
    uri = args.tracking_uri or resolve_uri(None)
    try:
        open_store(uri)  # a damaged or unreachable store: one line, not a traceback
    except ConfigError as err:
        print(f"elm_audio.report: {err}", file=sys.stderr)
        return 2
    for line in refused_experiments(uri):
        print(line)
    found = experiments(uri, args.dataset)
    if not found:
        wanted = f" for {', '.join(args.dataset)}" if args.dataset else ""
        print(f"elm_audio.report: no elm_audio runs{wanted} in {uri}", file=sys.stderr)
        return 1
    for dataset, experiment_id in sorted(found.items()):
        for report in build_all(uri, dataset, experiment_id, Path(args.out), args.cache_dir):
            kind = "" if report.kind == "multiclass" else f" ({report.kind})"
            print(f"{dataset}{kind}: {len(report.summary)} cell(s) compared")
            for note in report.answer + report.notes:
                print(f"  {one_line(note)}")  # what a run's tags say cannot start lines of its own
            for path in report.files:
                print(f"  wrote {path}")
            if report.run_id:
                print(f"  logged as MLflow run {report.run_id}")
                print(f"  browse       {ui_link(uri, experiment_id, report.run_id)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
