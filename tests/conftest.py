"""Shared helpers and fixtures: generated audio in real formats, running the CLI in a clean
folder, reading the MLflow store a run wrote, front-ends and clips, and docs/method.md's table."""

from __future__ import annotations

import os

# The suite runs as two xdist workers on two cores (pyproject's addopts): one thread per process,
# set before torch, NumPy or any run the tests start is loaded. With torch's default of a thread
# per core, two processes' OpenMP threads spin waiting on each other's cores: two runs side by
# side took 54 s of CPU each where one thread each takes 28 s, and finished later. A test that
# needs more threads sets them (torch.set_num_threads); OMP_NUM_THREADS set by hand wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import contextlib
import io
import logging
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import torch
from mlflow.tracking import MlflowClient

from elm_audio.config import compose
from elm_audio.settings.components import build_frontend

WRITE_KW = {
    "wav": {},
    "au": {},
    "flac": {},
    "ogg": {"format": "OGG", "subtype": "VORBIS"},
    "mp3": {"format": "MP3", "subtype": "MPEG_LAYER_III"},
}

# Small end-to-end runs: a handful of short synth clips, no progress bar.
QUICK = [
    "dataset.clips_per_class=6",
    "dataset.duration=2.0",
    "dataset.n_folds=3",
    "extract.progress=false",
    "extract.num_workers=0",
]


def tone(freq: float, seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    mono = 0.4 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
    return np.stack([mono] * channels, axis=1).astype(np.float32)


def write_audio(path: Path, signal: np.ndarray, sr: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, signal, sr, **WRITE_KW[path.suffix.lstrip(".").lower()])
    return path


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """<root>/<class>/<clip>: two classes (low and high tones), twelve clips each, in mixed
    formats and sample rates, some stereo, as a real collection would be."""
    root = tmp_path / "collection"
    formats = ["wav", "flac", "ogg", "mp3", "au", "wav"]
    for label, base in (("low", 220.0), ("high", 1760.0)):
        for i in range(12):
            ext, sr = formats[i % 6], (44_100, 22_050, 16_000)[i % 3]
            write_audio(root / label / f"{label}_{i}.{ext}", tone(base * (1 + 0.03 * i), 1.5, sr, 1 + i % 2, i), sr)
    return root


_EMPTY_STORE: dict[str, object] = {}


@pytest.fixture(autouse=True, scope="session")
def _empty_store_folder(tmp_path_factory):
    _EMPTY_STORE["factory"] = tmp_path_factory


def empty_store() -> Path:
    """An MLflow SQLite store with its tables made and nothing in it, made once per worker at
    first use: creating MLflow's tables (its schema migrations) takes seconds, a copy milliseconds."""
    if "db" not in _EMPTY_STORE:
        db = _EMPTY_STORE["factory"].mktemp("empty_store") / "mlflow.db"
        MlflowClient(f"sqlite:///{db}").search_experiments(max_results=1)
        _EMPTY_STORE["db"] = db
    return _EMPTY_STORE["db"]


def seed_empty_store(cwd: Path) -> None:
    """Start ``cwd``'s default MLflow store, where there is none yet, as a copy of an empty one."""
    db = cwd / "mlruns" / "mlflow.db"
    if not db.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_store(), db)


def run_cli(
    module: str, *args: str, cwd: Path, env: dict | None = None, check: bool = True, seed_store: bool | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <args>`` as a user would, in ``cwd``.

    ``seed_store`` (default: when the run is expected to succeed) starts the default store
    ``cwd/mlruns/mlflow.db``, where there is none yet, as a copy of an empty one; a run expected
    to fail finds no store, so a test can see that it wrote none, and ``seed_store=False`` lets
    a run create its store as a user's first run does."""
    full_env = {**os.environ, "ELM_AUDIO_CACHE": str(cwd / "cache"), "HYDRA_FULL_ERROR": "0"}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    full_env.update(env or {})
    if check if seed_store is None else seed_store:
        seed_empty_store(cwd)
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def as_a_run_in(cwd: Path, seed_store: bool = True) -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """What run_cli's process sees, in this process: ``cwd`` as working folder, its default
    MLflow store started (``seed_store``, as run_cli's), no MLFLOW_TRACKING_URI; yields what is
    printed (stdout, stderr).

    For tests of what a run or report does with its data and stores, where a fresh
    interpreter's imports (about 7 s of CPU each, most of the suite's time) add nothing;
    the command line's own behaviour (exit codes, one-line errors, signals) keeps run_cli."""
    if seed_store:
        seed_empty_store(cwd)
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.chdir(cwd),
        mock.patch.dict(os.environ),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        yield out, err


def run_here(cwd: Path, *overrides: str) -> tuple[str, str]:
    """``python -m elm_audio <overrides>`` (one run) as runner.run does it, in this process:
    see as_a_run_in. The features' cache is ``cwd/cache``, as run_cli's; returns (stdout, stderr)."""
    from elm_audio.run.runner import run

    with as_a_run_in(cwd) as (out, err):
        run(compose([f"cache.dir={cwd / 'cache'}", *overrides]))
    return out.getvalue(), err.getvalue()


def sweep_here(cwd: Path, *overrides: str) -> str:
    """``python -m elm_audio -m <overrides>`` as Hydra runs it, in this process (see
    conftest.as_a_run_in: a new interpreter's imports would cost more than the sweep); the
    logging Hydra configures is undone after. Returns what the sweep printed."""
    from hydra.core.global_hydra import GlobalHydra

    from elm_audio.__main__ import app

    loggers = [logging.root, *(v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger))]
    before = [(lg, lg.level, lg.handlers[:], lg.propagate, lg.disabled) for lg in loggers]
    try:
        with as_a_run_in(cwd) as (out, err), mock.patch.object(sys, "argv", ["elm_audio", "-m", *overrides]):
            app()
    except SystemExit:
        raise AssertionError(f"the sweep failed:\n{out.getvalue()}\n{err.getvalue()}") from None
    finally:
        GlobalHydra.instance().clear()
        for lg, level, handlers, propagate, disabled in before:
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.propagate, lg.disabled = propagate, disabled
    return out.getvalue()


# docs/method.md, "Front-ends": the feature-vector lengths, small and large.
LENGTHS = {
    "sample_level": (161, 3584),
    "frame_level": (160, 3584),
    "frame_level_many": (160, 3584),
    "vgg": (160, 3585),
    "cnn_7x96": (160, 3585),
    "cnn_7x86": (160, 3585),
    "timbral": (112, 3584),
    "temporal": (112, 3584),
    "timbral_temporal": (112, 3584),
    "timbral_time": (112, 3584),
    "mfcc": (120, 120),
}
SHARED = Path(__file__).resolve().parents[2] / "shared"
GOLDEN = SHARED / "golden" / "elmarc"


def local_uri(cwd: Path) -> str:
    """The MLflow store a run in ``cwd`` writes by default."""
    return f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}"


def logged_runs(uri_or_cwd: str | Path, dataset: str = "synth", **search) -> tuple[MlflowClient, list]:
    """The store's client and the runs of ``dataset``'s experiment, oldest first."""
    uri = local_uri(uri_or_cwd) if isinstance(uri_or_cwd, Path) else uri_or_cwd
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"elm_audio/{dataset}")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"], max_results=1000, **search)
    return client, runs


def frontend(name: str, size: str = "small", seed: int = 0, *overrides: str):
    return build_frontend(compose([f"frontend={name}", f"feature_size={size}", f"seed={seed}", *overrides]))


def clips(front, n: int, seed: int = 0) -> torch.Tensor:
    """n waveforms of the front-end's input length: tones of different pitch in noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(front.input_samples) / 12_000
    tones = torch.stack([torch.sin(2 * math.pi * (110 * (i + 1)) * t) for i in range(n)])
    return (0.3 * tones + 0.05 * torch.randn(n, front.input_samples, generator=g)).float()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first, so that the quick tests fill both workers at the end rather than one worker
    finishing the report's store or the SLURM cluster alone: the report store's group (several
    minutes on one worker, in its file's order) and the SLURM sweep, then the other end-to-end
    (``slow``) tests, then the rest, each in collection order."""

    def rank(item: pytest.Item) -> int:
        group = item.get_closest_marker("xdist_group")
        if (group and group.args == ("report_store",)) or item.get_closest_marker("slurm"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)
