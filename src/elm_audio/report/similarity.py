"""Do two front-ends compute the same thing? Debiased linear CKA between their feature matrices
on the same clips (Kornblith et al., ICML 2019), with the unbiased HSIC estimator of Song et al.
(JMLR 2012), so that independent features score near 0 at any number of clips, and a bootstrap
interval over clips.

HSIC_1(K, L) = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)), where K~ is
the linear Gram matrix XX' with its diagonal set to 0, and CKA = HSIC_1(K, L) / sqrt(HSIC_1(K, K)
HSIC_1(L, L)). A bootstrap draw repeats clips; a repeated clip's pairs with itself are left out
as the diagonal is (a draw is a weight per clip), or the draws would bring back the bias the
estimator removes. Every term but tr(K~L~) costs O(n d); tr(K~L~) = w'(K o L)w - sum w_i^2 K_ii L_ii
is computed either in the feature space, ||X' diag(w) Y||_F^2 (n d_x d_y a draw), or from blocks of
rows of the Gram matrices (n^2 (d_x + d_y) once, n^2 a draw), whichever costs fewer operations;
no n x n matrix is ever held whole.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from ..stores import tracking
from ..stores.cache import FeatureCache
from .figures import short, text_colour
from .stats import LEVEL

BOOTSTRAP = 200  # draws of clips per interval
BLOCK = 1024  # rows of a Gram matrix computed at a time
SEED_COLOUR, SHUFFLED_COLOUR = "0.25", "0.7"  # greys: no classifier's colour (figures.CLASSIFIER_COLOURS)


def draws(n: int, bootstrap: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """(n, 1 + bootstrap) clip weights: all ones (the estimate), then multinomial bootstrap draws."""
    rng = np.random.default_rng(seed)
    return np.column_stack([np.ones(n), rng.multinomial(n, np.full(n, 1 / n), size=bootstrap).T]).astype(np.float64)


def _weighted_trace(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """w'(K o L)w for every column w of ``w``, K = xx', L = yy', by the cheaper route."""
    n, dx = x.shape
    dy, b = y.shape[1], w.shape[1]
    if n * dx * dy * b <= n * n * (dx + dy + b):  # in the feature space
        return np.array([np.sum((x.T @ (w[:, [j]] * y)) ** 2) for j in range(b)])
    out = np.zeros(b)
    for s in range(0, n, BLOCK):  # blocks of rows of K o L, never the whole n x n matrix
        h = (x[s : s + BLOCK] @ x.T) * (y[s : s + BLOCK] @ y.T)
        out += np.einsum("ib,ib->b", w[s : s + BLOCK], h @ w)
    return out


def hsic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Song et al.'s unbiased HSIC of linear kernels, for each column of clip weights ``w``."""
    n = w.sum(axis=0)
    dk, dl = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    t1 = _weighted_trace(x, y, w) - ((w**2) * (dk * dl)[:, None]).sum(axis=0)
    kr = x @ (x.T @ w) - w * dk[:, None]  # K~1 at each clip, its own copies left out
    lr = y @ (y.T @ w) - w * dl[:, None]
    t2, t3, t4 = (w * kr).sum(axis=0), (w * lr).sum(axis=0), (w * kr * lr).sum(axis=0)
    return (t1 + t2 * t3 / ((n - 1) * (n - 2)) - 2 * t4 / (n - 2)) / (n * (n - 3))


def cka(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray | float:
    """Debiased linear CKA of two (clips x features) matrices with rows on the same clips; with
    ``w`` (from ``draws``), one value per column."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    weights = np.ones((len(x), 1)) if w is None else w
    with np.errstate(invalid="ignore", divide="ignore"):
        out = hsic(x, y, weights) / np.sqrt(hsic(x, x, weights) * hsic(y, y, weights))
    return float(out[0]) if w is None else out


def cka_biased(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s plain linear CKA on centred features, ||Y'X||^2 / (||X'X|| ||Y'Y||): kept as
    a cross-check only (between independent features it stays well above 0 at small n)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.sum((y.T @ x) ** 2) / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def standardize(x: np.ndarray) -> np.ndarray:
    """Each feature to mean 0 and variance 1 over the clips, as the classifiers see them
    (classifier.standardize); constant features dropped."""
    x = np.asarray(x, np.float64)
    sd = x.std(axis=0)
    keep = sd > 0
    return (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]


# --- the report's section -----------------------------------------------------------------


def load_features(uri: str, cache: FeatureCache, key: str | None, run_id: str | None) -> pd.DataFrame | None:
    """A run's feature matrix, rows indexed by clip id (usable clips only): from the feature
    cache where it still holds the key, else from the features.npz its features run logged."""
    entry = cache.load(key) if key else None
    if entry is not None:
        rows = entry.usable()
        return pd.DataFrame(entry.matrix[rows], index=np.array(entry.clip_ids)[rows])
    if not run_id:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = tracking.download_artifact(uri, run_id, "features/features.npz", tmp)
        except Exception:  # the artifact is gone (or never logged): the caller names the front-end
            return None
        with np.load(path) as npz:
            rows = npz["usable"] if "usable" in npz else np.ones(len(npz["clip_ids"]), bool)
            return pd.DataFrame(npz["features"][rows], index=npz["clip_ids"][rows])


@dataclass
class Similarity:
    feature_size: str
    experiment: str
    matrix: pd.DataFrame  # front-end x front-end CKA, in clustering order
    pairs: pd.DataFrame  # a, b, kind (front-ends | seeds | shuffled), cka, ci_low, ci_high, n_clips
    missing: list[str]


def features_per_seed(best: pd.DataFrame) -> pd.DataFrame:
    """One row per (front-end, seed) of random-weight runs: the features key and the run holding them."""
    random = best[best["classifier"] != "trained"].dropna(subset=["features_key"])
    return random.sort_values("seed").drop_duplicates(["frontend", "seed"])


def similarities(uri: str, best: pd.DataFrame, cache_dir: Path, bootstrap: int = BOOTSTRAP) -> list[Similarity]:
    cache, out = FeatureCache(cache_dir), []
    for (size, experiment), part in best.groupby(["feature_size", "experiment"]):
        chosen, missing, loaded = features_per_seed(part), [], {}
        for _, r in chosen.iterrows():
            frame = load_features(uri, cache, r["features_key"], r.get("features_run_id"))
            if frame is None:
                missing.append(f"{r['frontend']} (seed {r['seed']})")
            else:
                loaded[(r["frontend"], r["seed"])] = frame
        frontends = sorted({fe for fe, _ in loaded})
        if len(frontends) < 2:
            continue
        clips = sorted(set.intersection(*(set(f.index) for f in loaded.values())))
        z = {k: standardize(f.loc[clips].to_numpy()) for k, f in loaded.items()}
        first = {fe: min(s for f, s in loaded if f == fe) for fe in frontends}
        w = draws(len(clips), bootstrap)
        rows = []

        def pair(a: str, b: str, kind: str, x: np.ndarray, y: np.ndarray) -> None:
            values = cka(x, y, w)
            low, high = np.nanpercentile(values[1:], [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
            rows.append({"a": a, "b": b, "kind": kind, "cka": values[0], "ci_low": low, "ci_high": high, "n_clips": len(clips)})

        for i, a in enumerate(frontends):
            for b in frontends[i + 1 :]:
                pair(a, b, "front-ends", z[(a, first[a])], z[(b, first[b])])
        for fe in frontends:
            seeds = sorted(s for f, s in loaded if f == fe)
            if len(seeds) > 1:
                pair(f"{fe} seed {seeds[0]}", f"{fe} seed {seeds[1]}", "seeds", z[(fe, seeds[0])], z[(fe, seeds[1])])
            shuffled = np.random.default_rng(1).permutation(len(clips))
            x = z[(fe, first[fe])]
            pair(fe, f"{fe}, clips shuffled", "shuffled", x, x[shuffled])
        pairs = pd.DataFrame(rows)
        matrix = pd.DataFrame(np.eye(len(frontends)), index=frontends, columns=frontends)
        for _, r in pairs[pairs["kind"] == "front-ends"].iterrows():
            matrix.loc[r["a"], r["b"]] = matrix.loc[r["b"], r["a"]] = r["cka"]
        order = cluster_order(matrix)
        out.append(Similarity(size, experiment, matrix.loc[order, order], pairs, missing))
    return out


def cluster_order(matrix: pd.DataFrame) -> list[str]:
    """Front-ends in the leaf order of an average-linkage clustering of 1 - CKA."""
    if len(matrix) < 3:
        return list(matrix.index)
    distance = np.clip(1 - matrix.to_numpy(), 0, None)
    np.fill_diagonal(distance, 0)
    return list(matrix.index[leaves_list(linkage(squareform((distance + distance.T) / 2), "average"))])


def colour_range(matrix: pd.DataFrame) -> tuple[float, float, str]:
    """The colour scale's ends and how the colour bar names them: the lowest and highest CKA
    between distinct front-ends, so that the contrast the data hold shows (CKA between
    front-ends on one dataset often lies within a tenth); one value alone, a span of 0.02
    around it."""
    values = matrix.to_numpy(dtype=float)[~np.eye(len(matrix), dtype=bool)]
    values = values[np.isfinite(values)]
    if len(values) and values.max() - values.min() >= 0.005:
        low, high = float(values.min()), float(values.max())
        return low, high, f"CKA; colours span this map's range, {low:.2f} to {high:.2f}\n(not 0 to 1; the diagonal, 1, left blank)"
    middle = float(values.mean()) if len(values) else 0.5
    return middle - 0.01, middle + 0.01, f"CKA; one value, {middle:.2f}\n(the diagonal, 1, left blank)"


def figure(s: Similarity, title: str) -> Figure:
    """The CKA heat map (clustered; colours span the data's range, the diagonal left blank), and
    beside it the controls: each front-end against itself under another seed and with its clips
    shuffled (about 0), with bootstrap intervals; where no front-end ran a second seed, the
    panel says so."""
    n = len(s.matrix)
    controls = s.pairs[s.pairs["kind"] != "front-ends"]
    fig = Figure(figsize=(8.0 + 0.55 * n, max(3.8, 0.6 * n + 1.8)), layout="constrained")
    heat, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(n, 2), 3]})
    low, high, scale = colour_range(s.matrix)
    cmap, norm = colormaps["magma"], Normalize(low, high)
    off = s.matrix.to_numpy(dtype=float).copy()
    np.fill_diagonal(off, np.nan)
    image = heat.imshow(off, norm=norm, cmap=cmap)
    labels = [f"{fe} (baseline)" if fe == "mfcc" else short(fe) for fe in s.matrix.index]
    for i in range(n):
        for j in range(n):
            v = s.matrix.iat[i, j]
            colour = "0.45" if i == j else text_colour(cmap(norm(v)))
            heat.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color=colour)
    heat.set_xticks(range(n), labels, rotation=40, ha="right")
    heat.set_yticks(range(n), labels)
    heat.set_title(f"{title}\ndebiased linear CKA, {int(s.pairs['n_clips'].iloc[0])} clips", fontsize=9)
    fig.colorbar(image, ax=heat, fraction=0.046).set_label(scale, fontsize=8)
    y = np.arange(len(controls))
    err = [controls["cka"] - controls["ci_low"], controls["ci_high"] - controls["cka"]]
    colours = [SEED_COLOUR if k == "seeds" else SHUFFLED_COLOUR for k in controls["kind"]]
    bars.barh(y, controls["cka"], xerr=err, color=colours, capsize=2)
    bars.set_yticks(y, [f"{short(a)} vs {b.split(' ', 1)[1] if k == 'seeds' else 'shuffled'}" for a, b, k in
                        zip(controls["a"], controls["b"], controls["kind"])], fontsize=7)  # fmt: skip
    bars.axvline(0, color="0.3", lw=0.8)
    bars.set_xlim(min(-0.1, float(controls["ci_low"].min()) - 0.05), 1.05)
    bars.invert_yaxis()
    bars.set_xlabel("CKA (95% bootstrap over clips)", fontsize=8)
    if (controls["kind"] == "seeds").any():
        bars.set_title("controls: another seed (dark),\nclips shuffled (light, ~0)", fontsize=9)
    else:
        bars.set_title("control: clips shuffled (~0)", fontsize=9)
        bars.text(0.96, 0.5, "no seed control:\nno front-end has a\nsecond seed's features\n(run one again with\nseed=1 to add it)",
                  transform=bars.transAxes, ha="right", va="center", fontsize=8, color="0.3")  # fmt: skip
    return fig


def notes(s: Similarity) -> list[str]:
    fe = s.pairs[s.pairs["kind"] == "front-ends"].sort_values("cka", ascending=False)
    out = [f"{s.feature_size}: debiased linear CKA between {len(s.matrix)} front-ends on {int(s.pairs['n_clips'].iloc[0])} "
           f"common clips (standardized features; 95% bootstrap over clips, {BOOTSTRAP} draws)"]  # fmt: skip
    out += [f"  {r['a']} ~ {r['b']}: {r['cka']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" for _, r in fe.iterrows()]
    for _, r in s.pairs[s.pairs["kind"] != "front-ends"].iterrows():
        out.append(f"  control, {r['a']} vs {r['b']}: {r['cka']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]")
    if s.missing:
        out.append("  no features found (cache or MLflow) for " + ", ".join(s.missing))
    return out
