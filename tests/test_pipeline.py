"""The whole pipeline in-process, on a handful of tiny clips: the quick loop's end-to-end check
(the CLI tests, marked slow, run the same through Hydra as a user does)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import local_uri, logged_runs

from elm_audio.config import compose
from elm_audio.report.build import build
from elm_audio.runner import run

TINY = ["dataset.clips_per_class=4", "dataset.duration=1.0", "dataset.n_folds=3", "extract.progress=false",
        "extract.num_workers=0", "device=cpu"]  # fmt: skip


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
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
