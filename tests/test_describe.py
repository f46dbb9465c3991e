import json

import pytest
from helpers.frontends import LENGTHS
from helpers.runs import QUICK, logged_runs, run_cli

from elm_audio.config import compose
from elm_audio.describe import describe


@pytest.mark.slow
def test_describe_prints_one_object_for_one_front_end_and_size(tmp_path):
    out = json.loads(run_cli("elm_audio.describe", "frontend=cnn_7x86", "feature_size=large", "--json", cwd=tmp_path).stdout)
    assert out["frontend"] == "cnn_7x86" and out["feature_size"] == "large"
    assert out["input"] == "spectrogram" and out["input_shape"] == [1376, 96]
    assert out["feature_dim"] == 3585 and out["n_params"] == 3585 * (7 * 86 + 1)
    assert out["gflops_per_clip"] == pytest.approx(2 * 3585 * 7 * 86 * 1370 * 11 / 1e9, rel=1e-3)
    assert out["layers"] == [{"name": "pool", "shape": [3585, 1370, 1], "n_features": 3585}]


@pytest.mark.slow
def test_describe_all_lists_every_front_end_at_both_sizes(tmp_path):
    out = json.loads(run_cli("elm_audio.describe", "frontend=all", "--json", cwd=tmp_path).stdout)
    assert isinstance(out, list) and len(out) == 2 * len(LENGTHS)
    for row in out:
        assert row["feature_dim"] == LENGTHS[row["frontend"]][("small", "large").index(row["feature_size"])]
        assert {"input", "input_shape", "n_params", "gflops_per_clip", "layers"} <= set(row)
    large = {r["frontend"]: r["gflops_per_clip"] for r in out if r["feature_size"] == "large"}
    # VGG: 3x3 'same' convs at 1376x96, then after each pool 344x48, 86x16, 17x8, 4x4; 717 maps
    positions = [1376 * 96, 344 * 48, 86 * 16, 17 * 8, 4 * 4]
    inputs = [1, 717, 717, 717, 717]
    assert large["vgg"] == pytest.approx(sum(2 * p * c * 717 * 9 for p, c in zip(positions, inputs)) / 1e9, rel=1e-3)
    assert all(g > 0 for g in large.values())


def test_describe_agrees_with_the_run_config():
    row = describe(compose(["frontend=temporal", "feature_size=small"]))
    assert row["feature_dim"] == 112 and row["input"] == "spectrogram"


@pytest.mark.slow
def test_every_front_end_completes_a_run_on_the_default_dataset(tmp_path):
    """The design's architecture grid, run as one Hydra multirun with the basic sweeper; it says
    where it is (a header, a line a job with the time left) and ends with a table, best first."""
    names, n = ",".join(sorted(LENGTHS)), len(LENGTHS)
    proc = run_cli("elm_audio", "-m", f"frontend={names}", "hydra/sweeper=basic", *QUICK, "dataset.clips_per_class=3", cwd=tmp_path)
    _, runs = logged_runs(tmp_path)
    assert sorted(r.data.tags["frontend"] for r in runs) == sorted(LENGTHS)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"grid: {n} jobs (frontend: {n})")
    starts = [line for line in lines if line.startswith("job ")]
    assert [s.split(" (about ")[0] for s in starts] == [f"job {i}/{n}: {fe} small svm" for i, fe in enumerate(sorted(LENGTHS), 1)]
    assert " (about " not in starts[0]
    assert all(s.endswith(" left)") for s in starts[1:])
    table = lines[lines.index("grid finished, best first:") + 3 : -1]
    scores = {row.split()[1]: float(row.split()[4]) for row in table}
    assert scores == {r.data.tags["frontend"]: round(r.data.metrics["test_accuracy"], 4) for r in runs}
    assert [float(row.split()[4]) for row in table] == sorted(scores.values(), reverse=True)
    assert lines[-1] == "compare them: python -m elm_audio.report"
    for r in runs:
        assert r.info.status == "FINISHED"
        assert int(r.data.params["feature_dim"]) == LENGTHS[r.data.tags["frontend"]][0]
        assert r.data.metrics["gflops_per_clip"] > 0 and int(r.data.params["n_params"]) >= 0
