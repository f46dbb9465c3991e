"""What a researcher sees at the command line: a mistyped group option refused in one line with the
nearest names (``python -m elm_audio`` and ``python -m elm_audio.describe``), describe's usage, and
its readable table beside the JSON of ``--json``."""

from __future__ import annotations

import json

import pytest
from helpers.runs import run_cli

from elm_audio.config import ConfigError
from elm_audio.describe import table
from elm_audio.settings.unknown_keys import check


@pytest.mark.parametrize(
    "args, message",
    [
        (["frontend=vggg"], "frontend=vggg: frontend has no option vggg; did you mean vgg?"),
        (["-m", "frontend=vgg,vggg"], "frontend=vgg,vggg: frontend has no option vggg; did you mean vgg?"),
        (["hydra/sweeper=serch"], "hydra/sweeper=serch: hydra/sweeper has no option serch; did you mean search?"),
    ],
)
def test_a_mistyped_option_is_refused_in_one_line_with_the_nearest_name(tmp_path, args, message):
    proc = run_cli("elm_audio", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and proc.stderr.strip() == f"elm_audio: {message}" and not proc.stdout
    assert "Traceback" not in proc.stderr and not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["dataset=gtzn"], "dataset=gtzn: dataset has no option gtzn; did you mean gtzan?"),
        (["classifier=SVM"], "classifier=SVM: classifier has no option SVM; did you mean svm?"),
        (["feature_size=big"], "feature_size=big: feature_size has no option big; its options are large, small"),
        (["weights=rand"], "weights=rand: weights has no option rand; did you mean random?"),
        (["experiment=null"], "experiment=null: experiment has no option null; its options are paper"),
        (["hydra/launcher=jobilb"], "hydra/launcher=jobilb: hydra/launcher has no option jobilb; did you mean joblib?"),
        (["classifier=elm,svn"], "classifier=elm,svn: classifier has no option svn; did you mean svm?"),
    ],
)
def test_every_config_group_names_its_nearest_option_or_lists_them(overrides, message):
    with pytest.raises(ConfigError) as refused:
        check(overrides)
    assert str(refused.value) == message


def test_hydras_internal_sweepers_are_accepted_but_never_offered():
    check(["hydra/sweeper=optuna", "frontend=glob(v*)"])  # a glob picks among the options that exist
    with pytest.raises(ConfigError) as refused:
        check(["hydra/sweeper=optna"])
    assert str(refused.value) == (
        "hydra/sweeper=optna: hydra/sweeper has no option optna; its options are basic, paper_grid, search"
    )


def test_describe_help_says_what_it_does_and_how(tmp_path):
    proc = run_cli("elm_audio.describe", "--help", cwd=tmp_path)
    assert proc.stdout.startswith("usage: python -m elm_audio.describe [--json] [frontend=<name|all>]")
    assert "What a front-end is and costs" in proc.stdout and "--json" in proc.stdout
    assert "\nexamples:\n  python -m elm_audio.describe " in proc.stdout and "describe frontend=all " in proc.stdout
    assert not proc.stderr


def test_describe_refuses_a_mistyped_option_in_one_line(tmp_path):
    proc = run_cli("elm_audio.describe", "frontend=vggg", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and not proc.stdout and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "elm_audio.describe: frontend=vggg: frontend has no option vggg; did you mean vgg?"


@pytest.mark.parametrize("command,override", [("elm_audio", "frontend=vgg,"), ("elm_audio.describe", "classifier.C=[1")])
def test_an_override_hydra_cannot_read_is_refused_in_one_line(tmp_path, command, override):
    proc = run_cli(command, override, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and not proc.stdout and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"{command}: {override}: not an override Hydra can read; the grammar: https://hydra.cc/docs/advanced/override_grammar/basic"
    )


@pytest.mark.parametrize(
    "frontend,needs",
    [("hear", "frontend.module=<importable HEAR module>, e.g. frontend.module=hearbaseline"),
     ("embeddings", "frontend.path=<folder of <clip id>.npy, or an .npz of clip_ids and embeddings>")],
)  # fmt: skip
def test_describe_names_the_key_an_imported_front_end_needs(tmp_path, frontend, needs):
    proc = run_cli("elm_audio.describe", f"frontend={frontend}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and not proc.stdout and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"elm_audio.describe: frontend={frontend} needs {needs}"


def test_describe_prints_a_table_and_with_json_the_same_figures(tmp_path):
    args = ("frontend=cnn_7x96", "feature_size=small")
    lines = run_cli("elm_audio.describe", *args, cwd=tmp_path).stdout.splitlines()
    row = json.loads(run_cli("elm_audio.describe", *args, "--json", cwd=tmp_path).stdout)
    assert lines[0].split("  ")[0] == "front-end" and "feature_dim  parameters  GFLOP/clip  layers tapped" in lines[0]
    assert lines[1].split() == ["cnn_7x96", "small", "spectrogram", "1376x96", "160", f"{row['n_params']:,}",
                                f"{row['gflops_per_clip']:.2f}", "conv"]  # fmt: skip
    assert "--json" in lines[2] and "{" not in "".join(lines)


def test_the_table_aligns_text_left_and_numbers_right():
    layer = {"name": "pool", "shape": [4], "n_features": 4}
    described = [
        {"frontend": "vgg", "feature_size": "small", "input": "spectrogram", "input_shape": [1376, 96],
         "feature_dim": 160, "n_params": 37312, "gflops_per_clip": 0.4086, "layers": [layer] * 5},
        {"frontend": "frame_level_many", "feature_size": "large", "input": "waveform", "input_shape": [350000],
         "feature_dim": 3584, "n_params": 10282496, "gflops_per_clip": 209.3848, "layers": [layer]},
    ]  # fmt: skip
    header, small, large = table(described).splitlines()
    assert small.startswith("vgg               small  spectrogram 1376x96")
    assert large.startswith("frame_level_many  large  waveform 350000")
    for column in ("feature_dim", "parameters", "GFLOP/clip"):
        end = header.index(column) + len(column)
        assert small[end - 1] != " " and small[end] == " " and large[end - 1] != " "
    assert small.endswith("0.41  5 (pool to pool)") and large.endswith("10,282,496      209.38  pool")
