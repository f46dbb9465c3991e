"""The whole pipeline in-process, on a handful of tiny clips: the quick loop's end-to-end check
(the CLI tests, marked slow, run the same through Hydra as a user does)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.runs import local_uri, logged_runs, seed_empty_store

from elm_audio.config import compose
from elm_audio.report.build import build
from elm_audio.run.runner import run

TINY = ["dataset.clips_per_class=4", "dataset.duration=1.0", "dataset.n_folds=3", "extract.progress=false",
        "extract.num_workers=0", "device=cpu"]  # fmt: skip


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    seed_empty_store(tmp_path)
    return tmp_path


def test_two_front_ends_run_and_the_report_compares_them(workdir, capsys):
    for frontend in ("mfcc", "temporal"):
        val = run(compose([f"frontend={frontend}", f"cache.dir={workdir / 'cache'}", *TINY]))
        assert 0.0 <= val <= 1.0
    assert "elm_audio run finished" in capsys.readouterr().out
    client, runs = logged_runs(workdir)
    assert [r.data.tags["frontend"] for r in runs] == ["mfcc", "temporal"]
    assert all(r.info.status == "FINISHED" and "fold3_test_accuracy" in r.data.metrics for r in runs)
    experiment = client.get_experiment_by_name("elm_audio/synth").experiment_id
    report = build(local_uri(workdir), "synth", experiment, workdir / "reports")
    assert set(report.summary["frontend"]) == {"mfcc", "temporal"}
    assert (workdir / "reports" / "synth" / "table.md").is_file()


def test_on_fixed_partitions_the_report_compares_front_ends_by_mcnemar_on_their_predictions(workdir, class_folder):
    import pandas as pd
    from statsmodels.stats.contingency_tables import mcnemar

    lists = {}
    for part, picks in (("train", range(0, 6)), ("validation", range(6, 8)), ("test", range(8, 12))):
        lists[part] = workdir / f"{part}.txt"
        lists[part].write_text("".join(f"{lab}/{lab}_{i}.{['wav', 'flac', 'ogg', 'mp3', 'au', 'wav'][i % 6]}\n"
                                       for lab in ("low", "high") for i in picks))  # fmt: skip
    split = "dataset.split_lists={" + ", ".join(f"{p}: '{f}'" for p, f in lists.items()) + "}"
    for frontend in ("mfcc", "temporal"):
        run(compose(["dataset=folder", f"dataset.root={class_folder}", split, f"frontend={frontend}",
                     f"cache.dir={workdir / 'cache'}", *TINY[3:]]))  # fmt: skip
    client, runs = logged_runs(workdir, "folder")
    experiment = client.get_experiment_by_name("elm_audio/folder").experiment_id
    build(local_uri(workdir), "folder", experiment, workdir / "reports")
    (pairs,) = [pd.read_csv(p) for p in (workdir / "reports" / "folder").glob("pairs_*.csv")]
    assert list(pairs["test"]) == ["exact McNemar"] and pairs["n"].iloc[0] == 8
    right = {}
    for r in runs:
        table = pd.read_csv(client.download_artifacts(r.info.run_id, "predictions.csv", str(workdir)))
        right[r.data.tags["frontend"]] = (table["label"] == table["prediction"]).set_axis(table["clip_id"])
    a, b = right["mfcc"], right["temporal"].loc[right["mfcc"].index]
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    assert pairs["p"].iloc[0] == pytest.approx(mcnemar(table, exact=True).pvalue)
    summary = pd.read_csv(workdir / "reports" / "folder" / "table.csv")
    assert summary["ci_low"].notna().all()  # Wilson intervals over the 8 test clips


def test_a_trained_run_logs_its_learning_curve_and_fold_metrics(workdir):
    run(compose(["frontend=temporal", "weights=trained", "weights.max_epochs=3", "weights.patience=3",
                 f"cache.dir={workdir / 'cache'}", *TINY]))  # fmt: skip
    client, (trained,) = logged_runs(workdir)
    m, tags = trained.data.metrics, trained.data.tags
    assert tags["weights"] == "trained" and tags["classifier"] == "trained" and trained.info.run_name == "temporal-small-trained-seed0"
    for k in (1, 2, 3):
        assert f"fold{k}_test_accuracy" in m and f"fold{k}_val_accuracy" in m
        curve = client.get_metric_history(trained.info.run_id, f"fold{k}_epoch_train_loss")
        assert [p.step for p in curve] == [1, 2, 3]
        assert len(client.get_metric_history(trained.info.run_id, f"fold{k}_epoch_val_accuracy")) == 3
    assert m["val_accuracy"] == pytest.approx(np.mean([m[f"fold{k}_val_accuracy"] for k in (1, 2, 3)]))
    assert m["train_seconds"] > 0 and m["gflops_per_epoch"] > 0
    # the best epoch's validation accuracy is what the fold reports
    best = max(p.value for p in client.get_metric_history(trained.info.run_id, "fold1_epoch_val_accuracy"))
    assert m["fold1_val_accuracy"] == pytest.approx(best)


def test_weights_trained_refuses_the_paper_protocol_by_key():
    from elm_audio.config import ConfigError
    from elm_audio.settings.validate import validate

    with pytest.raises(ConfigError, match="protocol.mode=paper: weights=trained needs a validation fold"):
        validate(compose(["weights=trained", "protocol.mode=paper", "device=cpu"]))
    with pytest.raises(ConfigError, match="weights.max_epochs=0 must be at least 1"):
        validate(compose(["weights=trained", "weights.max_epochs=0", "device=cpu"]))
