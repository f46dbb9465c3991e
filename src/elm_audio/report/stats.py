"""Choosing, summarizing and comparing runs.

For every (front-end, feature size, classifier, seed) the run with the best validation score is
chosen (a sweep's best trial); its per-fold test scores are what is compared. The score is the
primary metric of the runs' kind (kinds.py: accuracy, mAP, R²; collect.load_runs's ``val_score``
and ``folds``), so everything here works on any of them. Over folds and seeds that gives a fold x
seed table of scores per cell, from which the report separates the variance over folds (the data)
from the variance over seeds (the random weights).

On fixed partitions two front-ends are compared on the test clips: multiclass by the exact
McNemar test, multilabel and regression by a paired bootstrap over the clips that recomputes the
metric from both runs' predictions (``clip_bootstrap``).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pandas as pd
from scipy import sparse, stats

from . import kinds
from .collect import ClipScores

# A cell of the comparison; a preset's runs (experiment=paper) form cells of their own.
CELL = ["frontend", "feature_size", "classifier", "experiment"]
LEVEL = 0.95  # of every interval
ALPHA = 0.05  # of every test's verdict
CLIP_BOOTSTRAP = 1000  # resamples of the test clips, paired bootstrap and a partition's interval
CLIP_SEED = 0  # the resamples' seed: the same draws for every pair with as many clips


def metric_of(frame: pd.DataFrame | pd.Series) -> kinds.Metric:
    """The primary metric of runs, a cell or a summary (accuracy where it says none)."""
    if isinstance(frame, pd.Series):
        name = frame.get("metric")
    else:
        name = frame["metric"].dropna().iloc[0] if "metric" in frame and frame["metric"].notna().any() else None
    return kinds.BY_NAME.get(name, kinds.ACCURACY) if isinstance(name, str) else kinds.ACCURACY


def _value(run: pd.Series, generic: str, multiclass: str) -> object:
    return run[generic] if generic in run.index else run.get(multiclass)


def why_left_out(run: pd.Series) -> str | None:
    """Why a run cannot enter the comparison (None: it can): not finished, values the store should
    not hold (``distrusted``, see trust.py), or finished without a finite validation score (what
    chooses it: val_accuracy, val_map, val_r2) or test score (what it reports; NaN if a fold is)."""
    if run["status"] != "FINISHED":
        return {"RUNNING": "still running", "SCHEDULED": "still scheduled"}.get(run["status"], str(run["status"]).lower())
    if isinstance(run.get("distrusted"), str):
        return run["distrusted"]
    name = metric_of(run).name
    for prefix in ("val", "test"):
        metric = f"{prefix}_{name}"
        v = pd.to_numeric(_value(run, f"{prefix}_score", metric), errors="coerce")
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
    """One row per cell and seed: the finished run with the best validation score (the earliest
    on ties), with ``n_runs``, how many usable finished runs it was chosen from (runs that
    ``left_out`` lists are not among them)."""
    usable = runs.apply(why_left_out, axis=1).isna() if len(runs) else pd.Series(dtype=bool)
    done = runs[usable]
    if done.empty:
        return done.assign(n_runs=pd.Series(dtype=int))
    keys = CELL + ["seed"]
    by = "val_score" if "val_score" in done else "val_accuracy"
    ordered = done.sort_values([by, "start_time"], ascending=[False, True])
    best = ordered.groupby(keys, dropna=False, sort=False).head(1).copy()
    counts = done.groupby(keys, dropna=False).size().rename("n_runs")
    return best.join(counts, on=keys).reset_index(drop=True)


def scores(best: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per chosen run and fold."""
    rows = [
        {**{k: r[k] for k in CELL}, "seed": r["seed"], "fold": fold, "score": acc}
        for _, r in best.iterrows()
        for fold, acc in r["folds"].items()
    ]
    return pd.DataFrame(rows, columns=[*CELL, "seed", "fold", "score"])


def summarize(best: pd.DataFrame) -> pd.DataFrame:
    """Per cell: mean test score over folds and seeds; the standard deviation over folds
    (averaged over seeds) and over seeds (of the per-seed means); counts; cost. Where the runs
    have a kind (collect.load_runs), also ``kind`` and ``metric``, and for multilabel and
    regression ``secondary`` (roc_auc, mae) with ``secondary_mean`` and ``secondary_std_folds``
    and, multilabel, ``chance`` (the mean of the runs' test_chance_map)."""
    long = scores(best)
    out = []
    for cell, group in long.groupby(CELL, sort=False):
        per_seed = group.groupby("seed", dropna=False)["score"]
        chosen = best.set_index(CELL).loc[[cell]]
        low, high = interval(group, chosen)
        out.append(
            {
                **dict(zip(CELL, cell)),
                "mean": group["score"].mean(),
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
                **kind_columns(chosen),
            }
        )
    return pd.DataFrame(out)


def kind_columns(chosen: pd.DataFrame) -> dict:
    """A cell's kind, metric and secondary metric (none for runs without a kind: tables built
    by hand, as the figures' tests do)."""
    if "kind" not in chosen:
        return {}
    kind = chosen["kind"].iloc[0]
    out = {"kind": kind, "metric": metric_of(chosen).name}
    second = kinds.secondary(kind)
    if second is not None and "secondary_folds" in chosen:
        long = pd.DataFrame([{"seed": s, "fold": f, "v": v} for s, d in zip(chosen["seed"], chosen["secondary_folds"])
                             for f, v in d.items()])  # fmt: skip
        per_seed = long.groupby("seed", dropna=False)["v"] if len(long) else None
        out.update(secondary=second.name, secondary_mean=long["v"].mean() if len(long) else np.nan,
                   secondary_std_folds=float(np.nanmean(per_seed.std(ddof=0))) if len(long) and long["fold"].nunique() > 1 else np.nan)
    if kind == kinds.MULTILABEL and "chance_score" in chosen:
        out["chance"] = pd.to_numeric(chosen["chance_score"], errors="coerce").mean()
    return out


def interval(scores_: pd.DataFrame, chosen: pd.DataFrame) -> tuple[float, float]:
    """A cell's 95% interval. Fold datasets: from the corrected variance of the per-fold
    scores (seeds averaged within a fold), a t-interval clipped to the metric's range ([0, 1];
    R² at most 1: with few folds and a wide spread it reaches past the bounds); fixed
    partitions: multiclass, Wilson's over the test clips, which stays within them; multilabel
    and regression, a bootstrap over the clips that needs their predictions (the report's build
    fills it in: ``clip_interval``), NaN here."""
    per_fold = scores_.groupby("fold")["score"].mean()
    metric = metric_of(chosen)
    if set(per_fold.index) == {"test"}:
        if metric is not kinds.ACCURACY:
            return np.nan, np.nan
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
    return tuple(float(v) for v in metric.clip([mean - half, mean + half]))  # clipped: an accuracy lies in [0, 1]


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
    """A cell's score per fold, averaged over its seeds (seeds are not replications of the data)."""
    long = scores(best)
    mine = long[(long["frontend"] == frontend) & (long["feature_size"] == feature_size)
                & (long["classifier"] == classifier) & (long["experiment"] == experiment)]  # fmt: skip
    return mine.groupby("fold")["score"].mean()


def pairwise(
    best: pd.DataFrame,
    feature_size: str,
    classifier: str,
    experiment: str = "default",
    correct: dict[str, pd.Series] | None = None,
    clips: dict[str, list[ClipScores]] | None = None,
) -> pd.DataFrame:
    """Every pair of front-ends at one size, classifier and preset, with Holm's correction over
    the pairs. Fold datasets: the corrected resampled t-test over the folds both have (seeds
    averaged within a fold). Fixed partitions: multiclass, the exact McNemar test on the test
    clips, given ``correct`` (front-end -> per-clip correctness, majority over seeds);
    multilabel and regression, the paired bootstrap over the test clips (``clip_bootstrap``),
    given ``clips`` (front-end -> its runs' predictions, one per seed)."""
    part = best[(best["feature_size"] == feature_size) & (best["classifier"] == classifier) & (best["experiment"] == experiment)]
    frontends = sorted(part["frontend"].unique())
    partitions = all(set(f) == {"test"} for f in part["folds"])
    rows = []
    for x, y in itertools.combinations(frontends, 2):
        if partitions and clips is not None:
            if not clips.get(x) or not clips.get(y):
                continue
            result = clip_bootstrap(clips[x], clips[y], metric_of(part).name)
            if result is not None:
                rows.append({"a": x, "b": y, "test": "paired bootstrap", **result})
            continue
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


@functools.lru_cache(maxsize=4)
def clip_draws(n: int, bootstrap: int = CLIP_BOOTSTRAP, seed: int = CLIP_SEED) -> np.ndarray:
    """(1 + bootstrap, n) clip weights: all ones (the estimate itself), then the resamples of
    the clips with replacement as counts (a multinomial draw each), seeded; read-only (kept
    for the next pair with as many clips)."""
    rng = np.random.default_rng(seed)
    w = np.vstack([np.ones((1, n)), rng.multinomial(n, np.full(n, 1 / n), size=bootstrap)]).astype(np.float64)
    w.flags.writeable = False
    return w


def weighted_map(truth: np.ndarray, scores: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Macro average precision over tags (scikit-learn's average_precision_score per tag, then
    the mean) for each row of clip weights ``w`` (draws x clips; a clip drawn twice counts
    twice), all draws at once. Per tag, the thresholds are the positive clips' distinct scores,
    highest first; AP = sum over thresholds of (positive weight at it) x (precision at it), over
    the positive weight. A clip falls in the segment of the lowest threshold it reaches, so one
    sparse product gives every draw's weight per segment and a cumulative sum the weight
    scored at or above each threshold: O(clips x draws) per tag. A tag without a positive clip
    in a draw is left out of that draw's mean, as the runs leave it out of a split's; NaN where
    every tag is."""
    wt = np.ascontiguousarray(np.asarray(w, dtype=np.float64).T)  # clips x draws
    n = len(wt)
    total, count = np.zeros(wt.shape[1]), np.zeros(wt.shape[1])
    for t in range(truth.shape[1]):
        s, positive = scores[:, t], np.flatnonzero(truth[:, t] > 0)
        if not len(positive):
            continue
        thresholds = np.unique(s[positive])[::-1]
        segment = np.searchsorted(-thresholds, -s, side="left")  # the first threshold at or below the score
        reached = np.flatnonzero(segment < len(thresholds))
        shape = (len(thresholds), n)
        seen = np.cumsum(sparse.csr_matrix((np.ones(len(reached)), (segment[reached], reached)), shape=shape) @ wt, axis=0)
        gained = sparse.csr_matrix((np.ones(len(positive)), (segment[positive], positive)), shape=shape) @ wt
        tp = np.cumsum(gained, axis=0)
        precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        positives = tp[-1]
        has = positives > 0
        total += np.divide((gained * precision).sum(axis=0), positives, out=np.zeros_like(positives), where=has)
        count += has
    return np.divide(total, count, out=np.full(len(total), np.nan), where=count > 0)


def weighted_r2(truth: np.ndarray, predicted: np.ndarray, w: np.ndarray) -> np.ndarray:
    """R² (scikit-learn's r2_score) for each row of clip weights ``w``; NaN where a draw's
    targets are all equal."""
    w = w.astype(np.float64)
    y = truth - truth.mean()  # R² does not change with a shift of both; the sums stay small
    yhat = predicted - truth.mean()
    n = w.sum(axis=1)
    mean = w @ y / n
    total = w @ (y * y) - n * mean * mean
    residual = w @ ((y - yhat) ** 2)
    return np.divide(total - residual, total, out=np.full(len(w), np.nan), where=total > 1e-12 * np.maximum(1.0, w @ (y * y)))


def metric_draws(run: ClipScores, metric: str, w: np.ndarray) -> np.ndarray:
    """A run's metric (``map`` or ``r2``) on the clips as each row of ``w`` weighs them."""
    if metric == kinds.MAP.name:
        return weighted_map(run.truth, run.scores, w)
    if metric == kinds.R2.name:
        return weighted_r2(run.truth, run.scores, w)
    raise ValueError(f"no clip bootstrap for metric {metric}")


_DRAWS: dict[tuple, np.ndarray] = {}  # (run id, metric, clips, resamples) -> the run's metric per resample
_DRAWS_KEPT = 512


def _run_draws(run: ClipScores, metric: str, clips: pd.Index, w: np.ndarray) -> np.ndarray:
    """``metric_draws`` of one run on ``clips``, remembered: a run meets every other front-end of
    its column on the same clips and resamples, and is computed once."""
    key = (run.run_id, metric, hash(tuple(clips)), w.shape, hash(run.scores.tobytes()), hash(run.truth.tobytes()))
    if key not in _DRAWS:
        if len(_DRAWS) >= _DRAWS_KEPT:
            _DRAWS.pop(next(iter(_DRAWS)))
        _DRAWS[key] = metric_draws(run.take(clips), metric, w)
    return _DRAWS[key]


def _seed_mean(runs: list[ClipScores], metric: str, clips: pd.Index, w: np.ndarray) -> np.ndarray:
    """The mean over a cell's runs (its seeds) of their metric, per row of ``w``."""
    with np.errstate(invalid="ignore"):
        return np.nanmean([_run_draws(r, metric, clips, w) for r in runs], axis=0)


def common_clips(runs: list[ClipScores]) -> pd.Index:
    common = runs[0].clips
    for r in runs[1:]:
        common = common.intersection(r.clips)
    return common.sort_values()


def clip_bootstrap(a: list[ClipScores], b: list[ClipScores], metric: str, bootstrap: int = CLIP_BOOTSTRAP,
                   level: float = LEVEL) -> dict | None:  # fmt: skip
    """Paired bootstrap of two cells on the test clips they share: the clips resampled with
    replacement ``bootstrap`` times (seeded), the metric recomputed on each resample from both
    cells' predictions (the mean over each cell's seeds), the same clips for both. The
    difference a - b, its percentile interval, and the two-sided p-value of no difference: the
    share of resampled differences at least as far from the observed one as the observed one is
    from 0 (the bootstrap distribution shifted to the null; (1 + count) / (1 + resamples), so
    never 0). None where they share fewer than 2 clips."""
    clips = common_clips(a + b)
    if len(clips) < 2:
        return None
    w = clip_draws(len(clips), bootstrap)
    va, vb = _seed_mean(a, metric, clips, w), _seed_mean(b, metric, clips, w)
    d = va - vb
    observed, draws = float(d[0]), d[1:][np.isfinite(d[1:])]
    if not np.isfinite(observed) or not len(draws):
        return {"n": len(clips), "mean_diff": observed, "ci_low": np.nan, "ci_high": np.nan, "statistic": np.nan, "p": np.nan}
    low, high = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
    tol = 1e-12 * max(1.0, abs(observed))
    p = (1 + int(np.sum(np.abs(draws - observed) >= abs(observed) - tol))) / (1 + len(draws))
    return {"n": len(clips), "mean_diff": observed, "ci_low": float(low), "ci_high": float(high), "statistic": observed, "p": float(p)}


def clip_interval(runs: list[ClipScores], metric: str, bootstrap: int = CLIP_BOOTSTRAP, level: float = LEVEL) -> tuple[float, float]:
    """A cell's interval on fixed partitions, multilabel or regression: the percentile bootstrap
    over its test clips of its metric (the mean over its seeds' runs), clipped to the metric's
    range (R² at most 1; mAP within [0, 1])."""
    if not runs:
        return np.nan, np.nan
    clips = common_clips(runs)
    if len(clips) < 2:
        return np.nan, np.nan
    values = _seed_mean(runs, metric, clips, clip_draws(len(clips), bootstrap))[1:]
    values = values[np.isfinite(values)]
    if not len(values):
        return np.nan, np.nan
    low, high = kinds.BY_NAME[metric].clip(np.percentile(values, [50 * (1 - level), 50 * (1 + level)]))
    return float(low), float(high)
