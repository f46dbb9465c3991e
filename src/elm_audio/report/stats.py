"""Choosing, summarizing and comparing runs.

For every (front-end, feature size, classifier, seed) the run with the best ``val_accuracy`` is
chosen (a sweep's best trial); its per-fold test accuracies are what is compared. Over folds and
seeds that gives a fold x seed table of accuracies per cell, from which the report separates the
variance over folds (the data) from the variance over seeds (the random weights).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats

# A cell of the comparison; a preset's runs (experiment=paper) form cells of their own.
CELL = ["frontend", "feature_size", "classifier", "experiment"]


def select_best(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell and seed: the finished run with the best val_accuracy (the earliest
    on ties), with ``n_runs``, how many finished runs it was chosen from."""
    done = runs[(runs["status"] == "FINISHED") & runs["val_accuracy"].notna()]
    if done.empty:
        return done.assign(n_runs=pd.Series(dtype=int))
    keys = CELL + ["seed"]
    ordered = done.sort_values(["val_accuracy", "start_time"], ascending=[False, True])
    best = ordered.groupby(keys, dropna=False, sort=False).head(1).copy()
    counts = done.groupby(keys, dropna=False).size().rename("n_runs")
    return best.join(counts, on=keys).reset_index(drop=True)


def scores(best: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per chosen run and fold."""
    rows = [
        {**{k: r[k] for k in CELL}, "seed": r["seed"], "fold": fold, "accuracy": acc}
        for _, r in best.iterrows()
        for fold, acc in r["folds"].items()
    ]
    return pd.DataFrame(rows, columns=[*CELL, "seed", "fold", "accuracy"])


def summarize(best: pd.DataFrame) -> pd.DataFrame:
    """Per cell: mean test accuracy over folds and seeds; the standard deviation over folds
    (averaged over seeds) and over seeds (of the per-seed means); counts; cost."""
    long = scores(best)
    out = []
    for cell, group in long.groupby(CELL, sort=False):
        per_seed = group.groupby("seed", dropna=False)["accuracy"]
        chosen = best.set_index(CELL).loc[[cell]]
        out.append(
            {
                **dict(zip(CELL, cell)),
                "mean": group["accuracy"].mean(),
                "std_folds": float(np.nanmean(per_seed.std(ddof=0))) if group["fold"].nunique() > 1 else np.nan,
                "std_seeds": per_seed.mean().std(ddof=0) if per_seed.ngroups > 1 else np.nan,
                "n_seeds": per_seed.ngroups,
                "n_folds": group["fold"].nunique(),
                "n_runs": int(chosen["n_runs"].sum()),
                "gflops_per_clip": chosen["gflops_per_clip"].mean(),
                "extract_ms_per_clip": extraction_ms_per_clip(chosen),
                "input": chosen["input"].iloc[0],
            }
        )
    return pd.DataFrame(out)


def extraction_ms_per_clip(rows: pd.DataFrame) -> float:
    ok = rows["extract_seconds"].notna() & (rows["n_clips"] > 0)
    if not ok.any():
        return np.nan
    return float((rows.loc[ok, "extract_seconds"] / rows.loc[ok, "n_clips"]).mean() * 1000)


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, kept monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def paired_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided paired t-test over matched (seed, fold) accuracies: (t, p)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    if len(diff) < 2:
        return np.nan, np.nan
    if np.allclose(diff, diff[0]):  # no spread: identical (p = 1) or a constant shift (p = 0)
        return (0.0, 1.0) if np.isclose(diff[0], 0.0) else (np.copysign(np.inf, diff[0]), 0.0)
    t, p = stats.ttest_rel(a, b)
    return float(t), float(p)


def pairwise(best: pd.DataFrame, feature_size: str, classifier: str, experiment: str = "default") -> pd.DataFrame:
    """Every pair of front-ends at one size and classifier, on the (seed, fold) pairs both
    have, with Holm's correction over the pairs."""
    long = scores(best)
    long = long[(long["feature_size"] == feature_size) & (long["classifier"] == classifier) & (long["experiment"] == experiment)]
    tables = {fe: g.set_index(["seed", "fold"])["accuracy"] for fe, g in long.groupby("frontend")}
    rows = []
    for x, y in itertools.combinations(sorted(tables), 2):
        common = tables[x].index.intersection(tables[y].index)
        a, b = tables[x].loc[common].to_numpy(), tables[y].loc[common].to_numpy()
        t, p = paired_test(a, b)
        rows.append({"a": x, "b": y, "n_pairs": len(common), "mean_diff": float(np.mean(a - b)) if len(common) else np.nan, "t": t, "p": p})
    pairs = pd.DataFrame(rows, columns=["a", "b", "n_pairs", "mean_diff", "t", "p"])
    tested = pairs["p"].notna()
    pairs["p_holm"] = np.nan
    if tested.any():
        pairs.loc[tested, "p_holm"] = holm(pairs.loc[tested, "p"].to_numpy())
    return pairs
