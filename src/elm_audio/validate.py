"""Every key a user can set, checked before anything is read, extracted or logged.

Each failure is a ConfigError whose one-line message names the key, the value and what is
allowed. The classifier's hyper-parameters are checked by the estimator's own constraints
(scikit-learn's ``_parameter_constraints``), so the config and the class cannot disagree.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from sklearn.utils._param_validation import InvalidParameterError

from .audio import FIT_MODES
from .components import build_estimator
from .config import ConfigError
from .datasets.index import BAD_CLIP_POLICIES
from .devices import resolve_device
from .dsp import STFT_PADDINGS
from .precision import check_precision
from .inputs import FIT_STAGES
from .protocols import FOLD_WEIGHTINGS, MODES


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first key whose value cannot work."""
    integer(cfg, "seed")
    check_precision(resolve_device(cfg.device), cfg.precision)
    one_of(cfg, "audio.fit", FIT_MODES)
    one_of(cfg, "audio.fit_stage", FIT_STAGES)
    one_of(cfg, "audio.stft_padding", STFT_PADDINGS)
    fraction(cfg, "audio.min_fraction")
    integer(cfg, "extract.batch_size", minimum=1)
    integer(cfg, "extract.num_workers", minimum=0)
    boolean(cfg, "extract.progress")
    one_of(cfg, "protocol.mode", MODES)
    one_of(cfg, "protocol.fold_weighting", FOLD_WEIGHTINGS)
    one_of(cfg, "dataset.on_bad_clip", BAD_CLIP_POLICIES)
    if "n_folds" in cfg.dataset:
        integer(cfg, "dataset.n_folds", minimum=3 if cfg.protocol.mode == "honest" else 2)
    if cfg.dataset.get("fold_seed") is not None:
        integer(cfg, "dataset.fold_seed")
    boolean(cfg, "classifier.standardize")
    classifier(cfg)
    if cfg.weights.name == "trained":
        trained_weights(cfg)
    writable_folder(cfg, "cache.dir")


def value(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key)


def one_of(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> None:
    v = value(cfg, key)
    if v not in allowed:
        raise ConfigError(f"{key}={v!r} is not one of {', '.join(allowed)}")


def integer(cfg: DictConfig, key: str, minimum: int | None = None) -> None:
    v = value(cfg, key)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{key}={v!r} must be a whole number")
    if minimum is not None and v < minimum:
        raise ConfigError(f"{key}={v} must be at least {minimum}")


def fraction(cfg: DictConfig, key: str) -> None:
    v = value(cfg, key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
        raise ConfigError(f"{key}={v!r} must be a number from 0 to below 1")


def boolean(cfg: DictConfig, key: str) -> None:
    v = value(cfg, key)
    if not isinstance(v, bool):
        raise ConfigError(f"{key}={v!r} must be true or false")


def classifier(cfg: DictConfig) -> None:
    """The estimator's own parameter constraints, reported under the keys the user sets."""
    try:
        build_estimator(cfg.classifier, int(cfg.seed))._validate_params()
    except InvalidParameterError as err:
        param = str(err).split("'")[1] if "'" in str(err) else "?"
        key = f"classifier.{param}" if param in cfg.classifier else f"classifier.estimator.{param}"
        v = cfg.classifier.get(param, cfg.classifier.estimator.get(param))
        allowed = str(err).split(" must be ", 1)[-1].rsplit(". Got", 1)[0]
        raise ConfigError(f"{key}={v!r} must be {allowed}") from None


def trained_weights(cfg: DictConfig) -> None:
    """The training recipe, and what training needs of the rest of the config."""
    for key in ("weights.batch_size", "weights.max_epochs", "weights.patience"):
        integer(cfg, key, minimum=1)
    for key in ("weights.lr", "weights.weight_decay"):
        v = value(cfg, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (key == "weights.lr" and v == 0):
            raise ConfigError(f"{key}={v!r} must be a number above 0" + (" or 0" if key == "weights.weight_decay" else ""))
    if cfg.protocol.mode == "paper":
        raise ConfigError("protocol.mode=paper: weights=trained needs a validation fold to stop on; use protocol.mode=honest")
    if cfg.audio.fit_stage == "frames" and cfg.frontend.name == "mfcc":
        raise ConfigError("audio.fit_stage=frames: weights=trained with frontend=mfcc needs inputs of one length (waveform)")


def writable_folder(cfg: DictConfig, key: str) -> None:
    """The folder exists or can be made, and a file can be written in it; a cache that holds
    entries but is read-only is allowed (the entries are read without a lock)."""
    folder = Path(str(value(cfg, key))).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        if folder.is_dir() and os.access(folder, os.R_OK | os.X_OK):
            return
        raise ConfigError(f"{key}={folder}: cannot create or write there ({err.strerror}); choose a writable folder") from None
