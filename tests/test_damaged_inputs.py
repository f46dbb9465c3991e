"""A few hundred damaged audio files (truncated, bit-flipped, header-damaged, NaN-filled,
zero-length, wrong extension) through ``data check`` and a run with ``on_bad_clip=skip``: no
traceback, every bad file named, nothing damaged cached. Which files are bad is decided here,
independently of elm_audio: by the container's signature and by decoding with soundfile.

Then settings: every key a user sets, given wrong types, negatives, zero, huge values, empty
strings and null, is refused with one line naming the key and the value (checked in-process,
as a run checks them before it reads anything; a handful through the command line)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers.audio import tone, write_audio
from helpers.runs import QUICK, logged_runs, run_cli, run_here
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from elm_audio.config import ConfigError, compose
from elm_audio.data import main as data_main
from elm_audio.datasets import DatasetError
from elm_audio.run.plan import make_plan
from elm_audio.settings.settings import load

SR = 16_000
FORMATS = ("wav", "flac", "au", "ogg", "mp3")
MAGIC = {"wav": [b"RIFF"], "flac": [b"fLaC"], "au": [b".snd"], "ogg": [b"OggS"], "mp3": [b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xe3", b"\xff\xf2"]}
# the least a clip may decode to: audio.min_fraction (0.001) of the MFCC front-end's 350,000 samples
LEAST_SECONDS = 0.001 * 350_000 / 12_000


def template(ext: str, seed: int) -> bytes:
    path = Path(f"/tmp/elm_fuzz_template_{seed}.{ext}")
    write_audio(path, tone(300.0 + 40 * seed, 0.5, SR, seed=seed), SR)
    data = path.read_bytes()
    path.unlink()
    return data


def mutants(rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """(name, bytes) of every damaged file."""
    out = []
    for ext in FORMATS:
        good = template(ext, FORMATS.index(ext))
        for i in range(16):
            out.append((f"{ext}_trunc{i}.{ext}", good[: int(rng.integers(0, len(good)))]))
        for i in range(20):
            flipped = bytearray(good)
            for pos in rng.integers(0, len(good), size=int(rng.integers(1, 40))):
                flipped[pos] ^= 1 << int(rng.integers(0, 8))
            out.append((f"{ext}_flip{i}.{ext}", bytes(flipped)))
        for i in range(16):
            head = bytearray(good)
            n = min(len(head), int(rng.integers(4, 128)))
            head[:n] = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
            out.append((f"{ext}_head{i}.{ext}", bytes(head)))
        for other in FORMATS:
            if other != ext:
                out.append((f"{ext}_as_{other}.{ext}", template(other, 7)))
        out.append((f"{ext}_empty.{ext}", b""))
    for i in range(20):
        signal = tone(500.0, 0.5, SR, seed=i)
        signal[rng.integers(0, len(signal), size=int(rng.integers(1, 50)))] = rng.choice([np.nan, np.inf, -np.inf])
        path = Path(f"/tmp/elm_fuzz_nan_{i}.wav")
        sf.write(path, signal, SR, subtype="FLOAT")
        out.append((f"nan{i}.wav", path.read_bytes()))
        path.unlink()
    return out


def is_bad(path: Path) -> bool:
    """The oracle: wrong signature, undecodable, empty, non-finite, or too short."""
    data = path.read_bytes()
    ext = path.suffix[1:]
    if not any(data.startswith(m) for m in MAGIC[ext]):
        return True
    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception:
        return True
    return len(audio) == 0 or not np.isfinite(audio).all() or len(audio) / sr < LEAST_SECONDS


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory) -> tuple[Path, set[str]]:
    root = tmp_path_factory.mktemp("fuzz") / "collection"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        for i in range(10):
            write_audio(root / label / f"good{i}.wav", tone(200.0 * (1 + (label == "b")) + 5 * i, 0.5, SR, seed=i), SR)
    for k, (name, data) in enumerate(mutants(rng)):
        path = root / "ab"[k % 2] / name
        path.write_bytes(data)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    bad = {p.relative_to(root).as_posix() for p in files if is_bad(p)}
    assert len(files) >= 300 and len(bad) >= 150  # a few hundred files, most of them damaged
    return root, bad


@pytest.mark.slow
def test_data_check_names_every_bad_file_and_no_other(fuzzed, capsys):
    root, bad = fuzzed
    code = data_main(["check", "dataset=folder", f"dataset.root={root}", "dataset.n_folds=3", "frontend=mfcc"])
    out = capsys.readouterr().out
    assert code == 1  # bad clips under the default on_bad_clip=error
    counts = {k: int(out.split(f"  {k} (")[1].split(")")[0]) for k in ("unreadable", "zero-length")}
    assert sum(counts.values()) == len(bad)  # the printed report counts them all (and names 15 a kind)
    # every one of them, by name: the report behind the printed text
    from elm_audio.config import compose
    from elm_audio.datasets.check import CheckReport
    from elm_audio.settings.components import build_dataset

    dataset = build_dataset(compose(["dataset=folder", f"dataset.root={root}", "dataset.n_folds=3"]))
    report = CheckReport.from_survey(dataset, dataset.survey(), decode_min_samples=350)
    assert {v.split(":")[0] for v in report.unreadable.values()} | set(report.empty.values()) == bad


@pytest.mark.slow
def test_a_run_with_skip_leaves_the_bad_files_out_and_caches_nothing_damaged(fuzzed, tmp_path):
    root, bad = fuzzed
    _, err = run_here(
        tmp_path, "dataset=folder", f"dataset.root={root}", "dataset.n_folds=3", "dataset.on_bad_clip=skip",
        "frontend=mfcc", "extract.progress=false",
    )  # fmt: skip
    assert "Traceback" not in err
    client, (run,) = logged_runs(tmp_path, "folder")
    assert run.info.status == "FINISHED" and int(run.data.tags["bad_clips"]) == len(bad)
    listing = Path(client.download_artifacts(run.info.run_id, "bad_clips.tsv", str(tmp_path))).read_text()
    assert {line.split("\t")[0] for line in listing.splitlines()} == {b.rsplit(".", 1)[0] for b in bad}
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.is_dir() and len(p.name) == 20]
    meta = json.loads((entry / "meta.json").read_text())
    rows = np.load(entry / "features.npy")
    usable = [i for i, c in enumerate(meta["clip_ids"]) if c not in meta["bad_clips"]]
    assert np.isfinite(rows[usable]).all() and len(usable) == len(meta["clip_ids"]) - len(bad)


# settings ---------------------------------------------------------------------------------

# The values tried on every key (as typed on the command line), and what they are.
FUZZ = {"abc": "text", "[1, 2]": "list", "{a: 1}": "mapping", "true": "flag", "-1": "negative", "-0.5": "negative",
        "0": "zero", "0.5": "fraction", "99999999999999999999": "huge", "1e300": "huge", "''": "empty", "null": "null"}  # fmt: skip
# What each kind of key allows, decided here from docs/configuration.md's table of keys.
ALLOWS = {
    "whole>=1": set(),  # every fuzz value is wrong: not whole, below 1, or too large to run
    "whole>=0": {"0"},
    "seed": {"0"},
    "choice": set(),
    "flag": {"true"},
    "positive": {"0.5", "99999999999999999999", "1e300"},
    "positive_or_zero": {"0", "0.5", "99999999999999999999", "1e300"},
    "fraction": {"0", "0.5"},
    "seconds": {"0.5"},  # the built-in dataset's clip length: above 0, at most 600
    "gamma": {"0.5", "99999999999999999999", "1e300"},
    "folder": {"abc", "-1", "-0.5", "0", "0.5", "99999999999999999999", "1e300", "true"},  # names of folders
    "lengths": {"[1, 2]"},
}
# key -> (its kind, the overrides that make it apply)
KEYS = {
    "seed": ("seed", []),
    "device": ("choice", []),
    "precision": ("choice", []),
    "audio.fit": ("choice", []),
    "audio.fit_stage": ("choice", []),
    "audio.stft_padding": ("choice", []),
    "audio.min_fraction": ("fraction", []),
    "extract.batch_size": ("whole>=1", []),
    "extract.num_workers": ("whole>=0", []),
    "extract.progress": ("flag", []),
    "cache.dir": ("folder", []),
    "protocol.mode": ("choice", []),
    "protocol.fold_weighting": ("choice", []),
    "dataset.n_folds": ("whole>=1", []),
    "dataset.fold_seed": ("seed", []),
    "dataset.seed": ("seed", []),
    "dataset.clips_per_class": ("whole>=1", []),
    "dataset.duration": ("seconds", []),
    "dataset.on_bad_clip": ("choice", []),
    "frontend.widths.small": ("whole>=1", []),
    "frontend.net.temporal_lengths": ("lengths", ["frontend=temporal"]),
    "frontend.net.timbral": ("flag", ["frontend=timbral"]),
    "frontend.net.bands": ("whole>=1", ["frontend=cnn_7x96"]),
    "frontend.net.n_mfcc": ("whole>=1", ["frontend=mfcc"]),
    "frontend.net.backend_means": ("choice", ["frontend=frame_level"]),
    "classifier.kernel": ("choice", []),
    "classifier.C": ("positive", []),
    "classifier.gamma": ("gamma", []),
    "classifier.standardize": ("flag", []),
    "classifier.hidden_units": ("whole>=1", ["classifier=elm"]),
    "classifier.alpha": ("positive_or_zero", ["classifier=elm"]),
    "classifier.hidden_draw": ("choice", ["classifier=elm"]),
    "classifier.targets": ("choice", ["classifier=elm"]),
    "weights.lr": ("positive", ["weights=trained"]),
    "weights.weight_decay": ("positive_or_zero", ["weights=trained"]),
    "weights.batch_size": ("whole>=1", ["weights=trained"]),
    "weights.max_epochs": ("whole>=1", ["weights=trained"]),
    "weights.patience": ("whole>=1", ["weights=trained"]),
}
# how a message shows each value (Python's repr of what Hydra parsed)
SHOWN = {"1e300": "1e+300", "''": '""'}  # as a message shows a value: as written, no Python repr
WRONG = [
    (key, value)
    for key, (kind, _) in KEYS.items()
    for value in FUZZ
    if value not in ALLOWS[kind] and not (kind == "lengths" and value == "{a: 1}")  # Hydra's own merge error
]


def with_setting(base: DictConfig, key: str, value: str) -> DictConfig:
    """``base`` with ``key=value`` applied as Hydra applies a command-line override (its parser,
    then OmegaConf.update), without composing the whole tree again for each of 400 values."""
    (override,) = OverridesParser.create().parse_overrides([f"{key}={value}"])
    cfg = base.copy()
    OmegaConf.update(cfg, key, override.value(), merge=True)
    return cfg


def test_every_wrong_setting_is_refused_in_one_line_naming_key_and_value(tmp_path):
    assert len(WRONG) > 300
    bases = {}
    for key, value in WRONG:
        extra = tuple(KEYS[key][1])
        if extra not in bases:
            bases[extra] = compose([*QUICK, f"cache.dir={tmp_path}", *extra])
        with pytest.raises((ConfigError, DatasetError)) as refused:
            make_plan(load(with_setting(bases[extra], key, value)))
        message = str(refused.value)
        assert "\n" not in message, (key, value, message)
        assert f"{key}=" in message or f"{key} " in message, (key, value, message)
        assert SHOWN.get(value, value) in message, (key, value, message)


def test_the_fuzz_applies_a_setting_as_hydra_does(tmp_path):
    """The shortcut above gives what composing with the override gives."""
    base = compose([*QUICK, "frontend=temporal"])
    for key, value in [("seed", "-1"), ("frontend.widths.small", "0"), ("frontend.net.temporal_lengths", "[1, 2]"),
                       ("classifier.C", "{a: 1}"), ("cache.dir", "''"), ("device", "null")]:  # fmt: skip
        assert with_setting(base, key, value) == compose([*QUICK, "frontend=temporal", f"{key}={value}"])


@pytest.mark.slow
@pytest.mark.parametrize("override", ["seed=-1", "cache.dir=''"])
def test_a_wrong_setting_on_the_command_line_ends_in_one_line(tmp_path, override):
    proc = run_cli("elm_audio", *QUICK, override, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = [l for l in proc.stderr.splitlines() if l.startswith("elm_audio: ")]
    assert override.split("=")[0] in line and not (tmp_path / "mlruns").exists()
