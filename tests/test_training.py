"""weights=trained end to end: an interrupted training resumes from its last checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.runs import QUICK, logged_runs, run_cli, seed_empty_store

pytestmark = pytest.mark.slow

ARGS = ["weights=trained", "frontend=temporal", "weights.max_epochs=20", "weights.patience=20", *QUICK]


def checkpoint_epoch(cwd: Path) -> int:
    found = list((cwd / "cache" / "training").glob("*/fold1/last.pt"))
    if not found:
        return 0
    try:
        return torch.load(found[0], weights_only=True)["state"]["epoch"]
    except Exception:  # being replaced at this moment
        return 0


def test_an_interrupted_training_resumes_from_its_last_checkpoint(tmp_path):
    env = {**os.environ, "ELM_AUDIO_CACHE": str(tmp_path / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    seed_empty_store(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "elm_audio", *ARGS], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 300
    while checkpoint_epoch(tmp_path) < 3:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "interrupted" in err and "Traceback" not in err
    stopped_at = checkpoint_epoch(tmp_path)
    assert 3 <= stopped_at < 20

    run_cli("elm_audio", *ARGS, cwd=tmp_path)
    client, (killed, resumed) = logged_runs(tmp_path)
    assert killed.info.status == "KILLED" and resumed.info.status == "FINISHED"
    steps = [p.step for p in client.get_metric_history(resumed.info.run_id, "fold1_epoch_train_loss")]
    assert steps == list(range(stopped_at + 1, 21))  # it went on from the checkpoint, not from epoch 1
    first = [p.step for p in client.get_metric_history(killed.info.run_id, "fold1_epoch_train_loss")]
    assert first == list(range(1, len(first) + 1)) and len(first) >= stopped_at
    assert "fold3_test_accuracy" in resumed.data.metrics
