"""The method's premise, tested on the user's runs: do front-ends that rank high with random
weights rank high once trained (weights=trained)? Kendall's tau and Spearman's rho between
the two rankings, with bootstrap intervals over folds, and the scatter of trained against
random accuracy."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from ..stores.tracking import TRAINED_SCORER
from . import kinds
from .figures import label_points, short
from .stats import ALPHA, metric_of, scores

MIN_FRONTENDS = 3
BOOTSTRAP = 2000


@dataclass
class Premise:
    feature_size: str
    experiment: str
    frontends: list[str]
    random: pd.Series  # front-end -> mean accuracy with random weights (its best classifier)
    trained: pd.Series  # front-end -> mean accuracy trained
    classifiers: dict[str, str]  # front-end -> the random runs' classifier used
    tau: float
    rho: float
    tau_ci: tuple[float, float]
    rho_ci: tuple[float, float]
    tau_p: float  # one-sided, exact: how often orderings drawn at random agree as well or better
    random_ci: pd.DataFrame  # front-end -> low, high: 95% bootstrap interval over folds
    trained_ci: pd.DataFrame
    n_folds: int
    metric: str = "accuracy"  # the primary metric ranked (kinds.py): accuracy, map, r2

    @property
    def unsettled(self) -> dict[str, int]:
        """Per ranking, the adjacent pairs whose intervals overlap."""
        return {
            "random": overlapping_neighbours(self.random, self.random_ci),
            "trained": overlapping_neighbours(self.trained, self.trained_ci),
        }

    @property
    def notes(self) -> list[str]:
        out = [
            f"{self.feature_size}: {len(self.frontends)} front-ends with both random and trained runs; "
            f"Kendall's tau {self.tau:+.2f} [{self.tau_ci[0]:+.2f}, {self.tau_ci[1]:+.2f}], Spearman's rho "
            f"{self.rho:+.2f} [{self.rho_ci[0]:+.2f}, {self.rho_ci[1]:+.2f}] (95% bootstrap over {self.n_folds} folds)"
        ]
        if len(self.frontends) < 5:
            out.append(f"  the evidence is thin: {len(self.frontends)} front-ends give few pairs to rank; add front-ends")
        for kind, n in self.unsettled.items():
            if n:
                out.append(f"  {n} neighbouring pair(s) in the {kind} ranking have overlapping 95% intervals: their order is not settled")
        chance = (
            f"p={self.tau_p:.3g} that {len(self.frontends)} front-ends ordered at random agree as well "
            f"(exact, one-sided; the least possible is 1/{len(self.frontends)}! = {1 / math.factorial(len(self.frontends)):.3g})"
        )
        if np.isnan(self.tau_ci[0]) or self.tau_ci[0] <= 0 <= self.tau_ci[1]:
            out.append(f"  the data cannot tell whether the rankings agree: tau's interval includes 0; {chance}")
        elif not self.tau_p < ALPHA:
            out.append(f"  the data cannot confirm that the rankings agree: {chance}")
        else:
            out.append(f"  the random-weight ranking predicts the trained one on these data: {chance}")
        return out


def rank_agreement(per_fold_random: pd.DataFrame, per_fold_trained: pd.DataFrame, seed: int = 0):
    """tau and rho of the per-front-end means (columns: front-ends, rows: folds), and their
    bootstrap intervals, resampling folds with replacement."""
    rng = np.random.default_rng(seed)
    folds = len(per_fold_random)
    picks = rng.integers(0, folds, (BOOTSTRAP, folds))
    r, t = (np.asarray(x, dtype=float)[picks].mean(axis=1) for x in (per_fold_random, per_fold_trained))
    draws = {"tau": kendall_tau_b(r, t), "rho": spearman_rho(r, t)}
    r, t = per_fold_random.mean(), per_fold_trained.mean()
    ci = {k: tuple(np.nanpercentile(v, [2.5, 97.5])) if np.isfinite(v).any() else (np.nan, np.nan) for k, v in draws.items()}
    return stats.kendalltau(r, t).statistic, stats.spearmanr(r, t).statistic, ci["tau"], ci["rho"]


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair of ``x`` and ``y`` (draws x front-ends), as
    scipy.stats.kendalltau computes it for one pair, for all the bootstrap's draws at once:
    concordant minus discordant pairs over the root of the pairs untied in x times those untied
    in y; NaN where either row is constant."""
    i, j = np.triu_indices(x.shape[1], 1)
    sx, sy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    return _ratio((sx * sy).sum(1), np.sqrt((sx * sx).sum(1) * (sy * sy).sum(1)))


def spearman_rho(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (ties share their mean rank), as scipy.stats.spearmanr
    for one pair: the Pearson correlation of the ranks; NaN where either row is constant."""
    rx, ry = (stats.rankdata(v, axis=1) for v in (x, y))
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    return _ratio((rx * ry).sum(1), np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1)))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def tau_p_value(random: pd.Series, trained: pd.Series) -> float:
    """The exact one-sided p-value of Kendall's tau: the share of the n! orderings of the
    front-ends that agree with the random-weight ranking at least as well as the trained one.
    Fold bootstraps say how stable the front-ends' means are; this says whether so few
    front-ends can show agreement at all (three cannot: 1/3! = 0.17)."""
    return float(stats.kendalltau(random, trained, alternative="greater").pvalue)


def intervals(per_fold: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Each front-end's 95% bootstrap interval (over folds) of its mean accuracy: columns low, high."""
    rng = np.random.default_rng(seed)
    draws = per_fold.to_numpy(dtype=float)[rng.integers(0, len(per_fold), (BOOTSTRAP, len(per_fold)))].mean(axis=1)
    return pd.DataFrame({"low": np.percentile(draws, 2.5, axis=0), "high": np.percentile(draws, 97.5, axis=0)}, index=per_fold.columns)


def overlapping_neighbours(means: pd.Series, ci: pd.DataFrame) -> int:
    """Adjacent front-ends in the ranking by mean whose intervals (``intervals``) overlap."""
    order = means.sort_values(ascending=False).index
    return int(sum(ci.at[a, "low"] <= ci.at[b, "high"] for a, b in zip(order, order[1:])))


def premises(best: pd.DataFrame) -> list[Premise]:
    long = scores(best)
    out = []
    for (size, experiment), part in long.groupby(["feature_size", "experiment"]):
        per_fold = part.groupby(["frontend", "classifier", "fold"])["score"].mean()  # seeds averaged
        means = per_fold.groupby(["frontend", "classifier"]).mean()
        trained = means.xs(TRAINED_SCORER, level="classifier") if TRAINED_SCORER in means.index.get_level_values(1) else pd.Series(dtype=float)
        random = means.drop(TRAINED_SCORER, level="classifier", errors="ignore")
        if random.empty:
            continue
        chosen = random.groupby(level="frontend").idxmax()  # the random runs' best classifier per front-end
        common = sorted(set(trained.index) & set(chosen.index))
        if len(common) < MIN_FRONTENDS:
            continue
        folds = sorted(set.intersection(*(set(per_fold.loc[fe, chosen[fe][1]].index) & set(per_fold.loc[fe, TRAINED_SCORER].index)
                                           for fe in common)))  # fmt: skip
        table_r = pd.DataFrame({fe: per_fold.loc[fe, chosen[fe][1]].loc[folds] for fe in common})
        table_t = pd.DataFrame({fe: per_fold.loc[fe, TRAINED_SCORER].loc[folds] for fe in common})
        tau, rho, tau_ci, rho_ci = rank_agreement(table_r, table_t)
        out.append(Premise(size, experiment, common, table_r.mean(), table_t.mean(), {fe: chosen[fe][1] for fe in common},
                           float(tau), float(rho), tau_ci, rho_ci, tau_p_value(table_r.mean(), table_t.mean()),
                           intervals(table_r), intervals(table_t), len(folds), metric_of(best).name))  # fmt: skip
    return out


def figure(p: Premise, title: str) -> Figure:
    """Trained against random score per front-end (the primary metric: accuracy, mAP, R²); the
    dashed diagonal is where the two agree, and points in the same order along both axes mean
    the rankings agree."""
    fig = Figure(figsize=(7.5, 5.6), layout="constrained")
    ax = fig.subplots()
    m = kinds.BY_NAME.get(p.metric, kinds.ACCURACY)
    k = m.scale
    x, y = k * p.random[p.frontends], k * p.trained[p.frontends]
    xerr = [x - k * p.random_ci.loc[p.frontends, "low"], k * p.random_ci.loc[p.frontends, "high"] - x]
    yerr = [y - k * p.trained_ci.loc[p.frontends, "low"], k * p.trained_ci.loc[p.frontends, "high"] - y]
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=5, elinewidth=0.8, capsize=2, label="mean, 95% interval over folds")
    rank_r, rank_t = x.rank(ascending=False).astype(int), y.rank(ascending=False).astype(int)
    label_points(ax, x, y, [f"{short(fe)} ({rank_r[fe]}→{rank_t[fe]})" for fe in p.frontends])
    pad = 3 * k / 100  # 3 points of a percentage; 0.03 of R²
    low = min(k * p.random_ci["low"].min(), k * p.trained_ci["low"].min()) - pad
    high = max(k * p.random_ci["high"].max(), k * p.trained_ci["high"].max()) + pad
    ax.plot([low, high], [low, high], "--", color="0.6", lw=1, label="trained = random")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(f"test {m.label} with random weights{m.unit}")
    ax.set_ylabel(f"test {m.label} trained{m.unit}")
    ax.set_title(
        f"{title}\ntau {p.tau:+.2f} [{p.tau_ci[0]:+.2f}, {p.tau_ci[1]:+.2f}] (p={p.tau_p:.3g}), rho {p.rho:+.2f}", fontsize=9
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig
