"""End to end: ``python -m elm_audio`` as a user runs it, checked through what MLflow holds."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.audio import tone, write_audio
from helpers.runs import QUICK, logged_runs, run_cli, run_here
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


runs = logged_runs


def artifact(client: MlflowClient, run_id: str, path: str, tmp: Path) -> Path:
    return Path(client.download_artifacts(run_id, path, str(tmp)))


def cache_entries(cwd: Path) -> list[Path]:
    root = cwd / "cache"
    return [p for p in root.iterdir() if p.is_dir() and p.name not in ("synth", "digests")] if root.exists() else []


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The README's first command, unchanged, in an empty folder (it creates the MLflow store)."""
    cwd = tmp_path_factory.mktemp("default")
    proc = run_cli("elm_audio", cwd=cwd, seed_store=False)
    return cwd, proc


@pytest.mark.xdist_group("default_run")
def test_default_run_prints_a_summary_that_says_where_it_was_logged(default_run):
    cwd, proc = default_run
    out = proc.stdout
    for expected in ("dataset      synth", "front-end    vgg, feature size small (160 values", "classifier   svm"):
        assert expected in out
    client, (run,) = runs(cwd)
    assert f"run {run.info.run_id}" in out
    assert f"mlflow ui --backend-store-uri sqlite:///{cwd / 'mlruns' / 'mlflow.db'}" in out
    assert f"validation   {run.data.metrics['val_accuracy']:.4f}" in out


@pytest.mark.xdist_group("default_run")
def test_default_run_logs_the_design_params_metrics_tags_and_artifacts(default_run, tmp_path):
    cwd, _ = default_run
    client, (run,) = runs(cwd)
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert p["frontend.name"] == "vgg" and p["feature_size"] == "small" and p["classifier.C"] == "2.0"
    assert p["feature_dim"] == "160" and int(p["n_params"]) > 0 and p["seed"] == "0"
    for name in ("val_accuracy", "test_accuracy", "test_accuracy_std", "extract_seconds", "fit_seconds", "gflops_per_clip"):
        assert name in m
    assert [k for k in sorted(m) if k.endswith("_test_accuracy") and k.startswith("fold")] == [
        f"fold{k}_test_accuracy" for k in range(1, 6)
    ]
    assert (t["frontend"], t["dataset"], t["feature_size"]) == ("vgg", "synth", "small")
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "confusion_matrix.png", "predictions.csv", "features"} <= listed
    assert artifact(client, run.info.run_id, "confusion_matrix.png", tmp_path).read_bytes()[:4] == b"\x89PNG"

    # per-clip predictions agree with the per-fold metrics; every clip is tested once
    preds = pd.read_csv(artifact(client, run.info.run_id, "predictions.csv", tmp_path))
    assert len(preds) == 180 and preds["clip_id"].is_unique
    for fold, group in preds.groupby("split"):
        assert m[f"{fold}_test_accuracy"] == pytest.approx((group["label"] == group["prediction"]).mean())
    assert m["test_accuracy"] == pytest.approx(np.mean([m[f"fold{k}_test_accuracy"] for k in range(1, 6)]))
    assert m["test_accuracy"] > 1 / 6 + 0.2  # well above chance on six classes

    # the stored feature matrix is the cached one, with labels and clip ids
    saved = np.load(artifact(client, run.info.run_id, "features/features.npz", tmp_path))
    (entry,) = cache_entries(cwd)
    np.testing.assert_array_equal(saved["features"], np.load(entry / "features.npy"))
    assert saved["features"].shape == (180, 160)
    assert sorted(set(saved["labels"])) == sorted(set(preds["label"]))
    assert set(saved["clip_ids"]) == set(preds["clip_id"])
    cfg = artifact(client, run.info.run_id, "config.yaml", tmp_path).read_text()
    assert "frontend:" in cfg and "name: vgg" in cfg


@pytest.mark.xdist_group("default_run")
def test_a_run_that_needs_the_same_features_loads_them_and_points_at_their_run(default_run):
    cwd, _ = default_run
    run_here(cwd, "classifier=elm", "extract.progress=false")
    client, (first, second) = runs(cwd)
    assert len(cache_entries(cwd)) == 1
    assert second.data.tags["features_run_id"] == first.info.run_id
    assert "features" not in {a.path for a in client.list_artifacts(second.info.run_id)}
    assert second.data.params["classifier.name"] == "elm"


def test_paper_protocol_scores_and_selects_on_the_same_folds(tmp_path):
    run_here(tmp_path, *QUICK, "protocol.mode=paper", "frontend=mfcc")
    _, (run,) = runs(tmp_path)
    m = run.data.metrics
    assert m["val_accuracy"] == m["test_accuracy"]
    assert run.data.tags["protocol.mode"] == "paper" and "fold1_val_accuracy" not in m


def test_a_folder_of_recordings_in_mixed_formats_runs(class_folder, tmp_path):
    out, _ = run_here(
        tmp_path, "dataset=folder", f"dataset.root={class_folder}", "dataset.n_folds=3", "frontend=mfcc", "extract.progress=false"
    )
    assert "dataset      folder: 24 clips, 2 classes, 3 folds" in out
    _, (run,) = runs(tmp_path, "folder")
    assert run.data.metrics["test_accuracy"] > 0.8  # low against high tones, from 8 training clips


def test_unknown_front_end_names_the_key_and_the_choices(tmp_path):
    proc = run_cli("elm_audio", "frontend=resnet", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "frontend" in proc.stderr and "resnet" in proc.stderr and "timbral_temporal" in proc.stderr
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("classifer=elm", "classifer=elm: the config has no key classifer; did you mean classifier?"),
        ("+classifer=elm", "+classifer=elm: the config has no key classifer; did you mean classifier?"),
        ("+seeds=1", "+seeds=1: the config has no key seeds; did you mean seed?"),
        ("classifier.c=10", "classifier.c=10: the config has no key classifier.c; did you mean classifier.C?"),
        ("++dataset.rot=/data", "++dataset.rot=/data: the config has no key dataset.rot; did you mean dataset.root?"),
    ],
)
def test_a_key_the_config_does_not_define_is_refused_with_the_nearest_real_key(tmp_path, override, message):
    proc = run_cli("elm_audio", override, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and proc.stderr.strip() == f"elm_audio: {message}" and not proc.stdout
    assert not (tmp_path / "mlruns").exists()


def test_keys_are_checked_against_the_groups_chosen_and_hydras_own_are_left_to_hydra():
    from elm_audio.config import ConfigError
    from elm_audio.settings.unknown_keys import check

    check(["classifier=elm", "classifier.hidden_units=10", "++sweep.trial=3", "hydra.sweeper.n_trials=2", "~seed"])
    check(["classifier=svm,elm", "classifier.alpha=1"])  # swept: the keys of every option
    with pytest.raises(ConfigError, match=r"classifier.C=3: the config has no key classifier.C; classifier holds: alpha, "):
        check(["classifier=elm", "classifier.C=3"])
    with pytest.raises(ConfigError, match="did you mean frontend.widths.small"):
        check(["frontend.widht.small=3"])


def test_help_lists_every_choice_a_user_makes_and_says_what_is_internal(tmp_path):
    from elm_audio.config import choices

    out = run_cli("elm_audio", "--help", cwd=tmp_path).stdout
    for group in ("dataset", "frontend", "feature_size", "classifier", "weights", "experiment", "hydra/sweeper"):
        listed = re.search(rf"\n{group}[: ].*?(?=\n\S)", out, re.DOTALL).group(0)
        wanted = ["search", "paper_grid", "basic"] if group == "hydra/sweeper" else choices(group)
        assert all(option in listed for option in wanted), (group, listed)
    assert "internal, not to be chosen: original/classifier and original/frontend" in out
    assert "optuna is Hydra's own" in out and "elm_audio_optuna the base" in out


def test_missing_root_stops_before_anything_is_logged(tmp_path):
    proc = run_cli("elm_audio", "dataset=folder", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "dataset=folder needs dataset.root=<folder>" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists() and not cache_entries(tmp_path)


def test_an_unreadable_clip_stops_the_run_naming_it_and_leaves_no_cache_entry(class_folder, tmp_path):
    bad = class_folder / "low" / "broken.wav"
    bad.write_bytes(b"not audio at all")
    args = ["dataset=folder", f"dataset.root={class_folder}", "dataset.n_folds=3", "frontend=mfcc", *QUICK[-2:]]
    proc = run_cli("elm_audio", *args, cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "low/broken.wav: is named .wav but is not a WAV" in proc.stderr and "on_bad_clip=skip" in proc.stderr
    assert "Traceback" not in proc.stderr  # the one-line error test_careless_use's in-process cached-skip test leaves to this one
    assert not cache_entries(tmp_path)
    assert not list((tmp_path / "cache").glob(".tmp-*"))

    run_here(tmp_path, *args, "dataset.on_bad_clip=skip")
    client, runs_ = runs(tmp_path, "folder")
    done = [r for r in runs_ if r.info.status == "FINISHED"][-1]
    assert done.data.tags["bad_clips"] == "1"
    listing = io.StringIO(client.download_artifacts(done.info.run_id, "bad_clips.tsv", str(tmp_path)))
    assert "low/broken" in Path(listing.getvalue()).read_text()


@pytest.mark.parametrize(
    "override,message",
    [
        ("device=cuda", "device=cuda: CUDA is not available"),
        ("precision=fp16", "precision=fp16 needs device=cuda"),
        ("audio.fit=stretch", "audio.fit=stretch is not one of"),
        ("protocol.mode=cheat", "protocol.mode=cheat is not one of"),
    ],
)
def test_a_bad_config_value_names_the_key_before_anything_is_logged(tmp_path, override, message):
    import torch

    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli("elm_audio", override, *QUICK, "device=cpu" if override != "device=cuda" else "seed=0", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists()


def test_the_paper_preset_runs_end_to_end_on_a_folder_and_keeps_its_own_features(class_folder, tmp_path):
    args = ["dataset=folder", f"dataset.root={class_folder}", "dataset.n_folds=3", "extract.progress=false"]
    run_here(tmp_path, *args)
    proc = run_cli("elm_audio", "experiment=paper", *args, cwd=tmp_path)
    assert "paper protocol" in proc.stdout
    _, (clean, paper) = runs(tmp_path, "folder")
    assert clean.data.tags["experiment"] == "default" and paper.data.tags["experiment"] == "paper"
    p = paper.data.params
    assert (p["audio.fit_stage"], p["audio.stft_padding"], p["classifier.standardize"]) == ("frames", "reflect", "False")
    assert (p["protocol.mode"], p["protocol.fold_weighting"]) == ("paper", "size")
    # the two input paths never share features: two cache entries, each stored by its own run
    assert len(cache_entries(tmp_path)) == 2
    assert paper.data.tags["features_run_id"] == paper.info.run_id != clean.data.tags["features_run_id"]
    assert paper.data.metrics["val_accuracy"] == paper.data.metrics["test_accuracy"]


def test_the_paper_grid_under_the_paper_preset_runs_end_to_end(class_folder, tmp_path):
    run_cli(
        "elm_audio", "experiment=paper", "-m", "hydra/sweeper=paper_grid", "classifier=elm", "frontend=temporal",
        "dataset=folder", f"dataset.root={class_folder}", "dataset.n_folds=3", "extract.progress=false", cwd=tmp_path,
    )  # fmt: skip
    _, logged = runs(tmp_path, "folder")
    trials = [r for r in logged if r.data.tags.get("elm_audio.role") == "trial"]
    assert sorted(int(r.data.params["classifier.hidden_units"]) for r in trials) == [100, 250, 500, 1200, 1800, 2500]
    for r in trials:
        assert r.info.status == "FINISHED" and r.data.tags["experiment"] == "paper"
        assert (r.data.params["classifier.hidden_draw"], r.data.params["classifier.targets"]) == ("original", "plus_minus_one")
        assert r.data.params["protocol.fold_weighting"] == "equal"  # the ELM's figure was an unweighted mean


def test_what_a_researcher_sees_in_mlflow_after_a_run_and_a_small_sweep(class_folder, tmp_path):
    """Links that open the model-training view, readable run names, the dataset input whose
    digest follows the clip list, the summary as description, gamma only on rbf trials."""
    args = ["dataset=folder", f"dataset.root={class_folder}", "dataset.n_folds=3", "frontend=mfcc", *QUICK[-2:]]
    single = run_cli("elm_audio", *args, cwd=tmp_path).stdout
    swept = run_cli("elm_audio", "-m", "hydra.sweeper.n_trials=6", *args, cwd=tmp_path)
    sweep = swept.stdout
    client, logged = runs(tmp_path, "folder")
    experiment = client.get_experiment_by_name("elm_audio/folder")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    first, parent, trials = logged[0], logged[1], logged[2:]
    assert f"#/experiments/{experiment.experiment_id}/runs/{first.info.run_id}?workflowType=machine_learning" in single
    assert f"#/experiments/{experiment.experiment_id}/runs/{parent.info.run_id}?workflowType=machine_learning" in sweep
    assert sweep.count("elm_audio run finished") == 0
    # the terminal: a header, then one line a trial (no launcher lines, no cache lines), then the end
    lines = swept.stdout.splitlines()  # Hydra's and Optuna's log lines would be here or on stderr
    assert not [w for w in ("Launching", "#0 :", "++sweep", "no-name", "features: from the cache") if w in swept.stdout + swept.stderr]
    study = parent.data.tags["sweep_id"]
    assert re.fullmatch(r"elm_audio-folder-mfcc-small-svm-seed0-honest-\d{8}T\d{6}-[0-9a-f]{4}", study)  # no Optuna no-name-<uuid>
    assert lines[0] == f"sweep: 6 trial(s) of study {study} (in-memory), parent run {parent.info.run_id}"
    assert [line.split(":")[0] for line in lines[1:7]] == [f"trial {n}" for n in range(6)]
    assert lines[7].startswith("best trial #") and all(line.startswith("  ") for line in lines[8:]), lines
    assert first.info.run_name == "mfcc-small-svm-seed0" and parent.info.run_name == "sweep-mfcc-small-svm-seed0"
    assert sorted(r.info.run_name for r in trials) == [f"mfcc-small-svm-seed0-trial{n}" for n in range(6)]
    # the summary and the best trial as descriptions
    assert "elm_audio run finished" in first.data.tags["mlflow.note.content"]
    assert first.info.run_id in first.data.tags["mlflow.note.content"]
    assert "best trial #" in parent.data.tags["mlflow.note.content"]
    # gamma exists for rbf trials only
    kernels = {r.data.params["classifier.kernel"] for r in trials}
    assert kernels == {"rbf", "linear"}, "the sweep should have tried both kernels"
    for r in trials:
        assert ("classifier.gamma" in r.data.params) == (r.data.params["classifier.kernel"] == "rbf")
    # the dataset input: name, source, and a digest that changes when a clip is added
    (given,) = first.inputs.dataset_inputs
    assert given.dataset.name == "folder" and str(class_folder) in given.dataset.source
    write_audio(class_folder / "low" / "low_extra.wav", tone(230.0, 1.5, 22_050), 22_050)
    run_here(tmp_path, *args)
    _, logged = runs(tmp_path, "folder")
    assert logged[-1].info.run_name == "mfcc-small-svm-seed0-2"  # a rerun's name tells it apart
    (again,) = logged[-1].inputs.dataset_inputs
    assert again.dataset.digest != given.dataset.digest
    assert {r.inputs.dataset_inputs[0].dataset.digest for r in trials} == {given.dataset.digest}
