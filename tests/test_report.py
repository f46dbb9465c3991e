"""The cross-architecture report, checked against the runs' own metrics and known statistics."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from helpers.runs import QUICK, as_a_run_in, local_uri, logged_runs, run_cli
from scipy import stats

from elm_audio.report.build import table
from elm_audio.report.stats import corrected_t, holm, mcnemar_exact, wilson

# one worker runs every test of the `logged` store, in this file's order (the premise test, which
# adds trained runs to it, comes last)
pytestmark = pytest.mark.xdist_group("report_store")
NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "compare_architectures.ipynb"
# three front-ends of different kinds, cheap enough to extract at both sizes and to train
SPECTRAL = "cnn_7x96"
FRONTENDS = ("mfcc", "temporal", SPECTRAL)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Three front-ends x both sizes x two seeds on the default dataset, plus a small Optuna
    sweep in one cell, then the report."""
    cwd = tmp_path_factory.mktemp("report")
    run_cli(
        "elm_audio", "-m", f"frontend={','.join(FRONTENDS)}", "feature_size=small,large", "seed=1,2",
        "hydra/sweeper=basic", *QUICK, cwd=cwd,
    )  # fmt: skip
    run_cli("elm_audio", "-m", "frontend=temporal", "seed=1", "hydra.sweeper.n_trials=3", *QUICK, cwd=cwd)
    proc = run_cli("elm_audio.report", "--out", str(cwd / "reports"), cwd=cwd)
    return cwd, proc


def report_here(cwd: Path, *argv: str, seed_store: bool = True) -> tuple[int, str, str]:
    """``python -m elm_audio.report <argv>`` run in ``cwd`` by its main, in this process (see
    helpers.runs.as_a_run_in); the fixture's report is the command line's. Returns (code, stdout, stderr)."""
    from elm_audio.report.__main__ import main

    with as_a_run_in(cwd, seed_store) as (out, err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def mlflow_runs(cwd: Path) -> list:
    client, runs = logged_runs(cwd)
    return client, client.get_experiment_by_name("elm_audio/synth"), runs


def expected_cell(runs, frontend: str, size: str, clf: str) -> dict:
    """From the raw metrics: per seed the best-validation run (earliest on ties), its folds."""
    cell = [
        r for r in runs
        if r.data.tags.get("elm_audio.role") in ("run", "trial") and r.data.tags["frontend"] == frontend
        and r.data.tags["feature_size"] == size and r.data.tags["classifier"] == clf
    ]  # fmt: skip
    per_seed = {}
    for seed in sorted({r.data.params["seed"] for r in cell}):
        mine = sorted((r for r in cell if r.data.params["seed"] == seed), key=lambda r: (-r.data.metrics["val_accuracy"], r.info.start_time))
        per_seed[seed] = [mine[0].data.metrics[f"fold{k}_test_accuracy"] for k in (1, 2, 3)]
    values = np.array(list(per_seed.values()))
    return {
        "mean": values.mean(),
        "std_folds": values.std(axis=1).mean(),
        "std_seeds": values.mean(axis=1).std(),
        "n_runs": len(cell),
        "per_seed": per_seed,
    }


@pytest.mark.slow
def test_the_table_holds_the_best_validation_runs_numbers(logged):
    cwd, _ = logged
    _, _, runs = mlflow_runs(cwd)
    csv = pd.read_csv(cwd / "reports" / "synth" / "table.csv")
    assert set(csv["frontend"]) == set(FRONTENDS) and set(csv["feature_size"]) == {"small", "large"}
    for _, row in csv.iterrows():
        exp = expected_cell(runs, row["frontend"], row["feature_size"], row["classifier"])
        assert row["mean"] == pytest.approx(exp["mean"])
        assert row["std_folds"] == pytest.approx(exp["std_folds"])
        assert row["std_seeds"] == pytest.approx(exp["std_seeds"])
        assert row["n_runs"] == exp["n_runs"] and row["n_seeds"] == 2 and row["n_folds"] == 3
        per_fold = np.mean(list(exp["per_seed"].values()), axis=0)  # seeds averaged within a fold
        half = stats.t.ppf(0.975, 2) * np.sqrt((1 / 3 + 1) * np.var(per_fold, ddof=1))
        bounded = (max(0.0, per_fold.mean() - half), min(1.0, per_fold.mean() + half))  # accuracies lie in [0, 1]
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(bounded)
    swept = csv[(csv["frontend"] == "temporal") & (csv["feature_size"] == "small")].iloc[0]
    assert swept["n_runs"] == 2 + 3  # two seeds' runs and the sweep's three trials
    md = (cwd / "reports" / "synth" / "table.md").read_text()
    assert (
        f"{100 * swept['mean']:.1f} [{100 * swept['ci_low']:.1f}, {100 * swept['ci_high']:.1f}] "
        f"±{100 * swept['std_folds']:.1f} (folds) ±{100 * swept['std_seeds']:.1f} (seeds) · n=5"
    ) in md


@pytest.mark.slow
def test_the_significance_is_the_corrected_resampled_t_test_over_folds(logged):
    """Recomputed here from the raw fold metrics in MLflow: per fold the mean over the two
    seeds, the differences' mean and sample variance, Nadeau & Bengio's variance
    (1/k + n_test/n_train) s^2 with the honest protocol's 3 folds (test 1, train 1: ratio 1)."""
    cwd, _ = logged
    _, _, runs = mlflow_runs(cwd)
    pairs = pd.read_csv(cwd / "reports" / "synth" / "pairs_large_svm.csv")
    assert len(pairs) == 3 and set(pairs["test"]) == {"corrected resampled t"}
    raw_p = []
    for _, row in pairs.iterrows():
        a = np.mean(list(expected_cell(runs, row["a"], "large", "svm")["per_seed"].values()), axis=0)
        b = np.mean(list(expected_cell(runs, row["b"], "large", "svm")["per_seed"].values()), axis=0)
        d = a - b
        k = len(d)
        se = np.sqrt((1 / k + 1 / (k - 2)) * np.var(d, ddof=1))
        t = d.mean() / se if se > 0 else (0.0 if d.mean() == 0 else np.inf)
        p = 2 * stats.t.sf(abs(t), k - 1) if se > 0 else float(d.mean() == 0)
        half = stats.t.ppf(0.975, k - 1) * se
        assert row["n"] == 3 and row["mean_diff"] == pytest.approx(d.mean())
        assert row["p"] == pytest.approx(p) and row["ci_low"] == pytest.approx(d.mean() - half)
        # the plain paired t-test over (seed, fold) pairs would be far more confident
        raw_p.append(p)
    m = len(raw_p)
    order = np.argsort(raw_p)
    manual = np.maximum.accumulate([min(1, (m - i) * raw_p[j]) for i, j in enumerate(order)])
    assert pairs["p_holm"].to_numpy()[order] == pytest.approx(manual)
    md = (cwd / "reports" / "synth" / "table.md").read_text()
    assert "corrected resampled t-test over folds (Nadeau & Bengio 2003" in md


def test_the_corrected_t_test_is_the_textbook_paired_t_without_overlap():
    """With no overlap between training sets (ratio 0) the corrected test is Student's paired
    t-test; on Student's sleep data (Cushny & Peebles) R's t.test(paired=TRUE) gives
    t = -4.0621, df = 9, p = 0.002833, 95% interval [-2.4598858, -0.7001142]."""
    drug1 = np.array([0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0])
    drug2 = np.array([1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4])
    r = corrected_t(drug1 - drug2, ratio=0.0)
    assert r["statistic"] == pytest.approx(-4.0621, abs=1e-4) and r["p"] == pytest.approx(0.002833, abs=1e-6)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((-2.4598858, -0.7001142), abs=1e-6)
    # ten-fold cross-validation (ratio 1/9): the same differences, a wider interval, a larger p
    c = corrected_t(drug1 - drug2, ratio=1 / 9)
    assert c["statistic"] == pytest.approx(r["statistic"] / np.sqrt((1 / 10 + 1 / 9) / (1 / 10)))
    assert c["p"] > r["p"] and c["ci_high"] - c["ci_low"] > r["ci_high"] - r["ci_low"]
    assert corrected_t(np.zeros(4), 0.5)["p"] == 1.0


def test_mcnemar_and_wilson_agree_with_statsmodels():
    from statsmodels.stats.contingency_tables import mcnemar
    from statsmodels.stats.proportion import proportion_confint

    rng = np.random.default_rng(3)
    a = rng.random(290) < 0.62
    b = np.where(rng.random(290) < 0.8, a, ~a)
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    ours = mcnemar_exact(a, b)
    assert ours["p"] == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert ours["mean_diff"] == pytest.approx(a.mean() - b.mean())
    assert wilson(173, 290) == pytest.approx(proportion_confint(173, 290, alpha=0.05, method="wilson"))


def test_holm_correction_on_a_known_case():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


@pytest.mark.slow
def test_the_report_writes_its_figures_and_an_mlflow_run(logged):
    cwd, proc = logged
    folder = cwd / "reports" / "synth"
    for name in ("bars_small.png", "bars_large.png", "significance_small_svm.png", "significance_large_svm.png", "cost.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG", name
    client, exp, runs = mlflow_runs(cwd)
    (report,) = [r for r in runs if r.data.tags.get("elm_audio.role") == "report"]
    assert {"table.md", "table.csv", "cost.png", "bars_large.png"} <= {a.path for a in client.list_artifacts(report.info.run_id)}
    assert f"logged as MLflow run {report.info.run_id}" in proc.stdout
    assert f"#/experiments/{exp.experiment_id}/runs/{report.info.run_id}?workflowType=machine_learning" in proc.stdout


@pytest.mark.slow
def test_an_incomplete_set_of_runs_is_reported_with_what_is_missing(logged, tmp_path):
    cwd, proc = logged
    md = (cwd / "reports" / "synth" / "table.md").read_text()
    assert "No runs for front-end(s): cnn_7x86, frame_level," in md
    # a sweep still running: its unfinished run is left out and said so
    client, exp, _ = mlflow_runs(cwd)
    client.create_run(exp.experiment_id, tags={"elm_audio.role": "trial", "frontend": "vgg", "feature_size": "small", "classifier": "svm"})
    _, again, _ = report_here(cwd, "--out", str(tmp_path / "r"))
    assert "1 run(s) still running were left out" in again
    # a store with one seed of one front-end still gives a report
    single = tmp_path / "single"
    single.mkdir()
    run_cli("elm_audio", "frontend=mfcc", *QUICK, cwd=single)
    _, out, _ = report_here(single)
    assert "ran one seed only" in out and "mfcc" not in out.split("No runs for front-end(s):")[1].split("\n")[0]
    assert (single / "reports" / "synth" / "table.md").exists()


def test_nothing_to_report_says_so(tmp_path):
    code, _, err = report_here(tmp_path, seed_store=False)  # no store at all, as a first try finds
    assert code == 1 and "no elm_audio runs" in err


def test_published_numbers_stand_beside_reproductions_and_the_clean_method_is_labelled_apart():
    cell = {"feature_size": "large", "classifier": "svm", "std_folds": np.nan, "n_runs": 3, "n_seeds": 3}
    summary = pd.DataFrame(
        [
            {**cell, "frontend": "vgg", "experiment": "default", "mean": 0.62, "std_seeds": 0.01,
             "gflops_per_clip": 168.6, "extract_ms_per_clip": 900.0, "input": "spectrogram"},
            {**cell, "frontend": "vgg", "experiment": "paper", "mean": 0.58, "std_seeds": 0.02,
             "gflops_per_clip": 168.6, "extract_ms_per_clip": 950.0, "input": "spectrogram"},
            {**cell, "frontend": "mfcc", "experiment": "default", "mean": 0.5, "std_seeds": np.nan, "n_seeds": 1,
             "gflops_per_clip": 0.2, "extract_ms_per_clip": 5.0, "input": "baseline"},
        ]
    )  # fmt: skip
    shown = table(summary, "gtzan").set_index("front-end")
    assert shown.loc["vgg", "published (Pons & Serra 2019)"] == "59.65 (large · svm)"
    assert shown.loc["mfcc", "published (Pons & Serra 2019)"] == "53.44 (large · svm)"
    assert shown.loc["vgg", "large · svm"].startswith("62.0")
    assert shown.loc["vgg", "large · svm · reproduction (experiment=paper)"].startswith("58.0")
    assert shown.loc["mfcc", "large · svm · reproduction (experiment=paper)"] == "—"
    assert "published (Pons & Serra 2019)" not in table(summary, "synth").columns


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_on_the_default_datasets_runs(logged):
    from nbclient import NotebookClient

    cwd, _ = logged
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_before = dict(os.environ)
    os.environ["MLFLOW_TRACKING_URI"] = local_uri(cwd)
    os.environ["ELM_AUDIO_DATASET"] = "synth"
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "runs of synth in sqlite:///" in text and SPECTRAL in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5  # bars x2, significance x2, cost
    # nothing on stderr (no TqdmWarning, no library chatter), counts as whole numbers
    assert not [o for o in outputs if o.get("name") == "stderr"], [o.get("text") for o in outputs if o.get("name") == "stderr"]
    counts = next(c for c in nb.cells if "unstack('seed'" in c.source).outputs[0]["data"]["text/plain"]
    assert "NaN" not in counts and ".0" not in counts
    # the words say what the report does
    words = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "corrected resampled t-test" in words and "McNemar" in words and "Paired t-tests over matched" not in words
    assert "corrected resampled t" in text  # the tests the pairs were compared by


def test_rank_agreement_is_scipys_tau_and_rho_with_a_bootstrap_over_folds():
    from elm_audio.report.premise import rank_agreement

    rng = np.random.default_rng(1)
    random = pd.DataFrame(rng.uniform(0.4, 0.8, size=(10, 5)), columns=list("abcde"))
    trained = random + rng.normal(0.05, 0.05, size=(10, 5))
    tau, rho, tau_ci, rho_ci = rank_agreement(random, trained)
    assert tau == pytest.approx(stats.kendalltau(random.mean(), trained.mean()).statistic)
    assert rho == pytest.approx(stats.spearmanr(random.mean(), trained.mean()).statistic)
    assert tau_ci[0] <= tau <= tau_ci[1] and rho_ci[0] <= rho <= rho_ci[1] and -1 <= tau_ci[0] < tau_ci[1] <= 1
    assert rank_agreement(random, trained) == (tau, rho, tau_ci, rho_ci)  # a seeded bootstrap
    reversed_ = rank_agreement(random, -random)
    assert reversed_[0] == pytest.approx(-1.0) and reversed_[2][1] == pytest.approx(-1.0)


def test_the_bootstrap_intervals_are_scipys_statistics_over_the_resampled_folds(monkeypatch):
    """The draws, computed all at once, are scipy's kendalltau and spearmanr of each resample's
    means; accuracies on a grid of 1/8 make ties and constant draws (NaN, left out)."""
    from elm_audio.report import premise

    monkeypatch.setattr(premise, "BOOTSTRAP", 300)
    rng = np.random.default_rng(2)
    random = pd.DataFrame(rng.integers(2, 7, size=(4, 5)) / 8, columns=list("abcde"))
    trained = pd.DataFrame(np.full((4, 5), 0.5), columns=list("abcde"))
    trained.iloc[3] = rng.integers(3, 8, size=5) / 8  # resamples without fold 4 rank nothing
    picks = np.random.default_rng(0).integers(0, 4, (300, 4))  # rank_agreement's seeded resamples
    means = [(random.iloc[p].mean(), trained.iloc[p].mean()) for p in picks]
    with np.errstate(all="ignore"), pytest.warns(stats.ConstantInputWarning):
        taus = [stats.kendalltau(r, t).statistic for r, t in means]
        rhos = [stats.spearmanr(r, t).statistic for r, t in means]
    assert np.isnan(taus).any() and len({round(v, 9) for v in taus if np.isfinite(v)}) > 5
    _, _, tau_ci, rho_ci = premise.rank_agreement(random, trained)
    assert tau_ci == pytest.approx(tuple(np.nanpercentile(taus, [2.5, 97.5])), abs=1e-12)
    assert rho_ci == pytest.approx(tuple(np.nanpercentile(rhos, [2.5, 97.5])), abs=1e-12)
    low, high = np.percentile([random.iloc[p].mean() for p in picks], [2.5, 97.5], axis=0)
    np.testing.assert_allclose(premise.intervals(random).to_numpy(), np.column_stack([low, high]))


def test_a_pair_reads_as_the_larger_minus_the_smaller_and_says_why_it_is_undecided():
    from elm_audio.report.build import pair_note

    def note(p: float, p_holm: float) -> str:
        row = {"a": "mfcc", "b": "vgg", "mean_diff": -0.20, "ci_low": -0.322, "ci_high": -0.078, "p": p, "p_holm": p_holm, "n": 5}
        return pair_note(pd.Series(row))

    assert note(0.01, 0.03).strip() == "vgg > mfcc: vgg - mfcc = +20.0 points [+7.8, +32.2] (p=0.01, Holm p=0.03, n=5)"
    # the pair's own interval excludes 0, but not once the other pairs are counted
    assert note(0.03, 0.09).strip().startswith("cannot tell vgg and mfcc apart once every pair is counted (Holm)")
    assert note(0.4, 0.8).strip().startswith("cannot tell vgg and mfcc apart: vgg - mfcc = +20.0 points")


def test_the_premise_p_value_counts_the_orderings_that_agree_as_well():
    from elm_audio.report.premise import tau_p_value

    random = pd.Series([0.71, 0.64, 0.58, 0.52, 0.47, 0.40], index=list("abcdef"))
    trained = pd.Series([0.80, 0.66, 0.69, 0.50, 0.55, 0.41], index=list("abcdef"))

    def concordance(order) -> int:  # pairs ranked the same way by random and by the ordering
        return sum((random.iloc[i] - random.iloc[j]) * (order[i] - order[j]) > 0 for i, j in itertools.combinations(range(6), 2))

    observed = concordance(trained.to_numpy())
    as_good = sum(concordance(perm) >= observed for perm in itertools.permutations(range(6)))
    assert tau_p_value(random, trained) == pytest.approx(as_good / math.factorial(6))


def test_three_front_ends_in_perfect_agreement_do_not_confirm_the_premise_but_six_do():
    from elm_audio.report.premise import Premise, tau_p_value

    def verdict(n: int) -> str:
        acc = pd.Series(np.linspace(0.8, 0.4, n), index=[f"fe{i}" for i in range(n)])
        ci = pd.DataFrame({"low": acc - 0.01, "high": acc + 0.01})
        p = Premise("small", "", list(acc.index), acc, acc + 0.1, {}, 1.0, 1.0, (1.0, 1.0), (1.0, 1.0),
                    tau_p_value(acc, acc + 0.1), ci, ci + 0.1, 5)  # fmt: skip
        return p.notes[-1]

    assert "cannot confirm that the rankings agree: p=0.167" in verdict(3)  # 1/3!
    assert "predicts the trained one" in verdict(6) and "p=0.00139" in verdict(6)  # 1/6!


def test_neighbours_whose_intervals_overlap_are_counted():
    from elm_audio.report.premise import intervals, overlapping_neighbours

    folds = pd.DataFrame({"a": [0.90, 0.91, 0.89, 0.90], "b": [0.60, 0.61, 0.59, 0.60], "c": [0.59, 0.62, 0.58, 0.61]})
    # a stands far above b and c; b and c, 0.5 points apart with a spread of 1.5, overlap
    assert overlapping_neighbours(folds.mean(), intervals(folds)) == 1


def test_the_table_writes_costs_in_one_notation():
    from elm_audio.report.build import plain

    assert [plain(v) for v in (1921.3, 419.2, 38.18, 6.6, 0.59, 0.01234)] == ["1,920", "419", "38.2", "6.60", "0.590", "0.0123"]
    cell = {"feature_size": "large", "classifier": "svm", "experiment": "default", "std_folds": 0.01, "std_seeds": np.nan,
            "n_runs": 1, "n_seeds": 1, "input": "spectrogram", "mean": 0.5}  # fmt: skip
    summary = pd.DataFrame([{**cell, "frontend": "vgg", "gflops_per_clip": 1921.3, "extract_ms_per_clip": 419.2},
                            {**cell, "frontend": "temporal", "gflops_per_clip": 0.59, "extract_ms_per_clip": 3.0}])  # fmt: skip
    shown = table(summary, "synth").set_index("front-end")
    assert shown.loc["vgg", "GFLOP/clip large"] == "1,920" and shown.loc["vgg", "extract ms/clip large"] == "419"
    assert shown.loc["temporal", "GFLOP/clip large"] == "0.590" and "e+" not in shown.to_markdown()


def _npz(client, run) -> dict:
    owner = run.data.tags["features_run_id"]
    with np.load(client.download_artifacts(owner, "features/features.npz")) as npz:
        return {k: npz[k] for k in npz.files}


def _predictions(client, run) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run.info.run_id, "predictions.csv"))


@pytest.mark.slow
def test_the_knn_probe_is_scikit_learns_on_the_logged_features_and_folds(logged):
    """Recomputed from the run's features.npz and the folds its predictions.csv names: for test
    fold k the honest protocol trains on the folds other than k and k+1."""
    from sklearn.neighbors import KNeighborsClassifier

    cwd, _ = logged
    client, _, runs = mlflow_runs(cwd)
    run = next(r for r in runs if r.data.tags.get("frontend") == SPECTRAL and r.data.tags["feature_size"] == "large")
    npz, pred = _npz(client, run), _predictions(client, run)
    fold_of = dict(zip(pred["clip_id"], pred["split"]))
    folds = np.array([fold_of[c] for c in npz["clip_ids"]])
    names = sorted(set(folds))
    for i, name in enumerate(names):
        test, val = folds == name, folds == names[(i + 1) % len(names)]
        train = ~test & ~val
        mean, sd = npz["features"][train].mean(0), npz["features"][train].std(0)
        z = (npz["features"] - mean) / np.where(sd > 0, sd, 1)
        knn = KNeighborsClassifier(n_neighbors=min(10, train.sum()), metric="cosine").fit(z[train], npz["labels"][train])
        expected = np.mean(knn.predict(z[test]) == npz["labels"][test])
        assert run.data.metrics[f"{name}_knn_accuracy"] == pytest.approx(expected)
    md = (cwd / "reports" / "synth" / "table.md").read_text()
    assert "large · kNN probe" in md and "the kNN probe ranks 3 front-ends" in md


@pytest.mark.slow
def test_per_class_recall_is_logged_and_the_two_best_are_compared_class_by_class(logged):
    from statsmodels.stats.contingency_tables import mcnemar

    cwd, _ = logged
    client, _, runs = mlflow_runs(cwd)
    run = next(r for r in runs if r.data.tags.get("elm_audio.role") == "run")
    pred = _predictions(client, run)
    for label, rows in pred.groupby("label"):
        assert run.data.metrics[f"class_accuracy/{label}"] == pytest.approx(np.mean(rows["label"] == rows["prediction"]))
    folder = cwd / "reports" / "synth"
    table = pd.read_csv(folder / "classes_small.csv", index_col=0)
    assert len(table) == 6 and table.columns[0].endswith("· svm")
    diff = pd.read_csv(folder / "class_differences_small.csv", index_col=0)
    first, second = (c.split(" · ")[0] for c in table.columns[:2])  # best first; distinct front-ends at the top
    outcomes = {}
    for fe in (first, second):
        chosen = [r for r in runs if r.data.tags.get("frontend") == fe and r.data.tags.get("feature_size") == "small"
                  and r.data.tags.get("elm_audio.role") == "run"]  # fmt: skip
        together = pd.concat([(p["label"] == p["prediction"]).set_axis(p["clip_id"]) for p in map(lambda r: _predictions(client, r), chosen)], axis=1)
        outcomes[fe] = together.mean(axis=1) > 0.5
    labels = dict(zip(pred["clip_id"], pred["label"]))
    for label, r in diff.iterrows():
        clips = [c for c in outcomes[first].index if labels[c] == label]
        a, b = outcomes[first].loc[clips], outcomes[second].loc[clips]
        t = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
        assert r["p"] == pytest.approx(mcnemar(t, exact=True).pvalue) and r["mean_diff"] == pytest.approx(a.mean() - b.mean())
    assert (folder / "classes_small.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_the_cka_map_is_the_formula_on_the_logged_features_with_its_controls(logged):
    from helpers.cka import cka_by_the_formula

    cwd, _ = logged
    client, _, runs = mlflow_runs(cwd)
    folder = cwd / "reports" / "synth"
    pairs = pd.read_csv(folder / "cka_pairs_large.csv")
    matrix = pd.read_csv(folder / "cka_large.csv", index_col=0)
    assert set(matrix.index) == set(FRONTENDS) and np.allclose(matrix.to_numpy(), matrix.to_numpy().T)

    def standardized(fe: str) -> np.ndarray:
        run = next(r for r in runs if r.data.tags.get("frontend") == fe and r.data.tags["feature_size"] == "large"
                   and r.data.params["seed"] == "1")  # fmt: skip
        x = _npz(client, run)["features"].astype(np.float64)
        x = x[:, x.std(0) > 0]
        return (x - x.mean(0)) / x.std(0)

    row = pairs[pairs[["a", "b"]].apply(set, axis=1) == {"temporal", SPECTRAL}].iloc[0]
    assert row["cka"] == pytest.approx(cka_by_the_formula(standardized("temporal"), standardized(SPECTRAL)), rel=1e-6)
    assert matrix.loc[SPECTRAL, "temporal"] == pytest.approx(row["cka"])
    assert row["ci_low"] <= row["cka"] <= row["ci_high"]
    kinds = pairs.groupby("kind").size()
    assert kinds["front-ends"] == 3 and kinds["shuffled"] == 3 and kinds["seeds"] == 3  # mfcc's seeds too
    assert (pairs.loc[pairs["kind"] == "shuffled", "cka"].abs() < 0.3).all()
    assert (folder / "cka_large.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_random_runs_log_the_proxies_once_per_set_of_weights(logged):
    cwd, _ = logged
    _, _, runs = mlflow_runs(cwd)
    random = [r for r in runs if r.data.tags.get("elm_audio.role") in ("run", "trial") and r.data.tags.get("frontend") in FRONTENDS]
    by_key: dict[str, set] = {}
    for r in random:
        has = {"naswot", "synflow"} <= set(r.data.metrics)
        assert has == (r.data.tags["frontend"] != "mfcc")
        if has:
            by_key.setdefault(r.data.tags["features_key"], set()).add((r.data.metrics["naswot"], r.data.metrics["synflow"]))
    assert all(len(v) == 1 for v in by_key.values()) and len(by_key) == 2 * 2 * 2  # two front-ends, sizes, seeds


def test_each_predictor_of_trained_accuracy_gets_kendalls_tau_and_its_exact_p(monkeypatch):
    """Five front-ends, random and trained runs over four folds; parameters predict the trained
    ranking perfectly, synflow inversely, NASWOT is missing for one front-end."""
    from elm_audio.report import premise
    from elm_audio.report.premise import premises

    monkeypatch.setattr(premise, "BOOTSTRAP", 200)  # the intervals' draws; the tau and p are exact
    from elm_audio.report.probes import predictors

    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "d", "e"]
    trained = dict(zip(names, [0.9, 0.8, 0.7, 0.6, 0.5]))
    random = dict(zip(names, [0.7, 0.5, 0.6, 0.4, 0.3]))
    rows = []
    for i, fe in enumerate(names):
        base = {"frontend": fe, "feature_size": "small", "experiment": "default", "seed": 1}
        noisy = lambda m: {f"fold{k}": m + rng.normal(0, 0.01) for k in range(1, 5)}  # noqa: E731
        rows.append({**base, "classifier": "trained", "folds": noisy(trained[fe]), "knn_accuracy": np.nan})
        knn = noisy(random[fe] - 0.1)
        rows.append({**base, "classifier": "svm", "folds": noisy(random[fe]), "knn_folds": knn, "knn_accuracy": 0.5,
                     "n_params": 10.0 * (5 - i), "gflops_per_clip": 1.0, "naswot": np.nan if fe == "e" else float(i),
                     "synflow": float(i)})  # fmt: skip
    best = pd.DataFrame(rows)
    (p,) = premises(best)
    table = predictors(best, p).set_index("predictor")
    means_t = pd.Series(trained)
    for name, values in {"random-weight accuracy": random, "parameters": {fe: 10.0 * (5 - i) for i, fe in enumerate(names)},
                         "synflow": {fe: float(i) for i, fe in enumerate(names)}}.items():  # fmt: skip
        v = pd.Series(values)[names]
        assert table.loc[name, "tau"] == pytest.approx(stats.kendalltau(v, means_t[names]).statistic, abs=1e-9)
        assert table.loc[name, "p"] == pytest.approx(stats.kendalltau(v, means_t[names], alternative="greater").pvalue)
    assert table.loc["parameters", "p"] == pytest.approx(1 / math.factorial(5))
    assert table.loc["parameters", "ci_low"] == table.loc["parameters", "ci_high"] == pytest.approx(1.0)
    assert table.loc["NASWOT", "n_frontends"] == 4 and table.loc["kNN accuracy", "n_frontends"] == 5
    assert np.isnan(table.loc["GFLOP per clip", "tau"])  # all equal: no ranking


@pytest.mark.slow
def test_the_premise_section_compares_random_and_trained_rankings(logged, tmp_path):
    """The three small front-ends trained, beside the random-weight runs of ``logged`` (this
    test comes after every other test of that store), then the report: tau, rho, their
    intervals and the scatter figure."""
    cwd, _ = logged
    grid = ["-m", f"frontend={','.join(FRONTENDS)}", "hydra/sweeper=basic", "seed=1", *QUICK]
    run_cli("elm_audio", *grid, "weights=trained", "weights.max_epochs=1", cwd=cwd)
    _, out, _ = report_here(cwd, "--out", str(tmp_path / "reports"))
    md = (tmp_path / "reports" / "synth" / "table.md").read_text()
    section = md.split("## Premise")[1]
    assert "3 front-ends with both random and trained runs; Kendall's tau" in section and "Spearman's rho" in section
    assert "the evidence is thin" in section  # three front-ends are few
    assert (tmp_path / "reports" / "synth" / "premise_small.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(tmp_path / "reports" / "synth" / "premise_small.csv", index_col=0)
    assert set(table.index) == set(FRONTENDS)
    tau = float(section.split("Kendall's tau ")[1].split(" ")[0])
    assert tau == pytest.approx(stats.kendalltau(table["random"], table["trained"]).statistic, abs=0.006)
    assert "small · trained" in md and "premise" in out
    # issue 21's baselines, from the same real trained runs: one tau per predictor
    predictors = pd.read_csv(tmp_path / "reports" / "synth" / "predictors_small.csv").set_index("predictor")
    assert {"random-weight accuracy", "parameters", "GFLOP per clip", "NASWOT", "synflow"} <= set(predictors.index)
    assert predictors.loc["random-weight accuracy", "tau"] == pytest.approx(tau, abs=0.006)
