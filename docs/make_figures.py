"""Regenerates the pictures of docs/reports.md from the code as it stands: a small grid on the
built-in synth dataset (180 generated clips, six classes, five folds), then the report's figures
built from its runs as ``python -m elm_audio.report`` builds them, with the chance line.

    python docs/make_figures.py [--workdir DIR [--reuse]]

The grid: front-ends temporal, timbral_temporal, cnn_7x96 and mfcc at both feature sizes with
the SVM and the ELM (seed 0), and temporal again with seed 1 (the CKA map's seed control). It
runs in ``DIR`` (default: a temporary folder, removed afterwards), with its own MLflow store and
feature cache, and takes about seven minutes on two cores; ``--reuse`` draws the figures again
from the runs a previous call left in ``DIR``, in seconds. It writes docs/bars_synth.png,
significance.png, cost.png, cka_synth.png, classes_synth.png and confusion_synth.png (the best
run's own confusion_matrix.png), and prints the notes docs/reports.md quotes.
docs/mlflow_runs.png, a screenshot of MLflow's UI, is not made here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure

from elm_audio.report import classes, figures, similarity
from elm_audio.report.build import cell_pairs
from elm_audio.report.collect import experiments, load_runs
from elm_audio.report.probes import knn_agreement, knn_summary
from elm_audio.report.stats import select_best, summarize
from elm_audio.stores.tracking import DEFAULT_EXPERIMENT, download_artifact

DOCS = Path(__file__).resolve().parent
GRID = (
    ("frontend=temporal,timbral_temporal,cnn_7x96,mfcc", "feature_size=small,large", "classifier=svm,elm"),
    ("frontend=temporal", "feature_size=small,large", "seed=1"),
)
SIZE = "small"  # the size the single-size pictures show
SIGNIFICANCE = ("large", "svm")  # the cell whose significance map docs/significance.png shows
DPI = 110


def run_grid(workdir: Path) -> str:
    """Runs GRID in ``workdir`` as a user would; returns its MLflow store's URI."""
    env = {**os.environ, "ELM_AUDIO_CACHE": str(workdir / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    for overrides in GRID:
        command = [sys.executable, "-m", "elm_audio", "-m", *overrides, "hydra/sweeper=basic", "extract.progress=false"]
        print("running", " ".join(command[2:]), flush=True)
        subprocess.run(command, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    return f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"


def save(fig: Figure, name: str) -> None:
    fig.savefig(DOCS / name, dpi=DPI)
    print("wrote", DOCS / name)


@rc_context({"text.parse_math": False})
def make_figures(uri: str, cache_dir: Path) -> None:
    best = select_best(load_runs(uri, experiments(uri, ["synth"])["synth"]))
    summary = summarize(best)
    n_classes = figures.class_count(best)
    save(figures.bars(summary, SIZE, f"synth: feature size {SIZE}", n_classes), "bars_synth.png")
    save(figures.cost(summary, "synth: accuracy against cost", n_classes), "cost.png")
    size, clf = SIGNIFICANCE
    cell = summary[(summary["feature_size"] == size) & (summary["classifier"] == clf)]
    order = [fe for fe in figures.frontend_order(summary) if fe in set(cell["frontend"])]
    pairs = cell_pairs(uri, best, size, clf, DEFAULT_EXPERIMENT)
    save(figures.significance(pairs, order, f"synth: {size} · {clf}"), "significance.png")
    print(pairs[["a", "b", "mean_diff", "p", "p_holm"]].round(3).to_string(index=False))
    for s in similarity.similarities(uri, best, cache_dir):
        if s.feature_size == SIZE:
            save(similarity.figure(s, f"synth: {SIZE}"), "cka_synth.png")
            print("\n".join(similarity.notes(s)))
    mine, part = best[best["feature_size"] == SIZE], summary[summary["feature_size"] == SIZE]
    d = classes.two_best(uri, mine, part)
    save(classes.figure(d, f"synth: {SIZE}, class by class"), "classes_synth.png")
    print("\n".join(classes.notes(d, SIZE)))
    print("\n".join(knn_agreement(summary, knn_summary(best))))
    top = part.sort_values("mean", ascending=False).iloc[0]
    runs = mine[(mine["frontend"] == top["frontend"]) & (mine["classifier"] == top["classifier"])]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(download_artifact(uri, runs["run_id"].iloc[0], "confusion_matrix.png", tmp), DOCS / "confusion_synth.png")
    print("wrote", DOCS / "confusion_synth.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="run the grid here and keep it (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true", help="draw from the runs already in --workdir; run no grid")
    args = parser.parse_args()
    if args.reuse and not args.workdir:
        parser.error("--reuse needs --workdir")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}" if args.reuse else run_grid(workdir)
        make_figures(uri, workdir / "cache")


if __name__ == "__main__":
    main()
