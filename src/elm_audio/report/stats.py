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
LEVEL = 0.95  # of every interval
ALPHA = 0.05  # of every test's verdict


def why_left_out(run: pd.Series) -> str | None:
    """Why a run cannot enter the comparison (None: it can): not finished, values the store should
    not hold (``distrusted``, see trust.py), or finished without a finite val_accuracy (what
    chooses it) or test_accuracy (what it reports; NaN if a fold is)."""
    if run["status"] != "FINISHED":
        return {"RUNNING": "still running", "SCHEDULED": "still scheduled"}.get(run["status"], str(run["status"]).lower())
    if isinstance(run.get("distrusted"), str):
        return run["distrusted"]
    for metric in ("val_accuracy", "test_accuracy"):
        v = pd.to_numeric(run[metric], errors="coerce")
        if pd.isna(v) or not np.isfinite(v):  # MLflow's table shows a metric never logged as NaN too
            return f"finished without a finite {metric} (not logged, or NaN)"
    return None


def left_out(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run the comparison leaves out, with what it was and why."""
    reasons = runs.apply(why_left_out, axis=1) if len(runs) else pd.Series(dtype=object)
    out = runs.loc[reasons.notna(), ["run_id", *CELL, "seed", "status"]].copy()
    out["reason"] = reasons[reasons.notna()]
    return out.reset_index(drop=True)


def select_best(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell and seed: the finished run with the best val_accuracy (the earliest
    on ties), with ``n_runs``, how many usable finished runs it was chosen from (runs that
    ``left_out`` lists are not among them)."""
    usable = runs.apply(why_left_out, axis=1).isna() if len(runs) else pd.Series(dtype=bool)
    done = runs[usable]
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
        low, high = interval(group, chosen)
        out.append(
            {
                **dict(zip(CELL, cell)),
                "mean": group["accuracy"].mean(),
                "ci_low": low,
                "ci_high": high,
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


def interval(scores_: pd.DataFrame, chosen: pd.DataFrame) -> tuple[float, float]:
    """A cell's 95% interval. Fold datasets: from the corrected variance of the per-fold
    accuracies (seeds averaged within a fold), a t-interval clipped to [0, 1] (with few folds
    and a wide spread it reaches past the bounds); fixed partitions: Wilson's over the test
    clips, which stays within them."""
    per_fold = scores_.groupby("fold")["accuracy"].mean()
    if set(per_fold.index) == {"test"}:
        n = chosen["n_test_clips"].dropna()
        if n.empty:
            return np.nan, np.nan
        return wilson(per_fold.iloc[0] * int(n.iloc[0]), int(n.iloc[0]), LEVEL)
    if len(per_fold) < 3:
        return np.nan, np.nan
    protocol = chosen["protocol"].dropna().iloc[0] if chosen["protocol"].notna().any() else "honest"
    ratio = test_train_ratio(protocol, len(per_fold))
    mean = per_fold.mean()
    half = stats.t.ppf(0.5 + LEVEL / 2, len(per_fold) - 1) * np.sqrt((1 / len(per_fold) + ratio) * per_fold.var(ddof=1))
    return max(0.0, mean - half), min(1.0, mean + half)  # clipped: an accuracy lies in [0, 1]


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


def test_train_ratio(protocol: str, n_folds: int) -> float:
    """n_test / n_train of a fold protocol: a fold tested, k-2 trained on (honest: one more
    validates) or k-1 (the paper's)."""
    return 1.0 / (n_folds - (2 if protocol == "honest" else 1))


def corrected_t(diffs: np.ndarray, ratio: float, level: float = 0.95) -> dict[str, float]:
    """Nadeau & Bengio's (2003) corrected resampled t-test on per-fold differences: the
    variance of the mean is (1/n + n_test/n_train) s^2, not s^2/n, because the folds' training
    sets overlap. Returns the mean difference, its interval, t and the two-sided p (n-1 df)."""
    d = np.asarray(diffs, float)
    n = len(d)
    mean = float(d.mean()) if n else np.nan
    if n < 2:
        return {"mean_diff": mean, "ci_low": np.nan, "ci_high": np.nan, "statistic": np.nan, "p": np.nan}
    se = np.sqrt((1.0 / n + ratio) * d.var(ddof=1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * se
    if se == 0:  # no spread: identical (p = 1) or a constant shift (p = 0)
        t, p = (0.0, 1.0) if mean == 0 else (np.copysign(np.inf, mean), 0.0)
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), n - 1))
    return {"mean_diff": mean, "ci_low": mean - half, "ci_high": mean + half, "statistic": float(t), "p": p}


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Exact McNemar test of two classifiers' per-clip correctness on one test set: a binomial
    test on the clips where they disagree; with the Wald interval of the difference of paired
    proportions, (b - c)/n +- z sqrt(b + c - (b - c)^2/n)/n."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    only_a, only_b, n = int((a & ~b).sum()), int((~a & b).sum()), len(a)
    mean = (only_a - only_b) / n
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)
    z = stats.norm.ppf(0.5 + level / 2)
    se = np.sqrt(max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0)) / n
    return {"mean_diff": mean, "ci_low": mean - z * se, "ci_high": mean + z * se, "statistic": float(min(only_a, only_b)), "p": p}


def wilson(correct: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a proportion of ``correct`` out of ``n``."""
    if n == 0:
        return np.nan, np.nan
    z = stats.norm.ppf(0.5 + level / 2)
    phat = correct / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def fold_table(best: pd.DataFrame, frontend: str, feature_size: str, classifier: str, experiment: str) -> pd.Series:
    """A cell's accuracy per fold, averaged over its seeds (seeds are not replications of the data)."""
    long = scores(best)
    mine = long[(long["frontend"] == frontend) & (long["feature_size"] == feature_size)
                & (long["classifier"] == classifier) & (long["experiment"] == experiment)]  # fmt: skip
    return mine.groupby("fold")["accuracy"].mean()


def pairwise(
    best: pd.DataFrame,
    feature_size: str,
    classifier: str,
    experiment: str = "default",
    correct: dict[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """Every pair of front-ends at one size, classifier and preset, with Holm's correction over
    the pairs. Fold datasets: the corrected resampled t-test over the folds both have (seeds
    averaged within a fold). Fixed partitions: the exact McNemar test on the test clips, given
    ``correct`` (front-end -> per-clip correctness, majority over seeds)."""
    part = best[(best["feature_size"] == feature_size) & (best["classifier"] == classifier) & (best["experiment"] == experiment)]
    frontends = sorted(part["frontend"].unique())
    partitions = all(set(f) == {"test"} for f in part["folds"])
    rows = []
    for x, y in itertools.combinations(frontends, 2):
        if partitions:
            if correct is None or x not in correct or y not in correct:
                continue
            common = correct[x].index.intersection(correct[y].index)
            if common.empty:  # one has no predictions.csv (an older or interrupted run): nothing to test on
                continue
            result = mcnemar_exact(correct[x].loc[common].to_numpy(), correct[y].loc[common].to_numpy())
            rows.append({"a": x, "b": y, "test": "exact McNemar", "n": len(common), **result})
            continue
        fa = fold_table(best, x, feature_size, classifier, experiment)
        fb = fold_table(best, y, feature_size, classifier, experiment)
        common = fa.index.intersection(fb.index)
        protocol = part["protocol"].dropna().iloc[0] if part["protocol"].notna().any() else "honest"
        ratio = test_train_ratio(protocol, len(common)) if len(common) > 2 else np.nan
        result = corrected_t((fa.loc[common] - fb.loc[common]).to_numpy(), ratio)
        rows.append({"a": x, "b": y, "test": "corrected resampled t", "n": len(common), **result})
    columns = ["a", "b", "test", "n", "mean_diff", "ci_low", "ci_high", "statistic", "p"]
    pairs = pd.DataFrame(rows, columns=columns)
    tested = pairs["p"].notna()
    pairs["p_holm"] = np.nan
    if tested.any():
        pairs.loc[tested, "p_holm"] = holm(pairs.loc[tested, "p"].to_numpy())
    return pairs
