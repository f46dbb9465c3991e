"""Nothing read back from the cache runs code or lies, trainings of one key do not race, and
refits of the ELM agree (issue 23: findings 1, 2, 10, 12)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.runs import QUICK, logged_runs, run_here

from elm_audio.classifiers import ELMClassifier


def test_elm_refits_of_an_ill_conditioned_system_agree_whatever_the_thread_count():
    """Clips far from the origin in two features: relu(X W1 + b1) is nearly of rank three and
    the ridge system's float32 rounding exceeds alpha. Whether float32 Cholesky failed used to
    depend on the threads' summation order, and the two paths gave different models."""
    rng = np.random.RandomState(0)
    X, y = rng.normal(loc=100, size=(100, 2)), rng.randint(0, 2, 100)
    threads = torch.get_num_threads()
    try:
        for seed in range(12):
            fits = []
            for n_threads in (1, 2, 1, 2):
                torch.set_num_threads(n_threads)
                model = ELMClassifier(hidden_units=100, random_state=seed).fit(X[:80], y[:80])
                fits.append((model.predict(X[80:]), model.decision_function(X[80:])))
            for predictions, decisions in fits[1:]:
                np.testing.assert_array_equal(predictions, fits[0][0], err_msg=f"random_state={seed}")
                np.testing.assert_allclose(decisions, fits[0][1], rtol=1e-7, atol=1e-9)
    finally:
        torch.set_num_threads(threads)


def test_a_well_conditioned_elm_keeps_the_fast_float32_solve():
    rng = np.random.RandomState(1)
    X = rng.standard_normal((400, 50)).astype(np.float32)
    model = ELMClassifier(hidden_units=300, alpha=1.0, random_state=0).fit(X, rng.randint(0, 4, 400))
    assert model.solver_ == "float32" and model.w2_.dtype == torch.float32


# --- trainings (weights=trained) read back from the cache -------------------------------------

TRAIN = ["weights=trained", "frontend=temporal", "feature_size=small", "weights.max_epochs=2", *QUICK]


class Planted:
    """What a hostile colleague could leave as a checkpoint: unpickling it runs a command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant(path: Path, data: bytes) -> None:
    """Write ``data`` with a checksum that matches it, as a forger who read the code would."""
    path.write_bytes(data)
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")


def fold_metrics(cwd: Path) -> dict:
    _, runs = logged_runs(cwd)
    return runs[-1].data.metrics


@pytest.mark.slow
def test_planted_checkpoints_and_forged_results_are_named_set_aside_and_recomputed(tmp_path):
    run_here(tmp_path, *TRAIN)
    true = fold_metrics(tmp_path)
    (key,) = (tmp_path / "cache" / "training").iterdir()
    # fold1: no result, a checkpoint whose unpickling would run a command
    for name in ("result.json", "result.json.sha256"):
        (key / "fold1" / name).unlink()
    marker = tmp_path / "code-ran"
    buffer = io.BytesIO()
    torch.save({"model": Planted(marker), "state": {"epoch": 1}}, buffer)
    plant(key / "fold1" / "last.pt", buffer.getvalue())
    # fold2: a perfect score and a checksum to match; fold3: a perfect score, the checksum left as it was
    for fold, recheck in (("fold2", True), ("fold3", False)):
        path = key / fold / "result.json"
        forged = {**json.loads(path.read_text()), "val": 1.0, "test": 1.0}
        if recheck:
            plant(path, json.dumps(forged).encode())
        else:
            path.write_text(json.dumps(forged))

    _, err = run_here(tmp_path, *TRAIN)
    assert not marker.exists(), "unpickling the planted checkpoint ran its command"
    again = fold_metrics(tmp_path)
    assert true["fold2_test_accuracy"] < 1.0 and true["fold3_test_accuracy"] < 1.0  # the forgery changes them
    for fold in ("fold1", "fold2", "fold3"):
        assert again[f"{fold}_test_accuracy"] == true[f"{fold}_test_accuracy"], fold
    assert again["test_accuracy"] == pytest.approx(true["test_accuracy"])
    assert "fold1_epoch_train_loss" in again and "fold3_epoch_train_loss" in again  # trained again
    for fold, name in (("fold1", "last.pt"), ("fold2", "result.json"), ("fold3", "result.json")):
        assert f"{key / fold / name} is damaged" in err
        assert list((key / fold).glob(f".damaged-{name}-*")), f"{fold}/{name} was not set aside"
    assert "Traceback" not in err


@pytest.mark.slow
def test_two_identical_trainings_started_together_train_once_and_agree(tmp_path):
    """Two people (or a joblib sweep) start the same training on one cache: the second waits for
    the first's lock, then reuses its results (before, both wrote fold<k>/last.pt.tmp)."""
    cache = tmp_path / "cache"
    env = {**os.environ, "ELM_AUDIO_CACHE": str(cache), "HYDRA_FULL_ERROR": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    folders = [tmp_path / "alice", tmp_path / "bob"]
    procs = []
    for folder in folders:
        folder.mkdir()
        procs.append(subprocess.Popen([sys.executable, "-m", "elm_audio", *TRAIN, "weights.max_epochs=4"], cwd=folder,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))  # fmt: skip
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    metrics = [fold_metrics(folder) for folder in folders]
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]
    trained = ["fold1_epoch_train_loss" in m for m in metrics]
    assert sorted(trained) == [False, True], "both trained: the second did not wait for the first"


def test_the_report_imports_no_module_a_forged_run_names(tmp_path, monkeypatch):
    """Whoever can write the MLflow store chooses a run's params: naming a module of theirs as
    the front-end's ``_target_`` must not make the report import it."""
    from mlflow.tracking import MlflowClient

    from elm_audio.report.collect import load_runs

    marker = tmp_path / "imported"
    (tmp_path / "planted_frontend.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Net:\n    input_kind = 'waveform'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("elm_audio/synth")
    for target in ("planted_frontend.Net", "elm_audio.frontends.vgg.VGG"):
        run = client.create_run(experiment, tags={"elm_audio.role": "run"})
        client.log_param(run.info.run_id, "frontend.net._target_", target)
        client.log_metric(run.info.run_id, "test_accuracy", 0.5)
        client.set_terminated(run.info.run_id)
    runs = load_runs(uri, experiment)
    assert not marker.exists() and "planted_frontend" not in sys.modules
    assert dict(zip(runs["target"], runs["input"])) == {"planted_frontend.Net": "unknown", "elm_audio.frontends.vgg.VGG": "spectrogram"}
