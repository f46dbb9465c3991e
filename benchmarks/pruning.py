"""What pruning over folds saves a sweep, and what it costs it: the same 40-trial SVM search on a
10-fold synthetic dataset without a pruner and with the search sweeper's default one (or each
variant ``--pruner`` gives), each with several sampler seeds.

    python benchmarks/pruning.py [--json out.json] [--seeds 0 1 2] [--trials 40] [--pruner OVERRIDE ... [--pruner ...]]

Every sweep runs as a user runs one (``python -m elm_audio -m ...``, the basic launcher, an
in-memory study), in a folder of its own (its own MLflow store), all sharing one feature cache
that a first run fills: no sweep extracts. Per sweep: the wall time, the fold fits (the
``fold<k>_val_accuracy`` metrics its trials logged: one per fold fitted), the pruned trials and
the best val_accuracy found. The pruned sweeps' best should stay within the spread of the
unpruned sweeps' over the seeds (only the sampler's seed changes: ``hydra.sweeper.sampler.seed``;
the features, drawn with ``seed``, are the same).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

DATA = [
    "dataset=synth", "dataset.n_folds=10", "dataset.clips_per_class=20", "dataset.duration=2.0",
    "extract.progress=false",
]  # fmt: skip
FOLD_FIT = re.compile(r"fold\d+_val_accuracy")


def elm_audio(cwd: Path, cache: Path, *overrides: str) -> float:
    """Run ``python -m elm_audio <overrides>`` in ``cwd``; returns its wall time."""
    env = {**os.environ, "ELM_AUDIO_CACHE": str(cache)}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "elm_audio", *overrides], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"python -m elm_audio {' '.join(overrides)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def sweep(root: Path, cache: Path, name: str, overrides: list[str]) -> dict:
    cwd = root / name
    cwd.mkdir()
    seconds = elm_audio(cwd, cache, "-m", *DATA, *overrides)
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("elm_audio/synth").experiment_id
    runs = client.search_runs([experiment], max_results=10_000)
    (parent,) = [r for r in runs if r.data.tags.get("elm_audio.role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("elm_audio.role") == "trial"]
    best = parent.data.metrics
    return {
        "sweep": name,
        "wall_seconds": round(seconds, 1),
        "trials": len(trials),
        "pruned": sum(r.data.tags.get("pruned") == "true" for r in trials),
        "fold_fits": sum(bool(FOLD_FIT.fullmatch(m)) for r in trials for m in r.data.metrics),
        "best_val_accuracy": round(best["best_val_accuracy"], 4),
        "best_test_accuracy": round(best.get("best_test_accuracy", float("nan")), 4),
        "pruner": parent.data.params.get("pruner"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampler seeds (default 0 1 2)")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument(
        "--pruner", action="append", nargs="*", metavar="OVERRIDE",
        help="the overrides of one pruned variant, e.g. hydra/sweeper/pruner=successive_halving (repeat for more); "
        "default: one variant, the search sweeper's own pruner",
    )  # fmt: skip
    parser.add_argument("--folder", type=Path, help="keep the sweeps' folders here (default: a temporary folder)")
    args = parser.parse_args()
    variants = args.pruner or [[]]

    with tempfile.TemporaryDirectory() as tmp:
        root = args.folder or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        cache = root / "cache"
        warm = root / "extract"
        warm.mkdir()
        extract_seconds = elm_audio(warm, cache, *DATA)  # fills the cache: no sweep below extracts
        rows = []
        for seed in args.seeds:
            given = [f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.sampler.seed={seed}"]
            rows.append({"seed": seed, **sweep(root, cache, f"unpruned-{seed}", [*given, "hydra/sweeper/pruner=none"])})
            for v, overrides in enumerate(variants):
                rows.append({"seed": seed, **sweep(root, cache, f"pruned{v}-{seed}", [*given, *overrides])})

    print(f"{'sweep':<12} {'seed':>4} {'wall s':>7} {'trials':>6} {'pruned':>6} {'fold fits':>9} {'best val':>8} {'its test':>8}")
    for r in rows:
        print(
            f"{r['sweep']:<12} {r['seed']:>4} {r['wall_seconds']:>7.1f} {r['trials']:>6} {r['pruned']:>6} "
            f"{r['fold_fits']:>9} {r['best_val_accuracy']:>8.4f} {r['best_test_accuracy']:>8.4f}"
        )
    print(f"features extracted once beforehand ({extract_seconds:.0f} s); {os.cpu_count()} cores")
    unpruned = [r for r in rows if r["sweep"].startswith("unpruned")]
    spread = (min(r["best_val_accuracy"] for r in unpruned), max(r["best_val_accuracy"] for r in unpruned))
    base = {k: sum(r[k] for r in unpruned) for k in ("wall_seconds", "fold_fits")}
    print(f"unpruned: {base['fold_fits']} fold fits, {base['wall_seconds']:.0f} s; best val_accuracy {spread[0]:.4f} to {spread[1]:.4f} over the seeds")
    summaries = []
    for v in range(len(variants)):
        mine = [r for r in rows if r["sweep"].startswith(f"pruned{v}-")]
        fits, wall = sum(r["fold_fits"] for r in mine), sum(r["wall_seconds"] for r in mine)
        within = all(spread[0] <= r["best_val_accuracy"] for r in mine)
        summaries.append({
            "pruner": mine[0]["pruner"], "fold_fits": fits, "fold_fits_ratio": round(base["fold_fits"] / fits, 2),
            "wall_saved": round(1 - wall / base["wall_seconds"], 3), "best_within_unpruned_spread": within,
        })  # fmt: skip
        print(
            f"{mine[0]['pruner']}: {fits} fold fits ({base['fold_fits'] / fits:.2f}x fewer), {wall:.0f} s "
            f"({100 * (1 - wall / base['wall_seconds']):.0f}% saved); best val_accuracy "
            + ", ".join(f"{r['best_val_accuracy']:.4f}" for r in mine)
            + (" (within the unpruned spread or above)" if within else " (BELOW the unpruned spread)")
        )
    if args.json:
        machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
        args.json.write_text(json.dumps({"machine": machine, "rows": rows, "unpruned_best_spread": spread, "variants": summaries}, indent=2))


if __name__ == "__main__":
    main()
