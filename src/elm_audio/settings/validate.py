"""Every key a user can set, checked before anything is read, extracted or logged.

Each failure is a ConfigError whose one-line message names the key, the value and what is
allowed. The classifier's hyper-parameters are checked by the estimator's own constraints
(scikit-learn's ``_parameter_constraints``), so the config and the class cannot disagree.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from sklearn.utils._param_validation import InvalidParameterError

from ..classifiers.kinds import ESTIMATOR_KEYS
from ..config import CONFIG_DIR, ConfigError, build, shown
from ..datasets import Dataset
from ..datasets.index import BAD_CLIP_POLICIES, TASK_KINDS, ClipIndex
from ..devices import resolve_device
from ..evaluation.protocols import FOLD_WEIGHTINGS, MODES
from ..extraction.defaults import AUTO
from ..extraction.inputs import FIT_STAGES
from ..extraction.precision import PRECISIONS, check_precision
from ..frontends.base import N_MELS, SPECTROGRAM_FRAMES, WAVEFORM_SAMPLES
from ..frontends.waveform import BACKEND_MEANS
from ..sound.decode import FIT_MODES
from ..sound.dsp import STFT_PADDINGS
from .components import build_estimator

# Seeds reach numpy and scikit-learn, whose seeds are unsigned 32-bit numbers.
SEED_RANGE = (0, 2**32 - 1)
# Counts past this would overflow the native code they reach (or the machine) long before use.
MOST = 2**31 - 1


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first key whose value cannot work."""
    integer(cfg, "seed", *SEED_RANGE)
    device(cfg)
    one_of(cfg, "precision", tuple(PRECISIONS))
    check_precision(resolve_device(cfg.device), cfg.precision)
    one_of(cfg, "audio.fit", FIT_MODES)
    one_of(cfg, "audio.fit_stage", FIT_STAGES)
    one_of(cfg, "audio.stft_padding", STFT_PADDINGS)
    fraction(cfg, "audio.min_fraction")
    integer_or_auto(cfg, "extract.batch_size", 1, MOST)
    integer_or_auto(cfg, "extract.num_workers", 0, 4 * (os.cpu_count() or 1))
    boolean(cfg, "extract.progress")
    one_of(cfg, "protocol.mode", MODES)
    one_of(cfg, "protocol.fold_weighting", FOLD_WEIGHTINGS)
    one_of(cfg, "dataset.on_bad_clip", BAD_CLIP_POLICIES)
    if "n_folds" in cfg.dataset:
        integer(cfg, "dataset.n_folds", 3 if cfg.protocol.mode == "honest" else 2, MOST)
    if "fold_seed" in cfg.dataset:
        integer(cfg, "dataset.fold_seed", *SEED_RANGE)
    if cfg.dataset.name == "synth":
        synth(cfg)
    if not imported_frontend(cfg):  # a model from elsewhere is built, once, by the run itself
        frontend(cfg)
    boolean(cfg, "classifier.standardize")
    integer(cfg, "probe.knn_k", minimum=1)
    integer(cfg, "probe.proxy_batch", minimum=2)
    classifier(cfg)
    if cfg.weights.name == "trained":
        trained_weights(cfg)
    writable_folder(cfg, "cache.dir")


def value(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key)


def one_of(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> None:
    v = value(cfg, key)
    if v not in allowed:
        raise ConfigError(f"{key}={shown(v)} is not one of {', '.join(allowed)}")


def integer(cfg: DictConfig, key: str, minimum: int | None = None, maximum: int | None = None, named: str | None = None) -> None:
    """A whole number within bounds; ``named`` is the key the message names where the user sets
    the value under another (``frontend.widths.small`` for ``frontend.net.width``)."""
    v, named = value(cfg, key), named or key
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{named}={shown(v)} must be a whole number")
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        bounds = ([f"at least {minimum}"] if minimum is not None else []) + ([f"at most {maximum}"] if maximum is not None else [])
        raise ConfigError(f"{named}={v} must be {', '.join(bounds)}")


def integer_or_auto(cfg: DictConfig, key: str, minimum: int, maximum: int) -> None:
    """``auto`` (chosen for the device by settings.load: extraction/defaults.py) or what
    ``integer`` takes, its message saying auto is the other choice."""
    if value(cfg, key) == AUTO:
        return
    try:
        integer(cfg, key, minimum, maximum)
    except ConfigError as err:
        raise ConfigError(f"{err}, or auto (chosen for the device)") from None


def device(cfg: DictConfig) -> None:
    given = value(cfg, "device")
    v = str(given)
    kind, _, number = v.partition(":")
    if kind not in ("auto", "cpu", "cuda") or (number and (kind != "cuda" or not number.isdigit())):
        raise ConfigError(f"device={shown(given)} is not one of auto, cpu, cuda, cuda:<n> (elm_audio runs on CPUs and CUDA GPUs)")
    if number and int(number) >= torch.cuda.device_count():
        raise ConfigError(f"device={v}: this machine has {torch.cuda.device_count()} CUDA device(s); use cuda:0 to cuda:<n-1>, cpu or auto")


def synth(cfg: DictConfig) -> None:
    """The built-in dataset's generator: a bounded number of clips of a bounded length."""
    integer(cfg, "dataset.clips_per_class", 1, 10_000)
    integer(cfg, "dataset.seed", *SEED_RANGE)
    one_of(cfg, "dataset.kind", TASK_KINDS)
    v = value(cfg, "dataset.duration")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 600:
        raise ConfigError(f"dataset.duration={shown(v)} must be a number of seconds above 0, at most 600")


# Front-end arguments (frontend.net.<arg>) and what each allows: whole numbers from 1 to the
# bound (the mel bands, the input's frames or samples), lists of them, and flags.
WHOLE = {"width": MOST, "bands": N_MELS, "frames": SPECTROGRAM_FRAMES, "n_mfcc": 128,
         "length": WAVEFORM_SAMPLES, "stride": WAVEFORM_SAMPLES, "blocks": 64}  # fmt: skip
LISTS = {"temporal_lengths": SPECTROGRAM_FRAMES, "lengths": WAVEFORM_SAMPLES}
# A front-end whose weights alone take more than this share of the machine's memory cannot run.
MEMORY_SHARE = 0.5


def frontend(cfg: DictConfig) -> None:
    """The front-end's arguments, then the front-end itself, built on the meta device (no memory)
    to catch what only the whole can tell (a musical front-end without filters, weights too many
    for this machine)."""
    net = cfg.frontend.net
    for arg in net:
        key = f"frontend.net.{arg}"
        if arg in WHOLE:
            size = f"frontend.widths.{cfg.feature_size.name}"
            named = size if arg == "width" and OmegaConf.is_interpolation(net, arg) else key
            integer(cfg, key, 1, WHOLE[arg], named=named)
        elif arg in LISTS:
            v = value(cfg, key)
            if not OmegaConf.is_list(v) or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= LISTS[arg] for n in v):
                raise ConfigError(f"{key}={shown(v)} must be a list of whole numbers from 1 to {LISTS[arg]}")
        elif arg == "timbral":
            boolean(cfg, key)
        elif arg == "backend_means":
            one_of(cfg, key, BACKEND_MEANS)
    if "timbral" in net and "temporal_lengths" in net and not net.timbral and not len(net.temporal_lengths):
        raise ConfigError(
            f"frontend.net.temporal_lengths=[] with frontend.net.timbral=false leaves {cfg.frontend.name} without "
            f"filters; give at least one length (1 to {SPECTROGRAM_FRAMES}) or set frontend.net.timbral=true"
        )
    try:
        with torch.device("meta"):
            net_on_meta = build(net)
    except ValueError as err:
        raise ConfigError(f"frontend.net ({cfg.frontend.name}): {err}") from None
    n_params = sum(p.numel() for p in net_on_meta.parameters())
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if 4 * n_params > MEMORY_SHARE * memory:
        size = f"frontend.widths.{cfg.feature_size.name}"
        raise ConfigError(
            f"{size}={value(cfg, size)}: frontend={cfg.frontend.name} would have {n_params:.3g} weights "
            f"({4 * n_params / 1e9:.3g} GB), more than half this machine's memory ({memory / 1e9:.3g} GB); lower it"
        )


def fraction(cfg: DictConfig, key: str) -> None:
    v = value(cfg, key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
        raise ConfigError(f"{key}={shown(v)} must be a number from 0 to below 1")


def boolean(cfg: DictConfig, key: str) -> None:
    v = value(cfg, key)
    if not isinstance(v, bool):
        raise ConfigError(f"{key}={shown(v)} must be true or false")


def classifier(cfg: DictConfig) -> None:
    """The estimator's own parameter constraints, reported under the keys the user sets.
    scikit-learn counts true and false as numbers; here a flag where a value is expected is
    refused (checked as the text it was typed as)."""
    flags = [p for p, v in cfg.classifier.items() if isinstance(v, bool) and p != "standardize"]
    checked = cfg.copy() if flags else cfg
    for param in flags:
        checked.classifier[param] = str(cfg.classifier[param]).lower()
    try:
        build_estimator(checked.classifier, int(cfg.seed))._validate_params()
    except InvalidParameterError as err:
        param = str(err).split("'")[1] if "'" in str(err) else "?"
        key = f"classifier.{param}" if param in cfg.classifier else f"classifier.estimator.{param}"
        v = cfg.classifier.get(param, cfg.classifier.estimator.get(param))
        allowed = str(err).split(" must be ", 1)[-1].rsplit(". Got", 1)[0]
        raise ConfigError(f"{key}={shown(v)} must be {allowed}") from None
    for param, v in cfg.classifier.items():  # sizes past this would only fail inside the solver
        if isinstance(v, int) and not isinstance(v, bool) and v > MOST:
            raise ConfigError(f"classifier.{param}={v} must be a whole number at most {MOST}")


def trained_weights(cfg: DictConfig) -> None:
    """The training recipe, and what training needs of the rest of the config."""
    for key in ("weights.batch_size", "weights.max_epochs", "weights.patience"):
        integer(cfg, key, 1, MOST)
    for key in ("weights.lr", "weights.weight_decay"):
        v = value(cfg, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (key == "weights.lr" and v == 0):
            raise ConfigError(f"{key}={shown(v)} must be a number above 0" + (" or 0" if key == "weights.weight_decay" else ""))
    if cfg.protocol.mode == "paper":
        raise ConfigError("protocol.mode=paper: weights=trained needs a validation fold to stop on; use protocol.mode=honest")
    if cfg.audio.fit_stage == "frames" and cfg.frontend.name == "mfcc":
        raise ConfigError("audio.fit_stage=frames: weights=trained with frontend=mfcc needs inputs of one length (waveform)")


# what each imported front-end (its class in frontends/imported.py) cannot run without
IMPORTED_NEEDS = {
    "elm_audio.frontends.imported.HearModule": ("hear", "module", "<importable HEAR module>, e.g. frontend.module=hearbaseline"),
    "elm_audio.frontends.imported.Embeddings": ("embeddings", "path", "<folder of <clip id>.npy, or an .npz of clip_ids and embeddings>"),
}


def imported_frontend(cfg: DictConfig) -> bool:
    """Whether the front-end is frontend=hear or embeddings; for those, the key each needs is
    set, and they have no weights to train."""
    needs = IMPORTED_NEEDS.get(str(cfg.frontend.net.get("_target_", "")))
    if needs is None:
        return False
    choice, key, example = needs
    if OmegaConf.is_missing(cfg.frontend, key) or not str(cfg.frontend[key]):
        raise ConfigError(f"frontend={choice} needs frontend.{key}={example}")
    if cfg.weights.name == "trained":
        raise ConfigError(f"weights=trained trains elm_audio's own front-ends; frontend={choice} has no weights to train here")
    return True


def writable_folder(cfg: DictConfig, key: str) -> None:
    """The folder exists or can be made, and a file can be written in it; a cache that holds
    entries but is read-only is allowed (the entries are read without a lock). An empty value
    is refused: it would put the cache's entries in the working directory."""
    given = value(cfg, key)
    if given is None or OmegaConf.is_config(given) or not str(given).strip():
        raise ConfigError(f"{key}={shown(given)} is empty; give a folder (default .elm_audio_cache, or set $ELM_AUDIO_CACHE)")
    folder = Path(str(given)).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        if folder.is_dir() and os.access(folder, os.R_OK | os.X_OK):
            return
        raise ConfigError(f"{key}={folder}: cannot create or write there ({err.strerror}); choose a writable folder") from None


def fits_kind(dataset_name: str, mode: str, classifier: Mapping[str, Any], weights: str, dataset: Dataset, index: ClipIndex) -> None:
    """What the dataset's task kind (known once its index is read, before any audio) asks of
    the rest of the config (``classifier``: the classifier group's keys, plain; ``weights``: its
    choice): a classifier with an estimator for the kind, none of its keys that mean nothing
    for the kind set away from their default, the honest protocol where the original code's has
    no meaning, random weights (training has a single-label head)."""
    kind, name = index.kind, str(dataset_name)
    where = f"dataset {name} is a {kind} task"
    if mode == "paper" and (kind != "multiclass" or dataset.own_protocol):
        split = "splits" if index.protocol == "partitions" else "folds"
        why = f"dataset {name}'s own {split} are the protocol" if dataset.own_protocol else where
        raise ConfigError(f"protocol.mode=paper: {why}, which the original code never ran; use protocol.mode=honest")
    if ESTIMATOR_KEYS[kind] not in classifier:
        able = [p.stem for p in sorted((CONFIG_DIR / "classifier").glob("*.yaml"))
                if ESTIMATOR_KEYS[kind] in OmegaConf.load(p)]  # fmt: skip
        raise ConfigError(f"classifier={classifier['name']}: {where}, which it cannot fit; use classifier={'|'.join(able)}")
    defaults = OmegaConf.load(CONFIG_DIR / "classifier" / f"{classifier['name']}.yaml")
    for key in (classifier.get("ignores") or {}).get(kind, []):
        if classifier[key] != defaults.get(key):
            raise ConfigError(f"classifier.{key}={shown(classifier[key])} has no meaning here ({where}); leave it out")
    if weights == "trained" and kind != "multiclass":
        raise ConfigError(f"weights=trained: {where}; training has a single-label head: use weights=random")
