"""What the classifier does not decide: the kNN probe's accuracy per front-end, and the premise
test's baselines, the predictors of trained accuracy a sceptic tries first (parameter count,
GFLOP per clip, the zero-cost proxies NASWOT and synflow), each against the random-weight
accuracy by Kendall's tau."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..stores.tracking import TRAINED_SCORER
from . import kinds
from .premise import Premise, rank_agreement, tau_p_value
from .stats import scores, summarize

KNN = "knn"
# predictor -> the column of the runs table it comes from; fixed per front-end, size and seed
STATIC = {"parameters": "n_params", "GFLOP per clip": "gflops_per_clip", "NASWOT": "naswot", "synflow": "synflow"}


def knn_runs(best: pd.DataFrame) -> pd.DataFrame:
    """One random-weight run per front-end, size, preset and seed, as a cell of classifier ``knn``
    whose folds are the kNN probe's (the probe does not depend on the classifier's settings)."""
    probed = best["knn_score"] if "knn_score" in best else best["knn_accuracy"]  # the probe's primary metric
    random = best[(best["classifier"] != TRAINED_SCORER) & probed.notna()]
    one = random.drop_duplicates(["frontend", "feature_size", "experiment", "seed"])
    return one.assign(classifier=KNN, folds=one["knn_folds"])


def knn_summary(best: pd.DataFrame) -> pd.DataFrame:
    """The kNN probe's cells, summarized as the classifiers' are (mean, interval, spreads)."""
    runs = knn_runs(best)
    return summarize(runs) if len(runs) else pd.DataFrame()


def knn_agreement(summary: pd.DataFrame, knn: pd.DataFrame) -> list[str]:
    """Per size and classifier: does the kNN probe rank the front-ends as the classifier does?"""
    out = []
    for (size, clf, exp), part in summary[summary["classifier"] != TRAINED_SCORER].groupby(["feature_size", "classifier", "experiment"]):
        probe = knn[(knn["feature_size"] == size) & (knn["experiment"] == exp)].set_index("frontend")["mean"]
        common = sorted(set(part["frontend"]) & set(probe.index))
        if len(common) < 3:
            continue
        mine = part.set_index("frontend")["mean"]
        tau = stats.kendalltau(mine[common], probe[common]).statistic
        out.append(f"{size} · {clf}: the kNN probe ranks {len(common)} front-ends with Kendall's tau {tau:+.2f} "
                   f"against the {clf.upper()}'s ranking (1: the same order without a trained classifier)")  # fmt: skip
    return out


def predictors(best: pd.DataFrame, p: Premise) -> pd.DataFrame:
    """Kendall's tau of each predictor against trained accuracy over the premise's front-ends,
    with its 95% bootstrap interval over folds and the exact one-sided p-value (larger predicts
    better). Predictors: the random-weight accuracy (the premise), the kNN probe, and the
    static ones (one value per front-end: the mean over its random runs' seeds)."""
    part = best[(best["feature_size"] == p.feature_size) & (best["experiment"] == p.experiment)]
    label = kinds.BY_NAME.get(p.metric, kinds.ACCURACY).label
    per_fold = scores(part).groupby(["frontend", "classifier", "fold"])["score"].mean()
    trained = pd.DataFrame({fe: per_fold.loc[fe, TRAINED_SCORER] for fe in p.frontends}).dropna()
    candidates = {f"random-weight {label}": pd.DataFrame({fe: per_fold.loc[fe, p.classifiers[fe]] for fe in p.frontends})}
    knn = scores(knn_runs(part)).groupby(["frontend", "fold"])["score"].mean()
    candidates[f"kNN {label}"] = pd.DataFrame({fe: knn.loc[fe] for fe in p.frontends if fe in knn.index.get_level_values(0)})
    random = part[part["classifier"] != TRAINED_SCORER].drop_duplicates(["frontend", "seed"])
    for name, column in STATIC.items():
        values = random.groupby("frontend")[column].mean().reindex(p.frontends)
        candidates[name] = pd.DataFrame([values.to_numpy()] * len(trained), index=trained.index, columns=p.frontends)
    rows = []
    for name, table in candidates.items():
        table = table.reindex(trained.index)
        present = [fe for fe in p.frontends if fe in table and table[fe].notna().all()]
        row = {"predictor": name, "n_frontends": len(present), "tau": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan}
        if len(present) >= 3 and table[present].iloc[0].nunique() > 1:  # a constant ranks nothing
            tau, _, ci, _ = rank_agreement(table[present], trained[present])
            row.update(tau=tau, ci_low=ci[0], ci_high=ci[1], p=tau_p_value(table[present].mean(), trained[present].mean()))
        rows.append(row)
    return pd.DataFrame(rows)


def predictor_notes(table: pd.DataFrame, size: str, metric: kinds.Metric = kinds.ACCURACY) -> list[str]:
    out = [f"{size}: what predicts trained {metric.label}? Kendall's tau against it (95% bootstrap over folds; exact one-sided p)"]
    for _, r in table.iterrows():
        if r["n_frontends"] < 3:
            out.append(f"  {r['predictor']}: fewer than 3 front-ends have it ({r['n_frontends']})")
        elif np.isnan(r["tau"]):
            out.append(f"  {r['predictor']}: the same for every front-end, so it ranks nothing")
        else:
            out.append(f"  {r['predictor']}: tau {r['tau']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], p={r['p']:.3g}, "
                       f"{r['n_frontends']} front-ends")  # fmt: skip
    return out
