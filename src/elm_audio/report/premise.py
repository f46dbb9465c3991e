"""The method's premise, tested on the user's runs: do front-ends that rank high with random
weights rank high once trained (weights=trained)? Kendall's tau and Spearman's rho between
the two rankings, with bootstrap intervals over folds, and the scatter of trained against
random accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from .stats import scores

TRAINED = "trained"  # the classifier tag of weights=trained runs
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
    n_folds: int
    unsettled: dict[str, int]  # "random"/"trained" -> adjacent pairs in that ranking whose intervals overlap

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
        if np.isnan(self.tau_ci[0]) or self.tau_ci[0] <= 0 <= self.tau_ci[1]:
            out.append("  the data cannot tell whether the rankings agree: tau's interval includes 0")
        elif self.tau_ci[0] > 0:
            out.append("  the random-weight ranking predicts the trained one on these data")
        return out


def rank_agreement(per_fold_random: pd.DataFrame, per_fold_trained: pd.DataFrame, seed: int = 0):
    """tau and rho of the per-front-end means (columns: front-ends, rows: folds), and their
    bootstrap intervals, resampling folds with replacement."""
    rng = np.random.default_rng(seed)
    folds = len(per_fold_random)
    draws = {"tau": [], "rho": []}
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, folds, folds)
        r, t = per_fold_random.iloc[pick].mean(), per_fold_trained.iloc[pick].mean()
        draws["tau"].append(stats.kendalltau(r, t).statistic)
        draws["rho"].append(stats.spearmanr(r, t).statistic)
    r, t = per_fold_random.mean(), per_fold_trained.mean()
    ci = {k: tuple(np.nanpercentile(v, [2.5, 97.5])) if np.isfinite(v).any() else (np.nan, np.nan) for k, v in draws.items()}
    return stats.kendalltau(r, t).statistic, stats.spearmanr(r, t).statistic, ci["tau"], ci["rho"]


def overlapping_neighbours(per_fold: pd.DataFrame, seed: int = 0) -> int:
    """Adjacent front-ends in the ranking by mean whose 95% bootstrap intervals (over folds) overlap."""
    rng = np.random.default_rng(seed)
    draws = np.array([per_fold.iloc[rng.integers(0, len(per_fold), len(per_fold))].mean() for _ in range(BOOTSTRAP)])
    low, high = np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)
    order = np.argsort(-per_fold.mean().to_numpy())
    return int(sum(low[a] <= high[b] for a, b in zip(order, order[1:])))


def premises(best: pd.DataFrame) -> list[Premise]:
    long = scores(best)
    out = []
    for (size, experiment), part in long.groupby(["feature_size", "experiment"]):
        per_fold = part.groupby(["frontend", "classifier", "fold"])["accuracy"].mean()  # seeds averaged
        means = per_fold.groupby(["frontend", "classifier"]).mean()
        trained = means.xs(TRAINED, level="classifier") if TRAINED in means.index.get_level_values(1) else pd.Series(dtype=float)
        random = means.drop(TRAINED, level="classifier", errors="ignore")
        if random.empty:
            continue
        chosen = random.groupby(level="frontend").idxmax()  # the random runs' best classifier per front-end
        common = sorted(set(trained.index) & set(chosen.index))
        if len(common) < MIN_FRONTENDS:
            continue
        folds = sorted(set.intersection(*(set(per_fold.loc[fe, chosen[fe][1]].index) & set(per_fold.loc[fe, TRAINED].index)
                                           for fe in common)))  # fmt: skip
        table_r = pd.DataFrame({fe: per_fold.loc[fe, chosen[fe][1]].loc[folds] for fe in common})
        table_t = pd.DataFrame({fe: per_fold.loc[fe, TRAINED].loc[folds] for fe in common})
        tau, rho, tau_ci, rho_ci = rank_agreement(table_r, table_t)
        unsettled = {"random": overlapping_neighbours(table_r), "trained": overlapping_neighbours(table_t)}
        out.append(Premise(size, experiment, common, table_r.mean(), table_t.mean(), {fe: chosen[fe][1] for fe in common},
                           float(tau), float(rho), tau_ci, rho_ci, len(folds), unsettled))  # fmt: skip
    return out


def figure(p: Premise, title: str) -> Figure:
    """Trained against random accuracy per front-end; the dashed diagonal is where the two
    agree, and points in the same order along both axes mean the rankings agree."""
    fig = Figure(figsize=(5.5, 5.0))
    ax = fig.subplots()
    x, y = 100 * p.random[p.frontends], 100 * p.trained[p.frontends]
    ax.scatter(x, y, s=30)
    rank_r, rank_t = x.rank(ascending=False).astype(int), y.rank(ascending=False).astype(int)
    for fe in p.frontends:
        ax.annotate(f"{fe} ({rank_r[fe]}→{rank_t[fe]})", (x[fe], y[fe]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    low, high = min(x.min(), y.min()) - 3, max(x.max(), y.max()) + 3
    ax.plot([low, high], [low, high], "--", color="0.6", lw=1, label="trained = random")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("test accuracy with random weights (%)")
    ax.set_ylabel("test accuracy trained (%)")
    ax.set_title(f"{title}\ntau {p.tau:+.2f} [{p.tau_ci[0]:+.2f}, {p.tau_ci[1]:+.2f}], rho {p.rho:+.2f}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
